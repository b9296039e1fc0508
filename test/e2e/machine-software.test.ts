// The user's software in the machines, with the direct backend on this host (README "Your
// software in the machines"): binds, files, env, services, commands and per-machine images
// (test/support/software-lab.ts), `labctl logs`, a service that does not start and a command
// that fails (up fails and rolls back), and bad input refused before anything is created.
// The systemd backend's case is in machines-systemd.test.ts.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { mountAt } from '../../src/image/mount.js';
import { imagePaths } from '../../src/image/paths.js';
import { nspawnPidsOf } from '../../src/machine/proc.js';
import { ALT_IMAGE, ensureAltImage } from '../support/alt-image.js';
import { BIN, isRoot, labctl, labctlOk, netnsList } from '../support/cli.js';
import {
  checkSoftwareLab,
  SOFTWARE_LAB_DIR,
  SOFTWARE_MACHINES,
  writeFailingCommandLab,
  writeFailingServiceLab,
  writeSoftwareLab,
} from '../support/software-lab.js';
import { getTestImage, TEST_DATA_DIR } from '../support/test-image.js';

const UP = ['--backend', 'direct', '--data-dir', TEST_DATA_DIR];
const FAIL_LAB = join(SOFTWARE_LAB_DIR, 'fail', 'lab.yaml');

/** Nothing of lab `name` (machines named `machines`, namespaces with `prefix`) is left on the host. */
function assertNothingLeft(name: string, machines: string[], prefix: string): void {
  assert.deepEqual(
    netnsList().filter((n) => n.startsWith(`ns-${prefix}`)),
    [],
    'no namespace left',
  );
  assert.deepEqual(machines.flatMap(nspawnPidsOf), [], 'no machine left');
  assert.ok(!existsSync(`/run/labctl/${name}.json`), 'no state file left');
  assert.ok(!existsSync(`/run/labctl/${name}`), 'no run dir left');
}

describe('software in the machines (direct backend)', { skip: !isRoot && 'needs root: boots machines' }, () => {
  before(
    async () => {
      await getTestImage();
      await ensureAltImage();
    },
    { timeout: 30 * 60_000 },
  );
  after(async () => {
    await labctl(['down', 'software']);
    await labctl(['down', 'swfail']);
  });

  it('binds, files, env, services, commands and per-machine images; logs; down unmounts the image no lab uses', { timeout: 10 * 60_000 }, async (t) => {
    const lab = writeSoftwareLab();
    const alt = imagePaths(TEST_DATA_DIR, ALT_IMAGE).mountDir;
    try {
      const started = Date.now();
      await labctlOk(['up', lab, ...UP]);
      t.diagnostic(`up took ${((Date.now() - started) / 1000).toFixed(1)} s`);
      assert.ok(mountAt(alt), `${ALT_IMAGE} is mounted while the lab runs`);
      const status = await labctlOk(['status', 'software', '--json']);
      await checkSoftwareLab((machine, argv) => labctl(['exec', machine, '--', ...argv]), status.stdout);

      // labctl logs: one service's journal, the last lines only, the whole machine's, and --follow until Ctrl-C.
      const logs = await labctlOk(['logs', 'sw-server', 'args']);
      assert.match(logs.stdout, /args-started/);
      assert.doesNotMatch(logs.stdout, /socat/, 'only that service');
      assert.equal((await labctlOk(['logs', 'sw-server', 'args', '-n', '1'])).stdout.trim().split('\n').length, 1);
      assert.match((await labctlOk(['logs', 'sw-server'])).stdout, /Started echo\.service/);
      const follow = spawn(process.execPath, [BIN, 'logs', 'sw-server', 'args', '--follow'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let followed = '';
      follow.stdout.on('data', (d) => (followed += String(d)));
      const exited = new Promise<number | null>((resolve) => follow.on('exit', (code) => resolve(code)));
      const deadline = Date.now() + 20_000;
      while (!followed.includes('args-started') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.match(followed, /args-started/);
      follow.kill('SIGINT');
      const timeout = new Promise<string>((resolve) => setTimeout(() => resolve('still running'), 10_000).unref());
      assert.notEqual(await Promise.race([exited, timeout]), 'still running', 'labctl logs --follow ends on SIGINT');
      const missing = await labctl(['logs', 'sw-nothing']);
      assert.equal(missing.exitCode, 2);
      assert.match(missing.stderr, /no running machine "sw-nothing"/);
    } finally {
      await labctl(['down', 'software']);
    }
    assertNothingLeft('software', SOFTWARE_MACHINES, 'sw-');
    assert.equal(mountAt(alt), undefined, `${ALT_IMAGE}: down unmounts an image no lab uses`);
    assert.ok(mountAt(imagePaths(TEST_DATA_DIR, 'bookworm').mountDir), 'bookworm stays: mounted by hand (labctl image mount), pinned');
  });

  it('a service that does not start fails up, which rolls back, with its journal lines', { timeout: 5 * 60_000 }, async () => {
    const r = await labctl(['up', writeFailingServiceLab(FAIL_LAB), ...UP]);
    assert.equal(r.exitCode, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /machine swf-box: service bad did not start: it (failed|keeps exiting)/);
    assert.match(r.stderr, /journalctl -u bad\.service in the machine:\n[\s\S]*bad-service-says-why/);
    assert.match(r.stderr, /rolled back: nothing of lab "swfail" is left/);
    assertNothingLeft('swfail', ['swf-box'], 'swf-');
  });

  it('a command that fails fails up with its output; the commands after it do not run', { timeout: 5 * 60_000 }, async () => {
    const r = await labctl(['up', writeFailingCommandLab(FAIL_LAB), ...UP]);
    assert.equal(r.exitCode, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /machine swf-box: commands\[1\] \(sh -c 'echo "command-output-before-failing"; exit 4'\) failed: exited 4/);
    assert.match(r.stderr, /its output:\ncommand-output-before-failing/);
    assert.match(r.stderr, /rolled back/);
    assertNothingLeft('swfail', ['swf-box'], 'swf-');
  });

  it('bad input names the field and creates nothing: a missing bind source, content with from, a duplicate service, a bad unit name', async () => {
    const dir = join(SOFTWARE_LAB_DIR, 'bad');
    mkdirSync(dir, { recursive: true });
    const cases: [string, string, RegExp][] = [
      ['binds: [{ from: ./not-built-yet, to: /opt/app }]', 'nodes[0].binds[0].from', /not-built-yet does not exist/],
      ['files: [{ path: /etc/a, content: x, from: ./a }]', 'nodes[0].files[0]', /give exactly one of content/],
      ['services: [{ name: web, command: [a] }, { name: web, command: [b] }]', 'nodes[0].services[1].name', /duplicate service name "web"/],
      ['services: [{ name: "web server", command: [a] }]', 'nodes[0].services[0].name', /is not a valid systemd unit name/],
    ];
    for (const [yaml, field, reason] of cases) {
      const file = join(dir, 'lab.yaml');
      writeFileSync(file, `name: swbad\nprefix: swb-\nnodes:\n  - name: box\n    ${yaml}\n`);
      const r = await labctl(['up', file, ...UP]);
      assert.equal(r.exitCode, 2, `${yaml}: ${r.stderr}`);
      assert.ok(r.stderr.includes(`${file}: ${field}: `), `${field} named in: ${r.stderr}`);
      assert.match(r.stderr, reason);
      assertNothingLeft('swbad', ['swb-box'], 'swb-');
    }
    const validate = await labctl(['validate', join(dir, 'lab.yaml')]);
    assert.equal(validate.exitCode, 2, 'validate refuses what up refuses');
    writeFileSync(join(dir, 'lab.yaml'), 'name: swbad\nprefix: swb-\nnodes:\n  - name: box\n    binds: [{ from: ./not-built-yet, to: /opt/app }]\n');
    const missing = await labctl(['validate', join(dir, 'lab.yaml')]);
    assert.equal(missing.exitCode, 2);
    assert.match(missing.stderr, /nodes\[0\]\.binds\[0\]\.from: .*not-built-yet does not exist/);
    rmSync(dir, { recursive: true, force: true });
  });
});
