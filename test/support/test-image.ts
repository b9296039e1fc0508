// ONE shared bookworm test image per test run, shared by every test file.
//
//   import { getTestImage } from '../support/test-image.js';
//   const { dataDir, name, path } = await getTestImage();
//   // path: read-only rootfs subvolume, e.g. for
//   //   systemd-nspawn --register=no --keep-unit --ephemeral -D path ...
//   // or ensureImageMounted(name, dataDir) from src/image/index.ts.
//
// node:test runs every file in its own process: a lock file makes sure only one
// process builds; the others wait and reuse it. The image lives in the test data dir,
// $LABCTL_TEST_DATA_DIR. `npm test` (scripts/test-all.sh) makes a fresh one for each run
// (/var/tmp/labctl-test.XXXXXX), so the image is built there from the Debian mirror by a
// cold debootstrap (empty caches), and removes it at the end. A data dir named by the user
// in $LABCTL_TEST_DATA_DIR (or, for a test file run on its own without it,
// /var/tmp/labctl-test-data) is kept between runs, for development: the image there is
// reused, and rebuilt when the bookworm recipe (its hash) or the code that builds images
// (src/image/**/*.ts and the recipe file, byte for byte: imageCodeHash) changed since it was
// built, so tests never run on an image made by older build code. That rebuild uses the
// cached base (DATA/cache), which PLAN_VERSION in src/image/recipe.ts invalidates.
// scripts/test-image.ts prepares the image before the suite; cleanupTestImage() unmounts
// it and frees the loop device after (and with remove, deletes the data dir).
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildImage, mountImage, imageInUseBy, imagePaths, imageState, loopsUnder, mountsUnder, recipeHash, resolveRecipe } from '../../src/image/index.js';
import { withLock } from '../../src/host/lock.js';
import { imagePins, unpinImage } from '../../src/host/state.js';
import { filesUnder } from './files.js';
import { detachLoops, unmountTree } from '../../src/image/mount.js';
import { killProcessesUsing } from '../../src/image/procs.js';
import { alive } from '../../src/util/process.js';

export const TEST_DATA_DIR = process.env.LABCTL_TEST_DATA_DIR || '/var/tmp/labctl-test-data';
export const TEST_IMAGE_NAME = 'bookworm';
export const TEST_MIRROR = process.env.LABCTL_TEST_MIRROR || 'http://deb.debian.org/debian';
/** The cache the shared image was built with; scratch builds share it to stay fast. */
export const TEST_CACHE_DIR = join(TEST_DATA_DIR, 'cache');
const LOCK = join(TEST_DATA_DIR, 'locks', 'test-image.lock');
const SCRATCH = join(TEST_DATA_DIR, 'scratch');
/** What the shared image was built from (outside DATA/images, where every .json is an image's metadata). */
const BUILT_FROM = join(TEST_DATA_DIR, 'test-image.json');
const IMAGE_CODE_DIR = fileURLToPath(new URL('../../src/image/', import.meta.url));

interface BuiltFrom {
  /** the image's filesystem uuid: this record is about that very image file */
  fsid: string;
  recipeHash: string;
  codeHash: string;
}

/** Hash of the image build code: every .ts file under src/image and the recipe file, by path and content. */
export function imageCodeHash(recipeFile: string): string {
  const hash = createHash('sha256');
  for (const file of [...filesUnder(IMAGE_CODE_DIR).filter((f) => f.endsWith('.ts')), recipeFile]) {
    hash
      .update(`${relative(IMAGE_CODE_DIR, file)}\0`)
      .update(readFileSync(file))
      .update('\0');
  }
  return hash.digest('hex').slice(0, 32);
}

function readBuiltFrom(): Partial<BuiltFrom> {
  try {
    return JSON.parse(readFileSync(BUILT_FROM, 'utf8')) as Partial<BuiltFrom>;
  } catch {
    return {};
  }
}

export interface TestImage {
  dataDir: string;
  name: string;
  /** the read-only rootfs subvolume (DATA/mnt/bookworm/rootfs), mounted */
  path: string;
  recipeHash: string;
  /** imageCodeHash() of the code that built it */
  codeHash: string;
  /** this call built it (false: reused) */
  built: boolean;
}

let pending: Promise<TestImage> | undefined;

/** The shared bookworm test image, built once (per recipe and build code) and mounted. Needs root. */
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
  const codeHash = imageCodeHash(recipe.sourceFile!);
  mkdirSync(TEST_DATA_DIR, { recursive: true });
  return withLock(LOCK, { waitMs: 30 * 60_000, what: 'the shared test image is busy' }, async () => {
    const paths = imagePaths(TEST_DATA_DIR, TEST_IMAGE_NAME);
    const st = imageState(paths);
    const from = readBuiltFrom();
    const why =
      st.state !== 'ready'
        ? 'none is built'
        : st.meta?.recipeHash !== hash
          ? 'the recipe changed'
          : from.fsid !== st.meta.fsid || from.codeHash !== codeHash
            ? 'the image build code changed (or its record is missing)'
            : undefined;
    let built = false;
    if (why) {
      const started = Date.now();
      process.stderr.write(`# building the shared test image ${TEST_IMAGE_NAME} in ${TEST_DATA_DIR} from ${TEST_MIRROR} (${why})...\n`);
      // The old record goes first: a build that fails half-way must not leave it vouching for the old image.
      rmSync(BUILT_FROM, { force: true });
      const result = await buildImage(recipe, { dataDir: TEST_DATA_DIR, renderer: 'silent', handleSignals: false });
      const record: BuiltFrom = { fsid: result.meta.fsid, recipeHash: hash, codeHash };
      writeFileSync(BUILT_FROM, `${JSON.stringify(record, null, 2)}\n`);
      process.stderr.write(`# built the shared test image in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
      built = true;
    }
    // Mounted as `labctl image mount` does: it stays mounted while the test files' labs come
    // and go (down of the last lab that boots an image unmounts it otherwise) until cleanup.
    const { path } = await mountImage(TEST_IMAGE_NAME, { dataDir: TEST_DATA_DIR });
    return { dataDir: TEST_DATA_DIR, name: TEST_IMAGE_NAME, path, recipeHash: hash, codeHash, built };
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

/** The pid in a lock file while that process runs (a zombie does not: it holds nothing), else undefined. */
function livePid(file: string): number | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(file, 'utf8').trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return undefined;
  return alive(pid) ? pid : undefined;
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
    // What getTestImage and the tests mounted by hand is no longer pinned (the pins live in
    // the run dir), including pins of scratch data dirs a test has removed already.
    for (const pin of imagePins()) {
      const underTestDir = pin.dataDir === TEST_DATA_DIR || pin.dataDir.startsWith(`${TEST_DATA_DIR}/`);
      if (underTestDir && !kept(imagePaths(pin.dataDir, pin.image).mountDir)) unpinImage(pin);
    }
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
      // rm -r would go down into a mount that is still there: then the dir stays, and is reported.
      if (options.remove && !mountsUnder(TEST_DATA_DIR).length) rmSync(TEST_DATA_DIR, { recursive: true, force: true });
    }
    return {
      mounts: mountsUnder(TEST_DATA_DIR)
        .map((m) => m.mountPoint)
        .filter((m) => !kept(m)),
      loops: loopsUnder(TEST_DATA_DIR)
        .filter((l) => !kept(l.backingFile))
        .map((l) => `${l.device} (${l.backingFile})`),
      skipped,
    };
  };
  mkdirSync(TEST_DATA_DIR, { recursive: true });
  return withLock(LOCK, { waitMs: 30 * 60_000, what: 'the shared test image is busy' }, run);
}
