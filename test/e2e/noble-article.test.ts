// The design's own commands, verbatim: `labctl image build noble`, `labctl up` (the
// article's lab, which boots Ubuntu 24.04 "noble" as the article did), a command in a
// machine through `labctl exec`, and `labctl down`, which leaves nothing mounted. The rest
// of the suite boots the shared bookworm test image; this one file needs Ubuntu's archive
// and is skipped, with the reason, when it does not answer.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { isRoot, labctl, labctlOk, netnsList } from '../support/cli.js';
import { TEST_DATA_DIR, TEST_CACHE_DIR } from '../support/test-image.js';
import { loopsUnder, mountsUnder } from '../../src/image/index.js';

const ARCHIVE = 'http://archive.ubuntu.com/ubuntu/dists/noble/Release';
const ARTICLE_NS = ['ns-c0', 'ns-c0-nat', 'ns-c1', 'ns-c1-nat', 'ns-inet'];

/** Why the test cannot run here, or undefined when it can. */
async function cannotRun(): Promise<string | undefined> {
  if (!isRoot) return 'needs root';
  try {
    const r = await fetch(ARCHIVE, { method: 'HEAD', signal: AbortSignal.timeout(15_000) });
    if (!r.ok) return `Ubuntu's archive answered ${r.status} for ${ARCHIVE}`;
  } catch (e) {
    return `Ubuntu's archive did not answer (${ARCHIVE}: ${(e as Error).cause ?? (e as Error).message})`;
  }
  return undefined;
}
const skip = (await cannotRun()) ?? false;
if (skip) process.stdout.write(`# skipped: ${skip}\n`);

const data = ['--data-dir', TEST_DATA_DIR];
const nobleMounts = () => mountsUnder(join(TEST_DATA_DIR, 'mnt', 'noble')).map((m) => m.mountPoint);
const nobleLoops = () =>
  loopsUnder(TEST_DATA_DIR)
    .filter((l) => l.backingFile.includes('noble'))
    .map((l) => `${l.device} ${l.backingFile}`);

after(async () => {
  if (skip) return;
  // Whatever happened above: no lab, no image of this test.
  await labctl(['down']);
  await labctl(['image', 'rm', 'noble', ...data]);
});

test('image build noble, up, exec conntrack -L in c1-nat, down: the article lab boots Ubuntu 24.04 and leaves nothing mounted', {
  skip,
  timeout: 15 * 60_000,
}, async () => {
  assert.match(readFileSync(join(import.meta.dirname, '../../machines/article.yaml'), 'utf8'), /^image: noble$/m, "the article's lab names noble");
  const build = await labctl(['image', 'build', 'noble', '--cache-dir', TEST_CACHE_DIR, ...data, '--json'], { timeoutMs: 12 * 60_000 });
  assert.equal(build.exitCode, 0, build.stderr);
  assert.equal(JSON.parse(build.stdout).meta.suite, 'noble');

  // `labctl up` with no arguments: the article's lab, its image: noble.
  const up = await labctlOk(['up', ...data]);
  assert.match(up.stdout, /lab "article" is up: 4 machines/);
  assert.deepEqual(
    ARTICLE_NS.filter((n) => !netnsList().includes(n)),
    [],
    'every namespace of the article',
  );
  const release = await labctlOk(['exec', 'c0', '--', 'cat', '/etc/os-release']);
  assert.match(release.stdout, /Ubuntu 24\.04/, 'c0 runs Ubuntu 24.04');

  // The article's first experiment from inside the machines, then its conntrack -L.
  await labctlOk(['exec', 'c1', '--', 'sh', '-c', 'echo abc | nc -u -w1 100.64.1.100 54321']);
  const listing = await labctlOk(['exec', 'c1-nat', '--', 'conntrack', '-L']);
  assert.match(listing.stdout + listing.stderr, /src=10\.0\.2\.1 dst=100\.64\.1\.100 .*dport=54321/, "c1-nat tracks c1's flow to c0-nat");
  assert.ok(nobleMounts().length > 0, 'up mounted the image');

  // down of the last lab that uses noble unmounts it and frees its loop device.
  await labctlOk(['down']);
  assert.deepEqual(
    ARTICLE_NS.filter((n) => netnsList().includes(n)),
    [],
    'no namespace left',
  );
  assert.deepEqual(nobleMounts(), [], 'no mount of the image left');
  assert.deepEqual(nobleLoops(), [], 'no loop device of the image left');
  assert.ok(!existsSync('/run/labctl/article.json'), 'no state file left');
  const nspawns = spawnSync('pgrep', ['-a', '-f', `systemd-nspawn.*${TEST_DATA_DIR}/mnt/noble`], { encoding: 'utf8' });
  assert.equal(nspawns.status, 1, `no systemd-nspawn of the image left: ${nspawns.stdout}`);

  // Mounted by hand, it stays mounted through up and down, until image umount.
  await labctlOk(['image', 'mount', 'noble', ...data]);
  await labctlOk(['up', ...data]);
  await labctlOk(['down']);
  assert.ok(nobleMounts().length > 0, 'an image mounted with labctl image mount stays mounted after down');
  await labctlOk(['image', 'umount', 'noble', ...data]);
  assert.deepEqual(nobleMounts(), [], 'image umount unmounts it');
  assert.deepEqual(nobleLoops(), [], 'and frees its loop device');
});
