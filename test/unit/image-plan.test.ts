// The pure build plan, debootstrap's command line and progress, per-distribution modules.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';
import {
  DebootstrapProgress,
  createContext,
  debootstrapCommand,
  loadRecipe,
  parseRecipe,
  planBuild,
  resolveDataDir,
  type BuildOptions,
} from '../../src/image/index.js';
import { debian, ubuntu } from '../../src/image/distro/index.js';
import { chooseBaseToExtend } from '../../src/image/plan.js';
import { baseHash, bootstrapHash, imageKeyringPath, withMirror } from '../../src/image/recipe.js';
import { configureApt } from '../../src/image/steps.js';

const opts = (o: Partial<BuildOptions> = {}): BuildOptions => ({ cache: true, verify: true, verbose: false, ...o });
const names = (steps: { name: string }[]) => steps.map((s) => s.name);

describe('planBuild', () => {
  const bookworm = loadRecipe('bookworm');

  it('cold build: bootstrap, clean, cache the base, then finish', () => {
    assert.deepEqual(names(planBuild({ recipe: bookworm, options: opts(), cacheHit: false })), [
      'check-host',
      'prepare',
      'create-image-file',
      'mkfs',
      'mount',
      'create-subvolume',
      'debootstrap',
      'configure-apt',
      'clean-packages',
      'save-base',
      'tune-boot',
      'reset-identity',
      'set-read-only',
      'verify',
      'write-metadata',
      'unmount',
      'swap',
    ]);
  });

  it('warm build: the cached base replaces debootstrap', () => {
    const steps = names(planBuild({ recipe: bookworm, options: opts(), cacheHit: true }));
    assert.ok(steps.includes('restore-base'));
    for (const s of ['debootstrap', 'create-subvolume', 'save-base']) assert.ok(!steps.includes(s), s);
    assert.equal(steps.at(-1), 'swap', 'the new image replaces the old one only at the very end');
  });

  it('files, commands and a password file add their steps in order', () => {
    const r = parseRecipe(
      `distribution: debian
suite: bookworm
mirror: http://deb.debian.org/debian
architecture: amd64
size: 2G
files: [{path: /etc/motd, content: hi}]
commands: ["echo hi"]
root-password-file: /root/pw
`,
      { name: 'x' },
    );
    const steps = names(planBuild({ recipe: r, options: opts(), cacheHit: true }));
    const order = ['restore-base', 'add-files', 'run-commands', 'clean-after-commands', 'set-root-password', 'tune-boot', 'reset-identity', 'set-read-only'];
    let last = -1;
    for (const s of order) {
      const i = steps.indexOf(s);
      assert.ok(i > last, `${s} out of order in ${steps.join(',')}`);
      last = i;
    }
  });

  it('every step has a unique name and a title', () => {
    const steps = planBuild({ recipe: bookworm, options: opts(), cacheHit: false });
    assert.equal(new Set(names(steps)).size, steps.length);
    for (const s of steps) assert.ok(s.title.length > 3 && typeof s.run === 'function');
  });
});

describe('extending a cached base with apt', () => {
  const bookworm = loadRecipe('bookworm');
  const plus = (...extra: string[]) => ({ ...bookworm, packages: [...bookworm.packages, ...extra] });

  it('the plan restores the cached base and installs what it lacks, then caches the result', () => {
    const steps = names(planBuild({ recipe: plus('less'), options: opts(), cacheHit: false, extend: true }));
    const i = steps.indexOf('restore-base');
    assert.deepEqual(steps.slice(i, i + 4), ['restore-base', 'install-packages', 'clean-packages', 'save-base']);
    for (const s of ['debootstrap', 'create-subvolume', 'configure-apt']) assert.ok(!steps.includes(s), s);
  });

  it('the bootstrap hash ignores the package list; the base hash does not; both see the rest', () => {
    assert.equal(bootstrapHash(plus('less'), true), bootstrapHash(bookworm, true));
    assert.notEqual(baseHash(plus('less'), true), baseHash(bookworm, true));
    assert.notEqual(bootstrapHash(withMirror(bookworm, 'http://mirror.example/debian'), true), bootstrapHash(bookworm, true));
    assert.notEqual(bootstrapHash(bookworm, false), bootstrapHash(bookworm, true), 'an unverified bootstrap is another base');
    assert.notEqual(bootstrapHash({ ...bookworm, variant: 'buildd' }, true), bootstrapHash(bookworm, true));
  });

  it('picks the base of the same bootstrap that lacks the fewest packages, and none with a package the recipe dropped', () => {
    const boot = 'b'.repeat(32);
    const want = ['systemd', 'dbus', 'less', 'file', 'jq'];
    const bases = [
      { stream: '/c/other.stream', bootstrapHash: 'x'.repeat(32), packages: ['systemd', 'dbus', 'less', 'file'] },
      { stream: '/c/two.stream', bootstrapHash: boot, packages: ['systemd', 'dbus'] },
      { stream: '/c/three.stream', bootstrapHash: boot, packages: ['systemd', 'dbus', 'less'] },
      { stream: '/c/dropped.stream', bootstrapHash: boot, packages: ['systemd', 'dbus', 'less', 'file', 'vim'] },
      { stream: '/c/old.stream', packages: ['systemd', 'dbus', 'less', 'file'] },
    ];
    assert.deepEqual(chooseBaseToExtend(bases, boot, want), { stream: '/c/three.stream', missing: ['file', 'jq'] });
    assert.equal(chooseBaseToExtend(bases, boot, ['systemd', 'dbus']), undefined, 'the exact base is a cache hit, not an extension');
    assert.equal(chooseBaseToExtend(bases, boot, ['systemd']), undefined);
    assert.equal(chooseBaseToExtend([], boot, want), undefined);
  });
});

describe('debootstrap command', () => {
  it('bookworm: minbase, includes, cache dir, keyring, explicit sid script', () => {
    const ctx = createContext({ recipe: loadRecipe('bookworm'), options: opts(), dataDir: '/data' });
    const cmd = debootstrapCommand(ctx, '/data/mnt/bookworm.new/rootfs');
    assert.equal(cmd[0], 'debootstrap');
    assert.ok(cmd.includes('--variant=minbase'));
    assert.ok(cmd.includes('--arch=amd64'));
    assert.ok(cmd.includes('--components=main'));
    assert.ok(cmd.includes('--keyring=/usr/share/keyrings/debian-archive-keyring.gpg'));
    assert.ok(cmd.includes('--cache-dir=/data/cache/debs/debian-bookworm-amd64'));
    const include = cmd.find((a) => a.startsWith('--include='))!;
    for (const p of ['systemd', 'systemd-sysv', 'dbus', 'conntrack', 'iputils-ping']) assert.ok(include.split(/[=,]/).includes(p));
    assert.deepEqual(cmd.slice(-4), ['bookworm', '/data/mnt/bookworm.new/rootfs', 'http://deb.debian.org/debian', '/usr/share/debootstrap/scripts/sid']);
  });

  it('noble on a Debian host: the gutsy script is passed explicitly', () => {
    const ctx = createContext({ recipe: loadRecipe('noble'), options: opts(), dataDir: '/data' });
    const cmd = debootstrapCommand(ctx, '/t');
    assert.deepEqual(cmd.slice(-4), ['noble', '/t', 'http://archive.ubuntu.com/ubuntu', '/usr/share/debootstrap/scripts/gutsy']);
    assert.ok(cmd.includes('--components=main,universe'));
    assert.ok(cmd.includes('--keyring=/usr/share/keyrings/ubuntu-archive-keyring.gpg'));
    assert.ok(cmd.includes('--merged-usr'));
  });

  it('--insecure-no-verify and --no-cache', () => {
    const ctx = createContext({ recipe: loadRecipe('jammy'), options: opts({ verify: false, cache: false }), dataDir: '/data' });
    const cmd = debootstrapCommand(ctx, '/t');
    assert.ok(cmd.includes('--no-check-gpg'));
    assert.ok(!cmd.some((a) => a.startsWith('--keyring')));
    assert.ok(!cmd.some((a) => a.startsWith('--cache-dir')));
  });

  it('a suite labctl does not list: the generic script, and for Ubuntu merged /usr like the newer suites', () => {
    const duke = { ...loadRecipe('bookworm'), suite: 'duke' };
    assert.deepEqual(debootstrapCommand(createContext({ recipe: duke, options: opts(), dataDir: '/d' }), '/t').slice(-4), [
      'duke',
      '/t',
      'http://deb.debian.org/debian',
      '/usr/share/debootstrap/scripts/sid',
    ]);
    const resolute = { ...loadRecipe('noble'), suite: 'resolute' };
    const cmd = debootstrapCommand(createContext({ recipe: resolute, options: opts(), dataDir: '/d' }), '/t');
    assert.deepEqual(cmd.slice(-4), ['resolute', '/t', 'http://archive.ubuntu.com/ubuntu', '/usr/share/debootstrap/scripts/gutsy']);
    assert.ok(cmd.includes('--merged-usr'));
  });

  it('--mirror changes the mirror argument', () => {
    const r = { ...loadRecipe('bookworm'), mirror: 'http://mirror.local/debian' };
    const cmd = debootstrapCommand(createContext({ recipe: r, options: opts(), dataDir: '/d' }), '/t');
    assert.equal(cmd.at(-2), 'http://mirror.local/debian');
  });
});

describe('distributions', () => {
  it('write sources.list with the recipe mirror and components', () => {
    assert.equal(
      debian.sourcesList(loadRecipe('bookworm')),
      'deb http://deb.debian.org/debian bookworm main\ndeb http://deb.debian.org/debian bookworm-updates main\n',
    );
    assert.match(ubuntu.sourcesList(loadRecipe('noble')), /^deb http:\/\/archive\.ubuntu\.com\/ubuntu noble main universe\n/);
  });

  it('name the keyring apt checks the archive with (signed-by) on every line', () => {
    const debianKeyring = '/usr/share/keyrings/debian-archive-keyring.gpg';
    assert.equal(
      debian.sourcesList(loadRecipe('bookworm'), debianKeyring),
      `deb [signed-by=${debianKeyring}] http://deb.debian.org/debian bookworm main\ndeb [signed-by=${debianKeyring}] http://deb.debian.org/debian bookworm-updates main\n`,
    );
    assert.equal(
      debian.sourcesList({ ...loadRecipe('bookworm'), suite: 'sid' }, debianKeyring),
      `deb [signed-by=${debianKeyring}] http://deb.debian.org/debian sid main\n`,
    );
    const mirror = { ...loadRecipe('noble'), mirror: 'http://mirror.lan/ubuntu', keyring: '/srv/keys/lan-mirror.gpg' };
    assert.equal(
      ubuntu.sourcesList(mirror, '/etc/apt/keyrings/labctl-lan-mirror.gpg'),
      'deb [signed-by=/etc/apt/keyrings/labctl-lan-mirror.gpg] http://mirror.lan/ubuntu noble main universe\n' +
        'deb [signed-by=/etc/apt/keyrings/labctl-lan-mirror.gpg] http://mirror.lan/ubuntu noble-updates main universe\n',
    );
  });

  it('put the distribution keyring at its own path in the image, any other in /etc/apt/keyrings', () => {
    assert.equal(imageKeyringPath(loadRecipe('bookworm')), '/usr/share/keyrings/debian-archive-keyring.gpg');
    assert.equal(imageKeyringPath(loadRecipe('noble')), '/usr/share/keyrings/ubuntu-archive-keyring.gpg');
    const bookworm = loadRecipe('bookworm');
    assert.equal(imageKeyringPath({ ...bookworm, keyring: '/srv/keys/mirror.gpg' }), '/etc/apt/keyrings/labctl-mirror.gpg');
    assert.equal(imageKeyringPath({ ...bookworm, keyring: '/srv/keys/mirror.asc' }), '/etc/apt/keyrings/labctl-mirror.asc', 'armored stays .asc');
    assert.equal(imageKeyringPath({ ...bookworm, keyring: '/srv/keys/my key' }), '/etc/apt/keyrings/labctl-my_key.gpg');
    // Another distribution's keyring at its standard path is not this image's package's file.
    assert.equal(
      imageKeyringPath({ ...bookworm, keyring: '/usr/share/keyrings/ubuntu-archive-keyring.gpg' }),
      '/etc/apt/keyrings/labctl-ubuntu-archive-keyring.gpg',
    );
  });

  it('name the package that provides a missing keyring (per host: test/unit/image-keyring.test.ts)', () => {
    const ubuntuHost = { id: 'ubuntu', idLike: ['debian'], versionId: '24.04' };
    assert.match(ubuntu.keyringProvider('/usr/share/keyrings/ubuntu-archive-keyring.gpg', ubuntuHost), /apt-get install ubuntu-keyring/);
    assert.match(debian.keyringProvider('/usr/share/keyrings/debian-archive-keyring.gpg', ubuntuHost), /debian-archive-keyring/);
  });
});

describe('configure-apt: the recipe keyring in the image, sources.list signed by it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'labctl-apt-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const io = { progress() {}, log() {} };
  /** A context whose new rootfs is a plain directory (the step only writes files). */
  const contextFor = (recipe: ReturnType<typeof loadRecipe>, name: string, o: Partial<BuildOptions> = {}) => {
    const ctx = createContext({ recipe: { ...recipe, name }, options: opts(o), dataDir: join(dir, name) });
    mkdirSync(join(ctx.paths.newRootfs, 'etc/apt'), { recursive: true });
    return ctx;
  };

  it("a private mirror's keyring is copied to /etc/apt/keyrings and named in every line", async () => {
    const keyring = join(dir, 'keys', 'mirror.gpg');
    mkdirSync(dirname(keyring), { recursive: true });
    writeFileSync(keyring, 'KEYS');
    const ctx = contextFor({ ...loadRecipe('bookworm'), mirror: 'http://mirror.lan/debian', keyring }, 'private');
    await configureApt.run(ctx, io);
    const copy = join(ctx.paths.newRootfs, 'etc/apt/keyrings/labctl-mirror.gpg');
    assert.equal(readFileSync(copy, 'utf8'), 'KEYS');
    assert.equal(statSync(copy).mode & 0o777, 0o644, 'apt (as _apt) must read it');
    assert.equal(
      readFileSync(join(ctx.paths.newRootfs, 'etc/apt/sources.list'), 'utf8'),
      'deb [signed-by=/etc/apt/keyrings/labctl-mirror.gpg] http://mirror.lan/debian bookworm main\n' +
        'deb [signed-by=/etc/apt/keyrings/labctl-mirror.gpg] http://mirror.lan/debian bookworm-updates main\n',
    );
    // Run again (install-packages does, on a cached base): the recipe's keyring as it is now.
    writeFileSync(keyring, 'ROTATED');
    await configureApt.run(ctx, io);
    assert.equal(readFileSync(copy, 'utf8'), 'ROTATED');
  });

  it("the distribution's keyring that its package put in the image is left as it is", async () => {
    const ctx = contextFor(loadRecipe('bookworm'), 'stock');
    const packaged = join(ctx.paths.newRootfs, 'usr/share/keyrings/debian-archive-keyring.gpg');
    mkdirSync(dirname(packaged), { recursive: true });
    writeFileSync(packaged, 'FROM THE PACKAGE');
    await configureApt.run(ctx, io);
    assert.equal(readFileSync(packaged, 'utf8'), 'FROM THE PACKAGE');
    assert.match(
      readFileSync(join(ctx.paths.newRootfs, 'etc/apt/sources.list'), 'utf8'),
      /^deb \[signed-by=\/usr\/share\/keyrings\/debian-archive-keyring\.gpg\] http:\/\/deb\.debian\.org\/debian bookworm main\n/,
    );
  });

  it('--insecure-no-verify without the keyring on the host: no signed-by (apt keeps its own trust)', async () => {
    const ctx = contextFor({ ...loadRecipe('bookworm'), keyring: join(dir, 'missing.gpg') }, 'insecure', { verify: false });
    await configureApt.run(ctx, io);
    assert.equal(readFileSync(join(ctx.paths.newRootfs, 'etc/apt/sources.list'), 'utf8'), debian.sourcesList(loadRecipe('bookworm')));
  });
});

describe('context and data dir', () => {
  it('lays out the data dir: image file, metadata, mounts, new build beside the old', () => {
    const ctx = createContext({ recipe: loadRecipe('bookworm'), options: opts(), dataDir: '/d' });
    assert.equal(ctx.paths.imageFile, '/d/images/bookworm.btrfs');
    assert.equal(ctx.paths.metaFile, '/d/images/bookworm.json');
    assert.equal(ctx.paths.rootfs, '/d/mnt/bookworm/rootfs');
    assert.equal(ctx.paths.newImageFile, '/d/images/bookworm.btrfs.new');
    assert.equal(ctx.paths.newRootfs, '/d/mnt/bookworm.new/rootfs');
    assert.match(ctx.baseStream, /^\/d\/cache\/base\/[0-9a-f]{32}\.stream$/);
    const shared = createContext({ recipe: loadRecipe('bookworm'), options: opts(), dataDir: '/d', cacheDir: '/c' });
    assert.equal(shared.debCache, '/c/debs/debian-bookworm-amd64');
  });

  it('--data-dir, then $LABCTL_DATA_DIR, then /var/lib/labctl', () => {
    const saved = process.env.LABCTL_DATA_DIR;
    try {
      delete process.env.LABCTL_DATA_DIR;
      assert.equal(resolveDataDir(), '/var/lib/labctl');
      process.env.LABCTL_DATA_DIR = '/from/env';
      assert.equal(resolveDataDir(), '/from/env');
      assert.equal(resolveDataDir('/explicit'), '/explicit');
    } finally {
      if (saved === undefined) delete process.env.LABCTL_DATA_DIR;
      else process.env.LABCTL_DATA_DIR = saved;
    }
  });
});

describe('debootstrap progress', () => {
  it('turns output lines into stages and counts', () => {
    const p = new DebootstrapProgress();
    const lines = [
      'I: Target architecture can be executed',
      'I: Retrieving InRelease ',
      'I: Checking Release signature',
      'I: Valid Release signature (key id 4D64FEC119C2029067D6E791F8D2585B8783D481)',
      'I: Retrieving Packages ',
      'I: Validating Packages ',
      'I: Resolving dependencies of required packages...',
      'I: Checking component main on http://deb.debian.org/debian...',
      'I: Retrieving adduser 3.134',
      'I: Validating adduser 3.134',
      'I: Validating apt 2.6.1',
      'I: Extracting adduser...',
      'I: Installing core packages...',
      'I: Unpacking required packages...',
      'I: Unpacking libc6:amd64...',
      'I: Configuring required packages...',
      'I: Configuring libc6:amd64...',
      'I: Unpacking the base system...',
      'I: Configuring the base system...',
      'I: Base system installed successfully.',
    ];
    const updates = lines.map((l) => p.feed(l));
    assert.equal(updates[0], undefined);
    assert.equal(updates[1]?.stage, 'index');
    assert.equal(updates[6]?.stage, 'resolve');
    assert.equal(updates[8]?.stage, 'download');
    assert.match(updates[10]!.text, /package 2: apt \(cached; 1 downloaded, 1 from cache\)/);
    assert.equal(updates[11]?.text, 'extracting 1/2 adduser');
    assert.equal(updates[14]?.text, 'unpacking 1/2 libc6:amd64');
    assert.equal(updates[16]?.text, 'configuring 1/2 libc6:amd64');
    assert.equal(updates.at(-1)?.stage, 'done');
    assert.equal(p.total, 2);
    assert.equal(p.downloaded, 1);
    assert.equal(p.feed('W: something'), undefined);
  });
});
