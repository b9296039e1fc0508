// Where labctl keeps things on the host, and the one way to choose them:
// an explicit option first, then the environment, then the default. An empty variable
// counts as unset.
//   data dir  images, their mounts and the build caches   --data-dir, $LABCTL_DATA_DIR, /var/lib/labctl
//   run dir   lab state files, locks, per-lab run files   $LABCTL_RUN_DIR, /run/labctl (gone at reboot, as the labs are)
import { resolve } from 'node:path';

export const DEFAULT_DATA_DIR = '/var/lib/labctl';
const DEFAULT_RUN_DIR = '/run/labctl';

/** The data dir (always absolute): `explicit`, then $LABCTL_DATA_DIR, then /var/lib/labctl. */
export function resolveDataDir(explicit?: string): string {
  return resolve(explicit || process.env.LABCTL_DATA_DIR || DEFAULT_DATA_DIR);
}

/** The run dir (always absolute): $LABCTL_RUN_DIR, then /run/labctl. Read at each call, so a test may set it. */
export function runDir(): string {
  return resolve(process.env.LABCTL_RUN_DIR || DEFAULT_RUN_DIR);
}
