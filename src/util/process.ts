// Small process helpers shared by every concern that waits for or checks on processes.
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { listDir } from './fs.js';

/**
 * True while `pid` runs. A zombie counts as gone: it holds nothing, and here (PID 1 is not
 * systemd and reaps late) a machine's exited nspawn can stay a zombie for seconds.
 */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = stat.lastIndexOf(')');
    return stat.slice(close + 2, close + 3) !== 'Z';
  } catch {
    return false;
  }
}

export const sleep = (ms: number): Promise<void> => delay(Math.max(0, ms));

/** Every process id on the host, from /proc (empty if /proc cannot be read). */
export function pids(): number[] {
  return listDir('/proc')
    .filter((e) => /^\d+$/.test(e))
    .map(Number);
}

/** What a process's open file descriptors point at (empty when it is gone or not readable). */
export function fdTargets(pid: number): string[] {
  const out: string[] = [];
  for (const fd of listDir(`/proc/${pid}/fd`)) {
    try {
      out.push(readlinkSync(`/proc/${pid}/fd/${fd}`));
    } catch {
      /* closed meanwhile */
    }
  }
  return out;
}

/** Finds a program in $PATH (plus the usual system directories) the way a shell would; undefined when absent. */
export function whichExecutable(name: string): string | undefined {
  if (isAbsolute(name)) return existsSync(name) ? name : undefined;
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'].filter(Boolean);
  for (const d of dirs) {
    const p = join(d, name);
    if (existsSync(p)) return p;
  }
  return undefined;
}
