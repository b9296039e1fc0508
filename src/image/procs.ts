// Finding and stopping the processes that use a path (a build's chroot, its mount).
import { readFileSync, readlinkSync } from 'node:fs';
import { descendants, fdTargets, pids, processId, selfAndAncestors, signalProcess, waitGone, type ProcessId } from '../util/process.js';

export interface ProcessUse {
  pid: number;
  comm: string;
  /** root | cwd | cmdline | fd */
  how: string;
}

function under(p: string, prefixes: string[]): boolean {
  const clean = p.replace(/ \(deleted\)$/, '');
  return prefixes.some((d) => clean === d || clean.startsWith(d.endsWith('/') ? d : `${d}/`));
}

function safeReadlink(p: string): string | undefined {
  try {
    return readlinkSync(p);
  } catch {
    return undefined;
  }
}

/** Processes (other than this one) whose root, cwd, arguments or open files are at or under one of the paths. */
export function processesUsing(paths: string[], options: { fds?: boolean; cmdline?: boolean } = {}): ProcessUse[] {
  const { fds = true, cmdline = true } = options;
  const found: ProcessUse[] = [];
  for (const pid of pids()) {
    if (pid === process.pid) continue;
    const p = String(pid);
    const base = `/proc/${p}`;
    let how: string | undefined;
    const root = safeReadlink(`${base}/root`);
    const cwd = safeReadlink(`${base}/cwd`);
    if (root && root !== '/' && under(root, paths)) how = 'root';
    else if (cwd && under(cwd, paths)) how = 'cwd';
    if (!how && cmdline) {
      try {
        const args = readFileSync(`${base}/cmdline`, 'utf8').split('\0');
        if (args.some((a) => under(a, paths) || paths.some((d) => a.startsWith(`--directory=${d}`) || a.startsWith(`-D${d}`)))) how = 'cmdline';
      } catch {
        /* gone */
      }
    }
    if (!how && fds && fdTargets(pid).some((target) => target.startsWith('/') && under(target, paths))) how = 'fd';
    if (how) {
      let comm = '?';
      try {
        comm = readFileSync(`${base}/comm`, 'utf8').trim();
      } catch {
        /* gone */
      }
      found.push({ pid, comm, how });
    }
  }
  return found;
}

/** How long processes get to die after SIGKILL (one in the kernel, D state, dies when it comes back out). */
const KILL_WAIT_MS = 10_000;

/**
 * Stops every process using the paths, and the processes those started: SIGTERM, SIGKILL to
 * what is still there after graceMs, and then waits until they are gone (zombies count as
 * gone: they hold nothing). Repeats while it finds more (a command a dying parent started
 * meanwhile, an orphan that opened a file there later), a few rounds at most, then SIGKILL at
 * once. Never signals labctl itself or its ancestors. Returns the users it found, so that a
 * caller can check with processesUsing() whether any is left (one the kernel keeps).
 */
export async function killProcessesUsing(paths: string[], graceMs = 3000): Promise<ProcessUse[]> {
  const signalled: ProcessUse[] = [];
  const never = selfAndAncestors();
  for (let round = 0; round < 4; round++) {
    const users = processesUsing(paths).filter((u) => !never.has(u.pid));
    if (!users.length) break;
    signalled.push(...users);
    // The users and their descendants, read while the tree is whole (an orphan is nobody's child).
    const doomed = [...users.map((u) => processId(u.pid)), ...descendants(users.map((u) => u.pid))].filter(
      (p): p is ProcessId => p !== undefined && !never.has(p.pid),
    );
    const first = round === 0 ? 'SIGTERM' : 'SIGKILL';
    for (const p of doomed) signalProcess(p, first);
    let left = await waitGone(doomed, first === 'SIGTERM' ? graceMs : KILL_WAIT_MS);
    if (left.length && first === 'SIGTERM') {
      left = [...left, ...descendants(left.map((p) => p.pid)).filter((p) => !never.has(p.pid))];
      for (const p of left) signalProcess(p, 'SIGKILL');
      await waitGone(left, KILL_WAIT_MS);
    }
  }
  return signalled;
}
