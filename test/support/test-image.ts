// ONE shared bookworm test image per machine, for the whole test suite.
//
//   import { getTestImage } from '../support/test-image.js';
//   const { dataDir, name, path } = await getTestImage();
//   // path: read-only rootfs subvolume, e.g. for
//   //   systemd-nspawn --register=no --keep-unit --ephemeral -D path ...
//   // or ensureImageMounted(name, dataDir) from src/image/index.ts.
//
// node:test runs every file in its own process: a lock file makes sure only one
// process builds; the others wait and reuse it. The image stays in
// /var/tmp/labctl-test-data ($LABCTL_TEST_DATA_DIR) between runs and is rebuilt only
// when the bookworm recipe (its hash) changes. scripts/test-image.ts prepares it
// before the suite and cleanupTestImage() unmounts it and frees the loop device after.
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  buildImage,
  ensureImageMounted,
  imageInUseBy,
  imagePaths,
  imageState,
  loopsUnder,
  mountsUnder,
  recipeHash,
  resolveRecipe,
} from '../../src/image/index.js';
import { withLock } from '../../src/image/lock.js';
import { detachLoops, unmountTree } from '../../src/image/mount.js';
import { killProcessesUsing } from '../../src/image/procs.js';

export const TEST_DATA_DIR = process.env.LABCTL_TEST_DATA_DIR || '/var/tmp/labctl-test-data';
export const TEST_IMAGE_NAME = 'bookworm';
export const TEST_MIRROR = process.env.LABCTL_TEST_MIRROR || 'http://deb.debian.org/debian';
/** The cache the shared image was built with; scratch builds share it to stay fast. */
export const TEST_CACHE_DIR = join(TEST_DATA_DIR, 'cache');
const LOCK = join(TEST_DATA_DIR, 'locks', 'test-image.lock');
const SCRATCH = join(TEST_DATA_DIR, 'scratch');

export interface TestImage {
  dataDir: string;
  name: string;
  /** the read-only rootfs subvolume (DATA/mnt/bookworm/rootfs), mounted */
  path: string;
  recipeHash: string;
  /** this call built it (false: reused) */
  built: boolean;
}

let pending: Promise<TestImage> | undefined;

/** The shared bookworm test image, built once (per recipe hash) and mounted. Needs root. */
export function getTestImage(): Promise<TestImage> {
  pending ??= getTestImageOnce().catch((e: unknown) => {
    pending = undefined;
    throw e;
  });
  return pending;
}

async function getTestImageOnce(): Promise<TestImage> {
  const recipe = resolveRecipe(TEST_IMAGE_NAME, { mirror: TEST_MIRROR });
  const hash = recipeHash(recipe, true);
  mkdirSync(TEST_DATA_DIR, { recursive: true });
  return withLock(LOCK, { waitMs: 30 * 60_000, what: 'the shared test image is busy' }, async () => {
    const paths = imagePaths(TEST_DATA_DIR, TEST_IMAGE_NAME);
    const st = imageState(paths);
    let built = false;
    if (st.state !== 'ready' || st.meta?.recipeHash !== hash) {
      const started = Date.now();
      process.stderr.write(`# building the shared test image ${TEST_IMAGE_NAME} in ${TEST_DATA_DIR} from ${TEST_MIRROR}...\n`);
      await buildImage(recipe, { dataDir: TEST_DATA_DIR, renderer: 'silent', handleSignals: false });
      process.stderr.write(`# built the shared test image in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
      built = true;
    }
    const { path } = await ensureImageMounted(TEST_IMAGE_NAME, TEST_DATA_DIR);
    return { dataDir: TEST_DATA_DIR, name: TEST_IMAGE_NAME, path, recipeHash: hash, built };
  });
}

/**
 * A fresh empty data dir under TEST_DATA_DIR/scratch for a test's own images (so
 * cleanupTestImage() also catches what a crashed test left). Use TEST_CACHE_DIR as
 * its --cache-dir to build from the shared cache.
 */
export function makeScratchDataDir(prefix = 't'): string {
  mkdirSync(SCRATCH, { recursive: true });
  return mkdtempSync(join(SCRATCH, `${prefix}-`));
}

export interface CleanupReport {
  /** mount points still under the test data dir (empty = clean) */
  mounts: string[];
  /** loop devices still backed by files under the test data dir (empty = clean) */
  loops: string[];
  /** what was left alone on purpose: builds in progress, images machines still use */
  skipped: string[];
}

/** Data dirs under the test data dir: itself, the scratch ones, and any other that has something mounted or attached. */
function testDataDirs(): string[] {
  const dirs = new Set([TEST_DATA_DIR]);
  try {
    for (const d of readdirSync(SCRATCH)) dirs.add(join(SCRATCH, d));
  } catch {
    /* no scratch */
  }
  for (const m of mountsUnder(TEST_DATA_DIR)) {
    const hit = /^(.*)\/mnt\/[^/]+$/.exec(m.mountPoint);
    if (hit?.[1]) dirs.add(hit[1]);
  }
  for (const l of loopsUnder(TEST_DATA_DIR)) {
    const hit = /^(.*)\/images\/[^/]+\.btrfs(\.new)?$/.exec(l.backingFile);
    if (hit?.[1]) dirs.add(hit[1]);
  }
  return [...dirs];
}

function livePid(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return undefined;
    process.kill(pid, 0);
    return pid;
  } catch {
    return undefined;
  }
}

/**
 * Unmounts everything under the test data dir and detaches its loop devices: the
 * shared image and whatever scratch builds left. The built image and the caches stay
 * (so the next run reuses them) unless remove is set. Builds in progress (another
 * process holds their lock) and images that machines still use are left alone and
 * reported, unless force is set: then processes using the mounts are killed first.
 */
export async function cleanupTestImage(options: { remove?: boolean; force?: boolean } = {}): Promise<CleanupReport> {
  const run = async (): Promise<CleanupReport> => {
    const skipped: string[] = [];
    const keep: string[] = [];
    if (options.force) await killProcessesUsing([TEST_DATA_DIR]);
    for (const dataDir of testDataDirs()) {
      let locks: string[] = [];
      try {
        locks = readdirSync(join(dataDir, 'locks')).filter((f) => f.endsWith('.build.lock'));
      } catch {
        /* none */
      }
      for (const lock of locks) {
        const name = lock.slice(0, -'.build.lock'.length);
        const pid = livePid(join(dataDir, 'locks', lock));
        if (pid && !options.force) {
          const p = imagePaths(dataDir, name);
          keep.push(p.newMountDir, p.newImageFile);
          skipped.push(`${p.newImageFile}: being built by process ${pid}`);
        }
      }
      if (options.force) continue;
      for (const m of mountsUnder(join(dataDir, 'mnt'))) {
        const name = m.mountPoint.slice(join(dataDir, 'mnt').length + 1).split('/')[0];
        if (!name || name.endsWith('.new') || m.mountPoint !== join(dataDir, 'mnt', name)) continue;
        const users = await imageInUseBy(name, { dataDir });
        if (users.length) {
          const p = imagePaths(dataDir, name);
          keep.push(p.mountDir, p.imageFile);
          skipped.push(`${p.imageFile}: in use by ${users.join(', ')}`);
        }
      }
    }
    const kept = (path: string) => keep.some((k) => path === k || path.startsWith(`${k}/`));
    for (const m of mountsUnder(TEST_DATA_DIR)) {
      if (kept(m.mountPoint) || !mountsUnder(m.mountPoint).length) continue;
      await unmountTree(m.mountPoint, { killUsers: Boolean(options.force), step: 'test cleanup' });
    }
    for (const loop of loopsUnder(TEST_DATA_DIR)) {
      if (kept(loop.backingFile)) continue;
      try {
        for (const pinned of await detachLoops(loop.backingFile)) skipped.push(pinned.message);
      } catch (e) {
        skipped.push((e as Error).message);
      }
    }
    if (!keep.length) {
      rmSync(SCRATCH, { recursive: true, force: true });
      if (options.remove) rmSync(TEST_DATA_DIR, { recursive: true, force: true });
    }
    return {
      mounts: mountsUnder(TEST_DATA_DIR).map((m) => m.mountPoint).filter((m) => !kept(m)),
      loops: loopsUnder(TEST_DATA_DIR).filter((l) => !kept(l.backingFile)).map((l) => `${l.device} (${l.backingFile})`),
      skipped,
    };
  };
  mkdirSync(TEST_DATA_DIR, { recursive: true });
  return withLock(LOCK, { waitMs: 30 * 60_000, what: 'the shared test image is busy' }, run);
}
