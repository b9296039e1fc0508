// What a build in progress leaves behind, and its removal: by the build itself when it
// fails or is interrupted, and by the next build of the image when this one was killed hard.
import { readdir, rm, rmdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { alive } from '../util/process.js';
import { detachLoops, unmountTree } from './mount.js';
import type { BuildContext } from './plan.js';
import { killProcessesUsing, processesUsing, type ProcessUse } from './procs.js';

/**
 * Removes what a build in progress made (mount, loop device, .new files). Safe to call twice.
 * A build killed hard (SIGKILL, OOM) can leave its commands' children running in it (a
 * debootstrap's dpkg, a wget, a chroot): they are stopped, and must be gone, before anything
 * is unmounted or removed, or they would go on writing into a lazily detached filesystem
 * while the next build starts afresh beside them. Returns the processes it stopped.
 */
export async function removeNewBuild(ctx: BuildContext): Promise<ProcessUse[]> {
  const p = ctx.paths;
  const paths = [p.newMountDir, p.newImageFile];
  const stopped = await killProcessesUsing(paths);
  const left = processesUsing(paths);
  if (left.length) {
    throw new Error(
      `processes still use the unfinished build in ${p.newMountDir}: ` +
        `${left.map((u) => `process ${u.pid} (${u.comm}, its ${u.how})`).join(', ')}; stop them and build again (nothing was removed)`,
    );
  }
  await unmountTree(p.newMountDir, { killUsers: true, step: 'cleanup' });
  await detachLoops(p.newImageFile);
  await rm(p.newImageFile, { force: true });
  await rm(p.newMetaFile, { force: true });
  await rmdir(p.newMountDir).catch(() => undefined);
  await removeStalePartialStreams(dirname(ctx.baseStream));
  return stopped;
}

/** Half-written base streams (NAME.partial-PID) in the cache whose writer is gone (or is this process). */
async function removeStalePartialStreams(cacheDir: string): Promise<void> {
  for (const f of await readdir(cacheDir).catch(() => [] as string[])) {
    if (f.includes('.partial-')) {
      const pid = Number(f.split('.partial-')[1]);
      if (pid === process.pid || !alive(pid)) await rm(join(cacheDir, f), { force: true });
    }
  }
}
