// A second image for tests of labs whose machines boot different images: the recipe
// test/fixtures/images/labtest-alt.yaml (bookworm plus a marker file, /etc/labctl-test-image),
// built into a data dir from the shared cache. Its packages are bookworm's, so the build
// reuses the cached bookworm base and takes seconds, not a debootstrap. Rebuilt when the
// recipe changes; left unmounted (`labctl up` mounts it, `down` unmounts it again).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../../src/exec/run.js';
import { withLock } from '../../src/host/lock.js';
import { buildImage, imagePaths, imageState, recipeHash, resolveRecipe } from '../../src/image/index.js';
import { TEST_CACHE_DIR, TEST_DATA_DIR, TEST_MIRROR } from './test-image.js';

export const ALT_IMAGE = 'labtest-alt';
export const ALT_RECIPE_FILE = fileURLToPath(new URL('../fixtures/images/labtest-alt.yaml', import.meta.url));
/** What /etc/labctl-test-image holds in a machine booted from it. */
export const ALT_MARKER = 'labtest-alt';

/** Builds ALT_IMAGE into dataDir unless it is there from this recipe already; returns whether it built. */
export async function ensureAltImage(dataDir: string = TEST_DATA_DIR): Promise<{ built: boolean; seconds: number }> {
  const recipe = resolveRecipe(ALT_RECIPE_FILE, { mirror: TEST_MIRROR });
  const hash = recipeHash(recipe, true);
  mkdirSync(join(TEST_DATA_DIR, 'locks'), { recursive: true });
  return withLock(join(TEST_DATA_DIR, 'locks', 'alt-image.lock'), { waitMs: 30 * 60_000, what: 'the alt test image is being built' }, async () => {
    const paths = imagePaths(dataDir, ALT_IMAGE);
    const st = imageState(paths);
    if (st.state === 'ready' && st.meta?.recipeHash === hash) return { built: false, seconds: 0 };
    const started = Date.now();
    process.stderr.write(`# building test image ${ALT_IMAGE} in ${dataDir} from the cached bookworm base...\n`);
    const result = await buildImage(recipe, { dataDir, cacheDir: TEST_CACHE_DIR, renderer: 'silent', handleSignals: false, log: () => {} });
    // A build that replaced a mounted image leaves the new one mounted: the tests start with it unmounted.
    if (result.mounted) await run(['umount', paths.mountDir], { step: 'unmount the alt test image', allowFailure: true });
    const seconds = (Date.now() - started) / 1000;
    process.stderr.write(`# built ${ALT_IMAGE} in ${seconds.toFixed(1)} s\n`);
    return { built: true, seconds };
  });
}
