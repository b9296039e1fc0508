// bin/labctl.js runs the bundle through vm.Script with V8's code cache beside it. These
// tests run the real entry point on a copy of the real bundle (built here when missing):
// with no cache it writes one that V8 then accepts; a damaged cache is rejected, the
// command still works and the cache is rewritten; where the cache cannot be written the
// command works without one.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import Module from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';
import { after, before, describe, test } from 'node:test';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'labctl-bin-'));
const bundle = join(dir, 'dist', 'bundle', 'labctl.cjs');
const cache = `${bundle}.cache`;
after(() => rmSync(dir, { recursive: true, force: true }));

before(() => {
  if (!existsSync(join(ROOT, 'dist', 'bundle', 'labctl.cjs'))) {
    const r = spawnSync(process.execPath, ['scripts/bundle.mjs'], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(r.status, 0, `npm run build's bundling step failed: ${r.stderr}`);
  }
  // A project of its own: bin/, the bundle without its cache, and the real node_modules.
  mkdirSync(join(dir, 'bin'));
  mkdirSync(join(dir, 'dist', 'bundle'), { recursive: true });
  for (const f of ['labctl.js', 'package.json']) copyFileSync(join(ROOT, 'bin', f), join(dir, 'bin', f));
  copyFileSync(join(ROOT, 'dist', 'bundle', 'labctl.cjs'), bundle);
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  symlinkSync(join(ROOT, 'machines'), join(dir, 'machines'));
});

function labctl(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const env = { ...process.env };
  delete env.LABCTL_FROM_SOURCE;
  return spawnSync(process.execPath, [join(dir, 'bin', 'labctl.js'), ...args], { encoding: 'utf8', env });
}

/** Whether V8 takes the cache file for the bundle, as bin/labctl.js compiles it. */
function cacheAccepted(): boolean {
  const script = new vm.Script(Module.wrap(readFileSync(bundle, 'latin1')), { filename: bundle, cachedData: readFileSync(cache) });
  return !script.cachedDataRejected;
}

describe('bin/labctl.js and the code cache', () => {
  test('without a cache, a command works and leaves a cache V8 accepts', () => {
    assert.equal(existsSync(cache), false);
    const r = labctl('validate');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /lab "article" is valid/);
    assert.ok(existsSync(cache), 'the cache was written');
    assert.ok(cacheAccepted(), 'V8 accepts the cache it wrote');
  });

  test('a damaged cache is rejected, the command still works, and the cache is rewritten', () => {
    writeFileSync(cache, Buffer.alloc(4096, 7));
    assert.equal(cacheAccepted(), false);
    const r = labctl('--version');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), '0.1.0');
    assert.ok(cacheAccepted(), 'rewritten');
  });

  test('where the cache cannot be read or written, commands work without one', () => {
    // A directory in its place: unreadable as a file and not replaceable by rename, even for root.
    rmSync(cache);
    mkdirSync(cache);
    const r = labctl('--version');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), '0.1.0');
    assert.deepEqual(readdirSync(join(dir, 'dist', 'bundle')).sort(), ['labctl.cjs', 'labctl.cjs.cache'], 'no temporary file left behind');
    rmSync(cache, { recursive: true });
  });

  test('a failing command keeps its exit code and message through the loader', () => {
    const r = labctl('validate', join(dir, 'no-such-lab.yaml'));
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /no-such-lab\.yaml/);
  });
});
