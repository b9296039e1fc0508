// Process facts read from /proc, used to find and verify machines' processes.
import { readdirSync, readFileSync } from 'node:fs';
import { alive, pids, sleep } from '../util/process.js';

export { alive, sleep };

export function cmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return [];
  }
}

/** True when pid is a systemd-nspawn running machine `name` (guards against reused pids). */
export function isNspawnOf(pid: number, name: string): boolean {
  const argv = cmdline(pid);
  return argv.length > 0 && (argv[0] ?? '').endsWith('systemd-nspawn') && argv.includes(`--machine=${name}`);
}

export function children(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((t) =>
      readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8')
        .trim()
        .split(/\s+/)
        .filter(Boolean)
        .map(Number),
    );
  } catch {
    return [];
  }
}

/** The container's PID 1 under an nspawn process: the child whose innermost pid is 1. */
export function containerLeader(nspawnPid: number): number | undefined {
  for (const c of children(nspawnPid)) {
    try {
      const status = readFileSync(`/proc/${c}/status`, 'utf8');
      const nspid = /^NSpid:\s+(.+)$/m.exec(status)?.[1]?.trim().split(/\s+/);
      if (nspid && nspid.length > 1 && nspid[nspid.length - 1] === '1') return c;
    } catch {
      /* gone meanwhile */
    }
  }
  return undefined;
}

/** Processes running `program` (argv[0] ends with it) whose arguments satisfy `match`. */
export function processesRunning(program: string, match: (argv: string[]) => boolean): number[] {
  return pids().filter((pid) => {
    const argv = cmdline(pid);
    return (argv[0] ?? '').endsWith(program) && match(argv);
  });
}

/** Every nspawn process on the host that runs a machine of this name. */
export function nspawnPidsOf(name: string): number[] {
  return processesRunning('systemd-nspawn', (argv) => argv.includes(`--machine=${name}`));
}

/** pid and all its descendants, deepest first. */
export function descendants(pid: number): number[] {
  const out: number[] = [];
  for (const c of children(pid)) out.push(...descendants(c), c);
  return out;
}

/** Sends a signal to a process tree (children first), ignoring those already gone. */
export function signalTree(pid: number, signal: NodeJS.Signals): void {
  for (const p of [...descendants(pid), pid]) {
    try {
      process.kill(p, signal);
    } catch {
      /* gone */
    }
  }
}

/** Stops the readiness receivers (socat, see notify.ts) listening on sockets in `dir`, and waits until they are gone. */
export async function stopNotifyReceivers(dir: string): Promise<void> {
  const receivers = notifyReceiversIn(dir);
  for (const pid of receivers) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* gone */
    }
  }
  const deadline = Date.now() + 2000;
  while (receivers.some(alive) && Date.now() < deadline) await sleep(20);
}

/** Receivers (socat UNIX-RECV) whose socket lies in `dir`. */
export function notifyReceiversIn(dir: string): number[] {
  return processesRunning('socat', (argv) => argv.some((a) => a.startsWith(`UNIX-RECV:${dir}/`)));
}
