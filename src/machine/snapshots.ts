// Ephemeral snapshots: nspawn --ephemeral makes `.#machine.<dir>XXXX` beside the booted
// directory and deletes it when it exits by itself; one killed (SIGKILL, a unit's stop
// timeout) leaves it behind. Before it makes the snapshot, nspawn takes the lock file
// `.#.#machine.<dir>XXXX.lck` beside it and holds it open for as long as it runs.
import { readFileSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { run } from '../exec/run.js';
import { parseMountinfo } from '../image/mount.js';
import { listDir } from '../util/fs.js';
import { fdTargets, pids } from '../util/process.js';
import { processesRunning } from './proc.js';

const snapshotStem = (directory: string) => `.#machine.${basename(directory)}`;

function nspawnUsing(directory: string): boolean {
  return processesRunning('systemd-nspawn', (argv) => argv.includes(`--directory=${directory}`)).length > 0;
}

/** Deletes leftover snapshots of `directory` (and their locks), unless some nspawn still boots from it. */
export async function removeStaleSnapshots(directory: string): Promise<void> {
  if (nspawnUsing(directory)) return;
  const parent = dirname(directory);
  const stem = snapshotStem(directory);
  for (const e of listDir(parent)) {
    if (e.startsWith(stem) && !e.endsWith('.lck')) await removeSnapshot(join(parent, e), 'remove a leftover machine snapshot');
    else if (e.startsWith(`.#${stem}`) && e.endsWith('.lck')) rmSync(join(parent, e), { force: true });
  }
}

/**
 * The ephemeral snapshot a machine runs in, if it is one of `directory`'s. Read from the
 * leader's mountinfo (the subvolume its / is), not /proc/PID/root: that link does not
 * resolve across mount namespaces.
 */
export function snapshotOf(leader: number | undefined, directory: string): string | undefined {
  if (!leader) return undefined;
  let text: string;
  try {
    text = readFileSync(`/proc/${leader}/mountinfo`, 'utf8');
  } catch {
    return undefined;
  }
  return snapshotFromMountinfo(text, directory);
}

/** The `.#machine.*` snapshot beside `directory` that the mountinfo's / is mounted from. */
export function snapshotFromMountinfo(mountinfo: string, directory: string): string | undefined {
  for (const m of parseMountinfo(mountinfo)) {
    if (m.mountPoint !== '/') continue;
    const name = basename(m.root);
    if (name.startsWith('.#machine.')) return join(dirname(directory), name);
  }
  return undefined;
}

/** The snapshot of `directory` whose lock the nspawn `pid` holds: found while the machine is still being set up (no leader mount yet). */
export function snapshotHeldBy(pid: number | undefined, directory: string): string | undefined {
  if (!pid) return undefined;
  for (const target of fdTargets(pid)) {
    const snapshot = snapshotLockedBy(target, directory);
    if (snapshot) return join(dirname(directory), snapshot);
  }
  return undefined;
}

/** The snapshot (name) of `directory` whose nspawn lock an open file `target` is, if it is one. */
function snapshotLockedBy(target: string, directory: string): string | undefined {
  const prefix = `${dirname(directory)}/.#.#machine.`;
  return target.startsWith(prefix) && target.endsWith('.lck') ? basename(target).slice(2, -'.lck'.length) : undefined;
}

/** The `.#machine.*` snapshots of `directory` there are now (names). */
export function snapshotNames(directory: string): Set<string> {
  return new Set(listDir(dirname(directory)).filter((e) => e.startsWith(snapshotStem(directory))));
}

/**
 * Snapshots of `directory` made since `before` whose nspawn is gone: one whose lock no
 * process holds open is nobody's (a sibling machine starting at the same time holds its own).
 */
export function orphanSnapshotsSince(directory: string, before: Set<string>): string[] {
  const parent = dirname(directory);
  const fresh = [...snapshotNames(directory)].filter((n) => !before.has(n));
  if (!fresh.length) return [];
  const held = new Set<string>();
  for (const pid of pids()) {
    for (const target of fdTargets(pid)) {
      const snapshot = snapshotLockedBy(target, directory);
      if (snapshot) held.add(snapshot);
    }
  }
  return fresh.filter((n) => !held.has(n)).map((n) => join(parent, n));
}

/**
 * Deletes a leftover snapshot with the subvolumes nested in it (innermost first; nspawn
 * snapshots nested ones along, e.g. var/lib/machines), and its lock. The directory it lies
 * in is where the image's file system is mounted at its top (labctl's images:
 * DATA/mnt/NAME), which `btrfs subvolume list` paths are relative to.
 */
export async function removeSnapshot(snapshot: string, step: string): Promise<void> {
  await removeSubvolumeTree(snapshot, dirname(snapshot), step);
  rmSync(join(dirname(snapshot), `.#${basename(snapshot)}.lck`), { force: true });
}

async function removeSubvolumeTree(subvolume: string, mountDir: string, step: string): Promise<void> {
  const rel = subvolume.slice(mountDir.length + 1);
  const list = await run(['btrfs', 'subvolume', 'list', '-o', subvolume], { step, allowFailure: true });
  for (const line of list.stdout.split('\n')) {
    const nested = / path (.+)$/.exec(line.trim())?.[1];
    if (nested?.startsWith(`${rel}/`)) await removeSubvolumeTree(join(mountDir, nested), mountDir, step);
  }
  await run(['btrfs', 'subvolume', 'delete', subvolume], { step, allowFailure: true });
}
