// The shared test image around a test run:
//   node --import tsx scripts/test-image.ts prepare   # build (or reuse) and mount it; prints JSON {dataDir,name,path}
//   node --import tsx scripts/test-image.ts cleanup   # unmount, detach loop devices; exit 1 if anything is left
//   node --import tsx scripts/test-image.ts status    # what is built / mounted, JSON
//   node --import tsx scripts/test-image.ts reset     # cleanup and delete the test data dir (image and caches)
// cleanup --force also kills processes still using the mounts (a leaked machine);
// cleanup --remove then deletes the data dir too, as reset does (npm test, for the fresh
// data dir it made for its run).
// The data dir is $LABCTL_TEST_DATA_DIR (npm test sets it), else /var/tmp/labctl-test-data.
import { listImages, loopsUnder, mountsUnder } from '../src/image/index.js';
import { TEST_DATA_DIR, cleanupTestImage, getTestImage } from '../test/support/test-image.js';

const [command = 'status', ...flags] = process.argv.slice(2);
const force = flags.includes('--force');
const remove = flags.includes('--remove');

try {
  switch (command) {
    case 'prepare':
    case 'build': {
      const image = await getTestImage();
      process.stdout.write(`${JSON.stringify(image)}\n`);
      break;
    }
    case 'cleanup':
    case 'reset': {
      const removing = remove || command === 'reset';
      const left = await cleanupTestImage({ force, remove: removing });
      for (const s of left.skipped) process.stderr.write(`test-image: left alone: ${s}\n`);
      if (left.mounts.length || left.loops.length || left.skipped.length) {
        const rest = [...left.mounts, ...left.loops];
        if (rest.length) process.stderr.write(`test-image: still left under ${TEST_DATA_DIR}:\n${rest.map((l) => `  ${l}`).join('\n')}\n`);
        process.exitCode = 1;
      } else {
        process.stdout.write(`test-image: ${removing ? 'removed' : 'clean'}: no mount and no loop device left under ${TEST_DATA_DIR}\n`);
      }
      break;
    }
    case 'status': {
      const images = await listImages({ dataDir: TEST_DATA_DIR });
      process.stdout.write(
        `${JSON.stringify(
          { dataDir: TEST_DATA_DIR, images, mounts: mountsUnder(TEST_DATA_DIR).map((m) => m.mountPoint), loops: loopsUnder(TEST_DATA_DIR) },
          null,
          2,
        )}\n`,
      );
      break;
    }
    default:
      process.stderr.write('usage: node --import tsx scripts/test-image.ts prepare|cleanup [--force] [--remove]|status|reset\n');
      process.exitCode = 2;
  }
} catch (e) {
  process.stderr.write(`test-image ${command}: ${(e as Error).message}\n`);
  process.exitCode = 1;
}
