// Ephemeral snapshots: nspawn --ephemeral makes `.#machine.<dir>XXXX` beside the booted
// directory and deletes it when it exits; one killed with SIGKILL leaves it behind.
import { rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { run } from '../exec/run.js';
import { listDir } from '../util/fs.js';
import { processesRunning } from './proc.js';

function nspawnUsing(directory: string): boolean {
  return processesRunning('systemd-nspawn', (argv) => argv.includes(`--directory=${directory}`)).length > 0;
}

/** Deletes leftover snapshots of `directory`, unless some nspawn still boots from it. */
export async function removeStaleSnapshots(directory: string): Promise<string[]> {
  if (nspawnUsing(directory)) return [];
  const parent = dirname(directory);
  const stem = `.#machine.${basename(directory)}`;
  const removed: string[] = [];
  for (const e of listDir(parent)) {
    const path = join(parent, e);
    if (e.startsWith(stem) && !e.endsWith('.lck')) {
      await run(['btrfs', 'subvolume', 'delete', path], { step: 'remove a leftover machine snapshot', allowFailure: true });
      removed.push(path);
    } else if (e.startsWith(`.#${stem}`) && e.endsWith('.lck')) {
      rmSync(path, { force: true });
    }
  }
  return removed;
}
