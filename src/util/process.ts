// Small process helpers shared by every concern that waits for or checks on processes.
import { readFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';

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
