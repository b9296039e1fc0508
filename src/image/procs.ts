// Finding and stopping the processes that use a path (a build's chroot, its mount).
import { readFileSync, readlinkSync } from 'node:fs';
import { alive, fdTargets, pids, sleep } from '../util/process.js';

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
        if (args.some((a) => under(a, paths) || paths.some((d) => a.startsWith('--directory=' + d) || a.startsWith('-D' + d)))) how = 'cmdline';
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

/**
 * Stops every process using the paths: SIGTERM, then SIGKILL for those still there
 * after graceMs. Repeats a few times because killing a parent can leave new orphans.
 * Returns the processes it signalled.
 */
export async function killProcessesUsing(paths: string[], graceMs = 3000): Promise<ProcessUse[]> {
  const signalled: ProcessUse[] = [];
  for (let round = 0; round < 4; round++) {
    const users = processesUsing(paths);
    if (!users.length) break;
    signalled.push(...users);
    for (const u of users) {
      try {
        process.kill(u.pid, round === 0 ? 'SIGTERM' : 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    const deadline = Date.now() + (round === 0 ? graceMs : 2000);
    while (Date.now() < deadline && users.some((u) => alive(u.pid))) await sleep(50);
    for (const u of users) {
      if (alive(u.pid)) {
        try {
          process.kill(u.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
  }
  return signalled;
}
