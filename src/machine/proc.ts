// Process facts read from /proc, used to find and verify machines' processes.
import { readdirSync, readFileSync } from 'node:fs';
import { alive, sleep } from '../util/process.js';

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

/** Every nspawn process on the host that runs a machine of this name. */
export function nspawnPidsOf(name: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (isNspawnOf(pid, name)) out.push(pid);
  }
  return out;
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
  const pids = notifyReceiversIn(dir);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* gone */
    }
  }
  const deadline = Date.now() + 2000;
  while (pids.some(alive) && Date.now() < deadline) await sleep(20);
}

/** Receivers (socat UNIX-RECV) whose socket lies in `dir`. */
export function notifyReceiversIn(dir: string): number[] {
  const prefix = `UNIX-RECV:${dir}/`;
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const argv = cmdline(Number(entry));
    if ((argv[0] ?? '').endsWith('socat') && argv.some((a) => a.startsWith(prefix))) out.push(Number(entry));
  }
  return out;
}
