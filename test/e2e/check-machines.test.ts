// `labctl check` on a lab whose machines are booted (systemd-nspawn, direct backend, from
// the shared test image): the probes run from the host with `ip netns exec`, beside the
// machines, and measure the same as on the network alone.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isRoot, labctl, labctlOk, netnsList, ROOT } from '../support/cli.js';
import { getTestImage } from '../support/test-image.js';
import { check, leftovers } from '../fixtures/check/support.js';

const skip = isRoot ? false : 'needs root';
const PREFIX = 'ckv-';
const dir = mkdtempSync(join(tmpdir(), 'labctl-check-machines-'));
// The article's lab under its own names, so that it does not need the article's lock.
const file = join(dir, 'article-machines.yaml');
const ours = () => netnsList().filter((n) => n.startsWith(`ns-${PREFIX}`));
let dataDir = '';

before(async () => {
  if (!isRoot) return;
  dataDir = (await getTestImage()).dataDir;
  writeFileSync(
    file,
    readFileSync(join(ROOT, 'machines', 'article.yaml'), 'utf8')
      .replace(/^name: article$/m, `name: check-machines\nprefix: ${PREFIX}`)
      .replace(/^image: noble$/m, 'image: bookworm'),
  );
});

after(async () => {
  if (!isRoot) return;
  await labctl(['down', file]);
  assert.deepEqual(ours(), [], 'nothing of the lab is left');
  rmSync(dir, { recursive: true, force: true });
});

test('machines booted in every namespace: check measures what the lab declares', { skip }, async () => {
  const up = await labctlOk(['up', file, '--backend', 'direct', '--data-dir', dataDir]);
  assert.match(up.stdout, /lab "check-machines" is up: 4 machines/);
  const r = await check([file, '--json']);
  assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
  const doc = JSON.parse(r.stdout) as { targets: { name: string; probe: { node: string }; measured: { mapping: string; filtering: string; port: unknown } }[] };
  const c1 = doc.targets.find((t) => t.name === 'c1-nat')!;
  assert.equal(c1.probe.node, 'c1');
  assert.deepEqual([c1.measured.mapping, c1.measured.filtering], ['endpoint-independent', 'address-dependent']);
  assert.deepEqual(c1.measured.port, { kind: 'fixed', port: 54321 });
  const status = await labctlOk(['status', 'check-machines']);
  assert.match(status.stdout, /ckv-c1-nat\s+(running|degraded)\s/, 'the machines are still running after the check');
  assert.deepEqual(leftovers(`ns-${PREFIX}inet`, ours()), []);
});
