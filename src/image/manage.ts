// list, rm, mount, umount, and ensureImageMounted (what `labctl up` calls).
import { existsSync, readFileSync, statSync } from 'node:fs';
import { mkdir, rm, rmdir } from 'node:fs/promises';
import { run } from '../exec/run.js';
import { ImageInUseError } from './errors.js';
import { UsageError } from '../util/errors.js';
import { imageInUseBy, type InUseOptions } from './inuse.js';
import { LockBusyError, withLock } from '../host/lock.js';
import { imageState, readMeta } from './meta.js';
import { detachLoops, loopBackingAt, loopMount, mountAt, unmountTree } from './mount.js';
import { checkImageName, imagePaths, type ImagePaths } from './paths.js';
import { resolveDataDir } from '../host/dirs.js';
import { pinImage, unpinImage } from '../host/state.js';
import { listDir } from '../util/fs.js';
import { alive } from '../util/process.js';

const MOUNT_LOCK_WAIT_MS = 10 * 60_000;

export interface ImageInfo {
  name: string;
  /** ready: usable; building: its first build is running; broken: not a complete image (rebuild or rm it) */
  state: 'ready' | 'building' | 'broken';
  reason?: string;
  distribution?: string;
  suite?: string;
  architecture?: string;
  /** bytes the sparse image file really takes on disk */
  sizeOnDisk: number;
  /** the image file's apparent size (the recipe's size) */
  sizeBytes: number;
  created?: string;
  recipeHash?: string;
  imageFile: string;
  mounted: boolean;
  /** DATA/mnt/NAME/rootfs when mounted */
  rootfs?: string;
  /** a build of this name is in progress */
  building: boolean;
  inUseBy: string[];
}

function diskUsage(file: string): { onDisk: number; apparent: number } {
  try {
    const st = statSync(file);
    return { onDisk: st.blocks * 512, apparent: st.size };
  } catch {
    return { onDisk: 0, apparent: 0 };
  }
}

/** True when DATA/mnt/NAME holds the current NAME.btrfs (not an older, replaced build). */
function mountedCurrent(paths: ImagePaths): 'no' | 'current' | 'stale' {
  const m = mountAt(paths.mountDir);
  if (!m) return 'no';
  const backing = loopBackingAt(paths.mountDir);
  if (backing && backing.backingFile === paths.imageFile && !backing.deleted) return 'current';
  return 'stale';
}

export async function listImages(options: { dataDir?: string; runDir?: string } = {}): Promise<ImageInfo[]> {
  const dataDir = resolveDataDir(options.dataDir);
  const imagesDir = imagePaths(dataDir, 'x').imagesDir;
  const names = new Set<string>();
  for (const e of listDir(imagesDir)) {
    const m = /^(.+)\.(btrfs|json)(\.new)?$/.exec(e);
    if (m?.[1]) names.add(m[1]);
  }
  const out: ImageInfo[] = [];
  for (const name of [...names].sort()) {
    const paths = imagePaths(dataDir, name);
    const st = imageState(paths);
    const building = buildRunning(paths);
    if (st.state === 'absent' && !building) continue; // only leftovers of a killed build: the next build removes them
    const meta = st.meta ?? readMeta(paths.metaFile);
    const usage = diskUsage(paths.imageFile);
    const mounted = mountedCurrent(paths) === 'current';
    const inUseBy = await imageInUseBy(name, { dataDir, ...(options.runDir ? { runDir: options.runDir } : {}) });
    out.push({
      name,
      state: st.state === 'ready' ? 'ready' : st.state === 'absent' ? 'building' : 'broken',
      ...(st.reason ? { reason: st.reason } : {}),
      ...(meta
        ? { distribution: meta.distribution, suite: meta.suite, architecture: meta.architecture, created: meta.created, recipeHash: meta.recipeHash }
        : {}),
      sizeOnDisk: usage.onDisk,
      sizeBytes: usage.apparent,
      imageFile: paths.imageFile,
      mounted,
      ...(mounted ? { rootfs: paths.rootfs } : {}),
      building,
      inUseBy,
    });
  }
  return out;
}

/** A build of this image is running (its build lock is held by a live process, not a killed one's zombie). */
function buildRunning(paths: ImagePaths): boolean {
  let pid: number;
  try {
    pid = Number(readFileSync(paths.buildLock, 'utf8').trim());
  } catch {
    return false;
  }
  return Number.isInteger(pid) && pid > 0 && alive(pid);
}

function requireReady(paths: ImagePaths, name: string): void {
  const st = imageState(paths);
  if (st.state === 'absent') {
    throw new UsageError(`image ${name} is not built (no ${paths.imageFile}); build it with: labctl image build ${name}`);
  }
  if (st.state === 'broken') {
    throw new UsageError(`image ${name} is not usable: ${st.reason}; rebuild it (labctl image build ${name}) or remove it (labctl image rm ${name})`);
  }
}

async function readOnlyCheck(rootfs: string): Promise<void> {
  const r = await run(['btrfs', 'property', 'get', '-ts', rootfs, 'ro'], { step: 'mount', allowFailure: true });
  if (r.exitCode !== 0 || r.stdout.trim() !== 'ro=true') {
    throw new Error(`image rootfs ${rootfs} is missing or not a read-only subvolume${r.stderr ? `: ${r.stderr.trim()}` : ''}`);
  }
}

async function mountLocked(paths: ImagePaths, name: string, inUse: InUseOptions): Promise<{ path: string; mountedNow: boolean }> {
  requireReady(paths, name);
  let mountedNow = false;
  const state = mountedCurrent(paths);
  if (state === 'stale') {
    // An older build (or something else) is mounted there: replace it if nothing uses it.
    const users = await imageInUseBy(name, inUse);
    if (users.length) throw new ImageInUseError(name, users, 'remount the rebuilt');
    await unmountTree(paths.mountDir, { step: 'mount' });
  }
  if (state !== 'current') {
    await mkdir(paths.mountDir, { recursive: true });
    await loopMount(paths.imageFile, paths.mountDir, { step: 'mount' });
    mountedNow = true;
  }
  try {
    await readOnlyCheck(paths.rootfs);
  } catch (e) {
    if (mountedNow) {
      await unmountTree(paths.mountDir, { step: 'mount' });
      await detachLoops(paths.imageFile);
    }
    throw e;
  }
  return { path: paths.rootfs, mountedNow };
}

// Concurrent callers in one process share one mount operation per image.
const pendingMounts = new Map<string, Promise<{ path: string }>>();

/**
 * Makes sure image NAME is loop-mounted and returns the read-only rootfs subvolume
 * to pass to `systemd-nspawn --directory` (with --ephemeral, nspawn snapshots it
 * inside the same btrfs, so starting is instant). Mounts after a reboot, replaces a
 * stale mount of an older build, and throws UsageError when the image is not built.
 */
export async function ensureImageMounted(name: string, dataDir?: string): Promise<{ path: string }> {
  checkImageName(name);
  const dir = resolveDataDir(dataDir);
  const paths = imagePaths(dir, name);
  const key = paths.imageFile;
  const pending = pendingMounts.get(key);
  if (pending !== undefined) return pending;
  const job = (async () => {
    // Fast path: already mounted and current, no lock needed.
    if (mountedCurrent(paths) === 'current' && imageState(paths).state === 'ready') return { path: paths.rootfs };
    return withLock(paths.imageLock, { waitMs: MOUNT_LOCK_WAIT_MS, what: `image ${name} is busy` }, async () => {
      const r = await mountLocked(paths, name, { dataDir: dir });
      return { path: r.path };
    });
  })();
  pendingMounts.set(key, job);
  try {
    return await job;
  } finally {
    pendingMounts.delete(key);
  }
}

export async function mountImageByName(name: string, options: { dataDir?: string } = {}): Promise<{ path: string; mountDir: string; mountedNow: boolean }> {
  checkImageName(name);
  const dir = resolveDataDir(options.dataDir);
  const paths = imagePaths(dir, name);
  return withLock(paths.imageLock, { waitMs: MOUNT_LOCK_WAIT_MS, what: `image ${name} is busy` }, async () => {
    const r = await mountLocked(paths, name, { dataDir: dir });
    // Mounted by hand: it stays mounted until `labctl image umount`, whatever labs come and go.
    pinImage({ image: name, dataDir: dir });
    return { ...r, mountDir: paths.mountDir };
  });
}

/** Unmounts image NAME and frees its loop device. Refused while machines or processes use it. */
export async function umountImage(name: string, options: { dataDir?: string; runDir?: string } = {}): Promise<{ unmounted: boolean }> {
  checkImageName(name);
  const dir = resolveDataDir(options.dataDir);
  const paths = imagePaths(dir, name);
  return withLock(paths.imageLock, { waitMs: MOUNT_LOCK_WAIT_MS, what: `image ${name} is busy` }, async () => {
    const wasMounted = Boolean(mountAt(paths.mountDir));
    if (!wasMounted && !existsSync(paths.imageFile) && !existsSync(paths.metaFile)) {
      throw new UsageError(`no image named ${name} in ${dir}`);
    }
    if (wasMounted) {
      const users = await imageInUseBy(name, { dataDir: dir, ...(options.runDir ? { runDir: options.runDir } : {}) });
      if (users.length) throw new ImageInUseError(name, users, 'unmount');
      await unmountTree(paths.mountDir, { step: 'umount' });
    }
    await detachLoops(paths.imageFile);
    await rmdir(paths.mountDir).catch(() => undefined);
    unpinImage({ image: name, dataDir: dir });
    return { unmounted: wasMounted };
  });
}

/** Removes image NAME (file, metadata, mount point). Refused while machines use it or while it is being built. */
export async function removeImage(name: string, options: { dataDir?: string; runDir?: string } = {}): Promise<{ removed: string[] }> {
  checkImageName(name);
  const dir = resolveDataDir(options.dataDir);
  const paths = imagePaths(dir, name);
  const present = [paths.imageFile, paths.metaFile, paths.newImageFile, paths.newMetaFile].filter((f) => existsSync(f));
  if (!present.length && !mountAt(paths.mountDir)) throw new UsageError(`no image named ${name} in ${dir}`);
  const users = await imageInUseBy(name, { dataDir: dir, ...(options.runDir ? { runDir: options.runDir } : {}) });
  if (users.length) throw new ImageInUseError(name, users, 'remove');
  try {
    return await withLock(paths.buildLock, { waitMs: 0, what: `image ${name} is being built` }, () =>
      withLock(paths.imageLock, { waitMs: MOUNT_LOCK_WAIT_MS, what: `image ${name} is busy` }, async () => {
        const again = await imageInUseBy(name, { dataDir: dir, ...(options.runDir ? { runDir: options.runDir } : {}) });
        if (again.length) throw new ImageInUseError(name, again, 'remove');
        for (const [mnt, file] of [
          [paths.mountDir, paths.imageFile],
          [paths.newMountDir, paths.newImageFile],
        ] as const) {
          await unmountTree(mnt, { step: 'rm' });
          await detachLoops(file);
          await rmdir(mnt).catch(() => undefined);
        }
        const removed: string[] = [];
        for (const f of [paths.imageFile, paths.metaFile, paths.newImageFile, paths.newMetaFile]) {
          if (existsSync(f)) {
            await rm(f, { force: true });
            removed.push(f);
          }
        }
        unpinImage({ image: name, dataDir: dir });
        return { removed };
      }),
    );
  } catch (e) {
    if (e instanceof LockBusyError) throw new UsageError(`image ${name} is being built (process ${e.holder ?? '?'}); wait for it or stop it first`);
    throw e;
  }
}
