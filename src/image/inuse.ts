// Which machines use an image: the machines recorded in the labs' state files
// (host/state.ts) that boot this data dir's image, labs whose `up` has recorded that it
// boots the image (before any machine is recorded), and live processes whose root,
// arguments or open files are inside the mounted image (e.g. a systemd-nspawn started by
// hand), so that nothing is unmounted under them.
import { resolve } from 'node:path';
import { imagePaths } from './paths.js';
import { processesUsing } from './procs.js';
import { mountAt } from './mount.js';
import { resolveDataDir } from '../host/dirs.js';
import { allImageUses, allStates } from '../host/state.js';

export interface InUseOptions {
  dataDir?: string;
  /** where the labs' state files are (default: the run dir, host/dirs.ts) */
  runDir?: string;
  /** also look for live processes inside the mounted image (default true) */
  processes?: boolean;
}

/** Names of what uses the image, e.g. ["machine c1 (lab article)", "process 812 systemd-nspawn"]; empty when unused. */
export async function imageInUseBy(name: string, options: InUseOptions = {}): Promise<string[]> {
  const dataDir = resolveDataDir(options.dataDir);
  const paths = imagePaths(dataDir, name);
  const users = new Set<string>();
  for (const state of allStates(options.runDir)) {
    for (const m of state.machines ?? []) {
      // The image of that name in this data dir: a machine's directory is under its mount.
      const dir = resolve(m.directory);
      if (m.image !== name || (dir !== paths.mountDir && !dir.startsWith(`${paths.mountDir}/`))) continue;
      users.add(`machine ${m.name}${state.lab !== m.name ? ` (lab ${state.lab})` : ''}`);
    }
  }
  // A lab whose `up` has mounted the image but recorded no machine yet.
  for (const { lab, use } of allImageUses(options.runDir)) {
    if (use.image === name && resolve(use.dataDir) === dataDir && ![...users].some((u) => u.endsWith(`(lab ${lab})`) || u === `machine ${lab}`))
      users.add(`lab ${lab}`);
  }
  if (options.processes !== false && mountAt(paths.mountDir)) {
    for (const p of processesUsing([paths.mountDir])) users.add(`process ${p.pid} ${p.comm}`);
  }
  return [...users];
}
