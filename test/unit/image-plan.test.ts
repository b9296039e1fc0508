// The pure build plan, debootstrap's command line and progress, per-distribution modules.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DebootstrapProgress, createContext, debootstrapCommand, loadRecipe, parseRecipe, planBuild, resolveDataDir, type BuildOptions } from '../../src/image/index.js';
import { debian, ubuntu } from '../../src/image/distro/index.js';
import { chooseBaseToExtend } from '../../src/image/plan.js';
import { baseHash, bootstrapHash, withMirror } from '../../src/image/recipe.js';

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

  it('--mirror changes the mirror argument', () => {
    const r = { ...loadRecipe('bookworm'), mirror: 'http://mirror.local/debian' };
    const cmd = debootstrapCommand(createContext({ recipe: r, options: opts(), dataDir: '/d' }), '/t');
    assert.equal(cmd.at(-2), 'http://mirror.local/debian');
  });
});

describe('distributions', () => {
  it('write sources.list with the recipe mirror and components', () => {
    assert.equal(debian.sourcesList(loadRecipe('bookworm')), 'deb http://deb.debian.org/debian bookworm main\ndeb http://deb.debian.org/debian bookworm-updates main\n');
    assert.match(ubuntu.sourcesList(loadRecipe('noble')), /^deb http:\/\/archive\.ubuntu\.com\/ubuntu noble main universe\n/);
  });

  it('name the package that provides a missing keyring (per host: test/unit/image-keyring.test.ts)', () => {
    const ubuntuHost = { id: 'ubuntu', idLike: ['debian'], versionId: '24.04' };
    assert.match(ubuntu.keyringProvider('/usr/share/keyrings/ubuntu-archive-keyring.gpg', ubuntuHost), /apt-get install ubuntu-keyring/);
    assert.match(debian.keyringProvider('/usr/share/keyrings/debian-archive-keyring.gpg', ubuntuHost), /debian-archive-keyring/);
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
