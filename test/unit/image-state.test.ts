// In-use detection, locks, metadata checks, mountinfo parsing, the CLI surface (no root needed).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Command } from 'commander';
import { registerImageCommands } from '../../src/cli/image.js';
import { imageInUseBy, imagePaths, imageState } from '../../src/image/index.js';
import { isImagePinned, pinImage, unpinImage } from '../../src/host/state.js';
import { LockBusyError, withLock } from '../../src/host/lock.js';
import { readFsid } from '../../src/image/meta.js';
import { parseMountinfo } from '../../src/image/mount.js';
import { BIN } from '../support/cli.js';

const tmp = (p: string) => mkdtempSync(join(tmpdir(), `labctl-${p}-`));

/**
 * The shipped entry point, bin/labctl.js, running the sources (its LABCTL_FROM_SOURCE=1): a
 * unit run has no `npm run build` before it, so the bundle may be older than the code under
 * test. The end-to-end tests run the bundle itself.
 */
function labctl(...args: string[]) {
  return spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, LABCTL_FROM_SOURCE: '1' }, timeout: 60_000 });
}

describe('imageInUseBy', () => {
  it("finds the machines the labs' state files record for this data dir's image, and nothing else", async () => {
    const runDir = tmp('run');
    const dataDir = tmp('data');
    const machine = (name: string, image: string, directory: string) => ({ name, netns: `ns-${name}`, image, directory, backend: 'direct' });
    const state = (lab: string, machines: object[]) =>
      JSON.stringify({ lab, source: 'x', planHash: 'h', status: 'up', createdAt: '', namespaces: [], nats: [], machines });
    writeFileSync(
      join(runDir, 'demo.json'),
      state('demo', [machine('r1', 'bookworm', join(dataDir, 'mnt/bookworm/rootfs')), machine('r2', 'noble', join(dataDir, 'mnt/noble/rootfs'))]),
    );
    // The same image name in another data dir is another image.
    writeFileSync(
      join(runDir, 'lab2.json'),
      state('lab2', [machine('y', 'bookworm', '/var/lib/labctl/mnt/bookworm/rootfs'), machine('z', 'bookworm', join(dataDir, 'mnt/bookworm/rootfs'))]),
    );
    writeFileSync(join(runDir, 'net-only.json'), state('net-only', []).replace(',"machines":[]', ''));
    writeFileSync(join(runDir, 'broken.json'), '{not json');
    writeFileSync(join(runDir, 'notes.txt'), 'ignored');
    const opts = { dataDir, runDir, processes: false };
    assert.deepEqual(await imageInUseBy('bookworm', opts), ['machine r1 (lab demo)', 'machine z (lab lab2)']);
    assert.deepEqual(await imageInUseBy('noble', opts), ['machine r2 (lab demo)']);
    assert.deepEqual(await imageInUseBy('trixie', opts), []);
    // A lab whose up has mounted the image, before any of its machines is recorded.
    mkdirSync(join(runDir, 'booting'));
    writeFileSync(join(runDir, 'booting', 'image.json'), JSON.stringify({ image: 'trixie', dataDir }));
    mkdirSync(join(runDir, 'elsewhere'));
    writeFileSync(join(runDir, 'elsewhere', 'image.json'), JSON.stringify({ image: 'trixie', dataDir: '/var/lib/labctl' }));
    assert.deepEqual(await imageInUseBy('trixie', opts), ['lab booting']);
    assert.deepEqual(await imageInUseBy('bookworm', { ...opts, runDir: join(runDir, 'missing') }), []);
  });
});

describe('images mounted by hand', () => {
  it('are pinned in the run dir until unpinned, per data dir and name', () => {
    const runDir = tmp('run');
    const saved = process.env.LABCTL_RUN_DIR;
    process.env.LABCTL_RUN_DIR = runDir;
    try {
      const use = { image: 'noble', dataDir: '/var/lib/labctl' };
      assert.equal(isImagePinned(use), false);
      pinImage(use);
      assert.equal(isImagePinned(use), true);
      assert.equal(isImagePinned({ ...use, dataDir: '/elsewhere' }), false, "another data dir's image of that name is another image");
      assert.equal(isImagePinned({ ...use, image: 'bookworm' }), false);
      unpinImage(use);
      assert.equal(isImagePinned(use), false);
      assert.deepEqual(readdirSync(runDir), [], 'nothing left in the run dir');
    } finally {
      if (saved === undefined) delete process.env.LABCTL_RUN_DIR;
      else process.env.LABCTL_RUN_DIR = saved;
    }
  });
});

describe('locks', () => {
  it('serialises holders in one process', async () => {
    const file = join(tmp('lock'), 'a.lock');
    const order: string[] = [];
    const slow = (tag: string) =>
      withLock(file, { waitMs: 5000 }, async () => {
        order.push(`${tag}+`);
        await new Promise((r) => setTimeout(r, 30));
        order.push(`${tag}-`);
      });
    await Promise.all([slow('a'), slow('b'), slow('c')]);
    assert.deepEqual(order, ['a+', 'a-', 'b+', 'b-', 'c+', 'c-']);
    assert.ok(!existsSync(file), 'released');
  });

  it('takes over a lock whose holder is dead, refuses a live one', async () => {
    const dir = tmp('lock');
    const stale = join(dir, 'stale.lock');
    writeFileSync(stale, '999999999\n');
    assert.equal(await withLock(stale, {}, async () => 'ok'), 'ok');
    const live = join(dir, 'live.lock');
    writeFileSync(live, '1\n'); // pid 1 is always alive
    await assert.rejects(
      withLock(live, { waitMs: 0, what: 'image x is busy' }, async () => 'no'),
      (e: Error) => e instanceof LockBusyError && /image x is busy \(process 1 holds /.test(e.message),
    );
  });
});

describe('metadata', () => {
  it('reads the btrfs fsid from the superblock and ties metadata to the file', () => {
    const dir = tmp('meta');
    const paths = imagePaths(dir, 'x');
    mkdirSync(paths.imagesDir, { recursive: true });
    assert.equal(imageState(paths).state, 'absent');
    const buf = Buffer.alloc(0x10000 + 0x1000);
    Buffer.from('00112233445566778899aabbccddeeff', 'hex').copy(buf, 0x10000 + 0x20);
    buf.write('_BHRfS_M', 0x10000 + 0x40, 'latin1');
    writeFileSync(paths.imageFile, buf);
    assert.equal(readFsid(paths.imageFile), '00112233-4455-6677-8899-aabbccddeeff');
    assert.equal(imageState(paths).state, 'broken', 'an image file without metadata is not an image');
    const meta = { format: 1, name: 'x', fsid: '00112233-4455-6677-8899-aabbccddeeff', recipeHash: 'h' };
    writeFileSync(paths.metaFile, JSON.stringify(meta));
    assert.equal(imageState(paths).state, 'ready');
    writeFileSync(paths.metaFile, JSON.stringify({ ...meta, fsid: 'ffffffff-4455-6677-8899-aabbccddeeff' }));
    const st = imageState(paths);
    assert.equal(st.state, 'broken');
    assert.match(st.reason!, /does not match its metadata/);
    writeFileSync(paths.imageFile, Buffer.alloc(100));
    assert.equal(readFsid(paths.imageFile), undefined);
  });
});

describe('mountinfo', () => {
  it('parses mount points with escapes', () => {
    const text =
      '36 35 98:0 / /var/lib/labctl/mnt/my\\040image rw,noatime shared:1 - btrfs /dev/loop3 rw,space_cache=v2\n' +
      '37 36 0:5 / /var/lib/labctl/mnt/my\\040image/rootfs/proc rw - proc proc rw\n';
    const m = parseMountinfo(text);
    assert.equal(m.length, 2);
    assert.deepEqual(m[0], {
      root: '/',
      mountPoint: '/var/lib/labctl/mnt/my image',
      fsType: 'btrfs',
      source: '/dev/loop3',
      shared: true,
      dev: '98:0',
      id: 36,
      parentId: 35,
    });
    assert.equal(m[1]!.fsType, 'proc');
    assert.equal(m[1]!.shared, false);
  });
});

describe('CLI', () => {
  it('registers image build|list|rm|mount|umount with help and examples', () => {
    const program = new Command('labctl');
    registerImageCommands(program);
    const image = program.commands.find((c) => c.name() === 'image')!;
    assert.deepEqual(image.commands.map((c) => c.name()).sort(), ['build', 'list', 'mount', 'rm', 'umount']);
    let help = '';
    const build = image.commands.find((c) => c.name() === 'build')!;
    build.configureOutput({ writeOut: (s) => (help += s) });
    build.outputHelp();
    assert.match(help, /--insecure-no-verify\s+INSECURE/);
    assert.match(help, /--no-cache/);
    assert.match(help, /--mirror <url>/);
    assert.match(help, /Examples:\n\s+labctl image build bookworm/);
  });

  it('bad input exits 2 with a clear message and creates nothing', () => {
    const dir = tmp('cli');
    const dataDir = join(dir, 'data');
    const bad = join(dir, 'bad.yaml');
    writeFileSync(
      bad,
      'distribution: debian\nsuite: bookworm\nmirror: http://deb.debian.org/debian\narchitecture: amd64\nsize: 2G\npackages: [systemd]\nflavour: spicy\n',
    );
    const r = labctl('image', 'build', bad, '--data-dir', dataDir);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`${bad.replace(/[.]/g, '\\.')}: invalid recipe:\\n\\s+flavour: unknown key`));
    assert.ok(!existsSync(dataDir), 'nothing was created');
    const unknown = labctl('image', 'build', 'nosuch', '--data-dir', dataDir);
    assert.equal(unknown.status, 2);
    assert.match(unknown.stderr, /no recipe named nosuch/);
    const opt = labctl('image', 'build', 'bookworm', '--frobnicate');
    assert.equal(opt.status, 2);
    assert.match(opt.stderr, /unknown option '--frobnicate'/);
    const mirror = labctl('image', 'build', 'bookworm', '--mirror', 'nope', '--data-dir', dataDir);
    assert.equal(mirror.status, 2);
    assert.match(mirror.stderr, /--mirror nope: not a URL/);
    const rm = labctl('image', 'rm', 'ghost', '--data-dir', dataDir);
    assert.equal(rm.status, 2);
    assert.match(rm.stderr, /no image named ghost/);
    assert.ok(!existsSync(dataDir));
  });

  it('list on an empty data dir', () => {
    const dataDir = tmp('cli');
    const r = labctl('image', 'list', '--json', '--data-dir', dataDir);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), []);
    assert.deepEqual(readdirSync(dataDir), []);
  });
});
