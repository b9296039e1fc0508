// What the build steps write inside the new root (src/image/rootfs.ts), on a plain
// directory standing in for the mounted subvolume.
import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createContext, loadRecipe } from '../../src/image/index.js';
import { cleanPackageCaches, inNewRoot, lockRootPassword, maskIn, safeTarget } from '../../src/image/rootfs.js';

describe('rootfs: writing inside the new root', () => {
  const dir = mkdtempSync(join(tmpdir(), 'labctl-rootfs-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const context = (name: string) => {
    const ctx = createContext({
      recipe: { ...loadRecipe('bookworm'), name },
      options: { cache: true, verify: true, verbose: false },
      dataDir: join(dir, name),
    });
    mkdirSync(ctx.paths.newRootfs, { recursive: true });
    return ctx;
  };

  it('safeTarget makes the parent directories, replaces a symlink at the target and refuses one out of the root', async () => {
    const root = join(dir, 'root-a');
    mkdirSync(root);
    assert.equal(await safeTarget(root, '/etc/deep/motd'), join(root, 'etc/deep/motd'));
    assert.ok(existsSync(join(root, 'etc/deep')));
    // A symlink as the file itself is removed (the file is written in its place, not through it).
    symlinkSync('/etc/passwd', join(root, 'etc/deep/motd'));
    await safeTarget(root, '/etc/deep/motd');
    assert.equal(existsSync(join(root, 'etc/deep/motd')), false);
    // A symlinked directory that leads out of the root is refused.
    symlinkSync(dir, join(root, 'out'));
    await assert.rejects(safeTarget(root, '/out/x'), /files: \/out\/x resolves outside the image/);
    // One that stays inside is followed.
    symlinkSync('etc', join(root, 'etc2'));
    assert.equal(await safeTarget(root, '/etc2/deep/x'), join(root, 'etc/deep/x'));
    await assert.rejects(safeTarget(root, '/etc/../x'), /bad path inside image/);
  });

  it("lockRootPassword leaves root's password field '*' and every other line as it was", async () => {
    const root = join(dir, 'root-b');
    mkdirSync(join(root, 'etc'), { recursive: true });
    const rest = 'daemon:*:19000:0:99999:7:::\nuser:$y$hash:19000:0:99999:7:::\n';
    writeFileSync(join(root, 'etc/shadow'), `root:$y$secret:19000:0:99999:7:::\n${rest}`);
    await lockRootPassword(root);
    assert.equal(readFileSync(join(root, 'etc/shadow'), 'utf8'), `root:*:19000:0:99999:7:::\n${rest}`);
    writeFileSync(join(root, 'etc/shadow'), `root:!:19000:0:99999:7:::\n${rest}`);
    await lockRootPassword(root);
    assert.equal(readFileSync(join(root, 'etc/shadow'), 'utf8'), `root:!:19000:0:99999:7:::\n${rest}`, 'already locked: unchanged');
  });

  it('maskIn links each name to /dev/null, replacing what was there, and says so', async () => {
    const units = join(dir, 'root-c/etc/systemd/system');
    const said: string[] = [];
    const io = { progress() {}, log: (line: string) => said.push(line) };
    await maskIn(units, [], 'masked', io);
    assert.equal(existsSync(units), false, 'nothing to mask: no directory made');
    mkdirSync(join(units, 'getty@.service.d'), { recursive: true });
    await maskIn(units, ['getty@.service.d', 'systemd-resolved.service'], 'masked', io);
    for (const name of ['getty@.service.d', 'systemd-resolved.service']) {
      assert.ok(lstatSync(join(units, name)).isSymbolicLink());
      assert.equal(readlinkSync(join(units, name)), '/dev/null');
    }
    assert.deepEqual(said, ['masked getty@.service.d', 'masked systemd-resolved.service']);
  });

  it("cleanPackageCaches empties apt's and debootstrap's caches and keeps apt's lock and partial directories", async () => {
    const ctx = context('clean');
    const root = ctx.paths.newRootfs;
    const files = [
      'var/cache/apt/archives/a.deb',
      'var/cache/apt/archives/lock',
      'var/cache/apt/archives/partial/b.deb',
      'var/cache/apt/pkgcache.bin',
      'var/cache/apt/keep.conf',
      'var/lib/apt/lists/deb.debian.org_InRelease',
      'var/lib/apt/lists/lock',
      'var/lib/apt/lists/auxfiles/x',
      'var/lib/apt/lists/partial/y',
      'debootstrap/debootstrap.log',
    ];
    for (const f of files) {
      mkdirSync(join(root, f, '..'), { recursive: true });
      writeFileSync(join(root, f), '');
    }
    await cleanPackageCaches(ctx);
    assert.deepEqual(readdirSync(join(root, 'var/cache/apt/archives')).sort(), ['lock', 'partial']);
    assert.deepEqual(readdirSync(join(root, 'var/cache/apt/archives/partial')), []);
    assert.deepEqual(readdirSync(join(root, 'var/cache/apt')).sort(), ['archives', 'keep.conf']);
    assert.deepEqual(readdirSync(join(root, 'var/lib/apt/lists')).sort(), ['auxfiles', 'lock', 'partial']);
    assert.deepEqual(readdirSync(join(root, 'var/lib/apt/lists/auxfiles')), ['x']);
    assert.deepEqual(readdirSync(join(root, 'var/lib/apt/lists/partial')), []);
    assert.equal(existsSync(join(root, 'debootstrap')), false);
  });

  it("inNewRoot runs a command in the new root with nspawn, the host's network and resolv.conf as asked", () => {
    const ctx = context('nspawn');
    const argv = inNewRoot(ctx, ['--bind=/x:/y'], ['apt-get', 'update']);
    assert.ok(argv[0] === 'systemd-nspawn' && argv.includes(`--directory=${ctx.paths.newRootfs}`) && argv.includes('--resolv-conf=bind-host'));
    assert.deepEqual(argv.slice(-4), ['--bind=/x:/y', '--', 'apt-get', 'update']);
    assert.ok(inNewRoot(ctx, [], ['true'], 'off').includes('--resolv-conf=off'));
  });
});
