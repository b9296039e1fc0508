// Host limits that cap how many machines can boot at once. labctl never raises them (it
// does not change the host's sysctls); it checks before starting anything and says which
// to raise and by how much.
import { readFileSync } from 'node:fs';
import { fdTargets, pids } from '../util/process.js';
import { sysctlPath } from '../util/sysctl.js';

/** inotify instances each booted machine's systemd and journald use (measured: about 3). */
export const INOTIFY_PER_MACHINE = 3;

/** inotify instances open by all processes (root's, which the per-user limit counts). */
export function inotifyInstancesInUse(): number {
  let n = 0;
  for (const pid of pids()) n += fdTargets(pid).filter((t) => t === 'anon_inode:inotify').length;
  return n;
}

export function readSysctl(path: string): number {
  return Number(readFileSync(sysctlPath(path), 'utf8').trim());
}

/** An error message when `machines` more machines would exceed the host's inotify limit, else undefined. */
export function inotifyShortfall(machines: number): string | undefined {
  const max = readSysctl('fs.inotify.max_user_instances');
  const used = inotifyInstancesInUse();
  const need = machines * INOTIFY_PER_MACHINE;
  if (used + need <= max) return undefined;
  const suggest = 2 ** Math.ceil(Math.log2(used + need + 64));
  return (
    `booting ${machines} machines needs about ${need} inotify instances, but fs.inotify.max_user_instances is ${max} and ${used} are in use; ` +
    `systemd in a machine fails with "Too many open files" past that. Raise the limit first (labctl does not change host sysctls), e.g.\n` +
    `  sysctl -w fs.inotify.max_user_instances=${suggest}`
  );
}
