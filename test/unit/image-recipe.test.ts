// Recipe validation (no root needed).
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { unknownSuiteWarning } from '../../src/image/recipe.js';
import {
  REQUIRED_PACKAGES,
  baseHash,
  effectivePackages,
  listRecipeNames,
  loadRecipe,
  parseRecipe,
  parseSize,
  recipeHash,
  withMirror,
} from '../../src/image/index.js';
import { UsageError } from '../../src/util/errors.js';

const GOOD = `
distribution: debian
suite: bookworm
mirror: http://deb.debian.org/debian/
keyring: /usr/share/keyrings/debian-archive-keyring.gpg
architecture: amd64
variant: minbase
size: 2G
packages: [systemd, less]
`;

function problemsOf(text: string): string[] {
  try {
    parseRecipe(text, { file: 'images/t.yaml', name: 't' });
  } catch (e) {
    assert.ok(e instanceof UsageError, `expected a bad-input error (exit 2), got ${String(e)}`);
    assert.equal(e.exitCode, 2);
    assert.match(e.message, /^images\/t\.yaml: invalid recipe:/, 'the message names the file');
    return e.issues.map((i) => i.message);
  }
  assert.fail('recipe was accepted');
}

describe('shipped recipes', () => {
  it('ships noble, jammy, bookworm and trixie', () => {
    const names = listRecipeNames();
    for (const n of ['noble', 'jammy', 'bookworm', 'trixie']) assert.ok(names.includes(n), `images/${n}.yaml missing`);
  });

  for (const name of ['noble', 'jammy', 'bookworm', 'trixie']) {
    it(`${name} is valid and lists what the lab needs`, () => {
      const r = loadRecipe(name);
      assert.equal(r.name, name);
      assert.equal(r.suite, name);
      assert.equal(r.distribution, ['noble', 'jammy'].includes(name) ? 'ubuntu' : 'debian');
      for (const p of REQUIRED_PACKAGES) assert.ok(r.packages.includes(p), `${name} lacks ${p}`);
      assert.equal(r.rootPasswordFile, undefined, 'no root password by default');
      assert.ok(r.sizeBytes >= 1024 ** 3);
      assert.ok(r.keyring.startsWith('/usr/share/keyrings/'));
    });
  }

  it('ubuntu recipes use the ubuntu keyring and main+universe', () => {
    for (const name of ['noble', 'jammy']) {
      const r = loadRecipe(name);
      assert.equal(r.keyring, '/usr/share/keyrings/ubuntu-archive-keyring.gpg');
      assert.deepEqual(r.components, ['main', 'universe']);
    }
  });
});

describe('parseRecipe', () => {
  it('accepts a good recipe and fills defaults', () => {
    const r = parseRecipe(GOOD, { file: 'images/x.yaml', name: 'x' });
    assert.equal(r.name, 'x');
    assert.equal(r.mirror, 'http://deb.debian.org/debian', 'trailing slash dropped');
    assert.deepEqual(r.components, ['main']);
    assert.equal(r.sizeBytes, 2 * 1024 ** 3);
    assert.deepEqual(r.files, []);
    assert.deepEqual(r.commands, []);
  });

  it('defaults the keyring per distribution', () => {
    const r = parseRecipe(GOOD.replace(/keyring:.*\n/, ''), { name: 'x' });
    assert.equal(r.keyring, '/usr/share/keyrings/debian-archive-keyring.gpg');
  });

  it('rejects unknown keys, naming them', () => {
    const p = problemsOf(`${GOOD}\nfoo: 1\n`);
    assert.equal(p.length, 1);
    assert.match(p[0]!, /^foo: unknown key \(allowed: .*distribution.*\)/);
  });

  it('rejects unknown nested keys with their path', () => {
    const p = problemsOf(`${GOOD}files:\n  - path: /etc/motd\n    content: hi\n    owner: root\n`);
    assert.deepEqual(p, ['files[0].owner: unknown key']);
  });

  it('refuses a literal root password and points to root-password-file', () => {
    const p = problemsOf(`${GOOD}root-password: hunter2\n`);
    assert.match(p[0]!, /root-password: a literal password is not allowed.*root-password-file/);
  });

  it('accepts root-password-file, resolved beside the recipe', () => {
    const r = parseRecipe(`${GOOD}root-password-file: secrets/root.txt\n`, { file: '/srv/recipes/x.yaml', name: 'x' });
    assert.equal(r.rootPasswordFile, '/srv/recipes/secrets/root.txt');
  });

  it('names missing required fields', () => {
    const p = problemsOf('distribution: debian\nsize: 2G\n');
    assert.ok(p.includes('suite: is required'));
    assert.ok(p.includes('mirror: is required'));
    assert.ok(p.includes('architecture: is required'));
  });

  it('gives field path and reason for bad values', () => {
    const p = problemsOf(
      GOOD.replace('distribution: debian', 'distribution: arch')
        .replace('size: 2G', 'size: 10M')
        .replace('packages: [systemd, less]', 'packages: [systemd, Less, 3]')
        .replace('variant: minbase', 'variant: fat')
        .replace('mirror: http://deb.debian.org/debian/', 'mirror: ftp://example.org/debian'),
    );
    assert.ok(p.includes('distribution: must be one of debian, ubuntu'), p.join('\n'));
    assert.ok(p.includes('variant: must be one of minbase, buildd, default'), p.join('\n'));
    assert.ok(p.some((x) => /^size: must be at least 512M/.test(x)));
    assert.ok(p.some((x) => /^packages\[1\]: must be a Debian package name/.test(x)));
    assert.ok(p.some((x) => /^packages\[2\]: expected string/.test(x)));
    assert.ok(p.some((x) => /^mirror: must be an http/.test(x)));
  });

  it('rejects a suite of the other distribution', () => {
    const p = problemsOf(GOOD.replace('suite: bookworm', 'suite: noble'));
    assert.deepEqual(p, ['suite: noble is a suite of Ubuntu, not of Debian (distribution: ubuntu?)']);
  });

  it('accepts a suite labctl does not know (a newer release): the build warns and uses the generic script', () => {
    const r = parseRecipe(GOOD.replace('suite: bookworm', 'suite: duke'), { file: '/srv/duke.yaml', name: 'duke' });
    assert.equal(r.suite, 'duke');
    assert.equal(
      unknownSuiteWarning(r),
      "/srv/duke.yaml: suite duke is not among the Debian suites labctl knows (buster, bullseye, bookworm, trixie, forky, sid, oldoldstable, oldstable, stable, testing, unstable); building it as a newer Debian release, with debootstrap's script /usr/share/debootstrap/scripts/sid",
    );
    const ubuntu = parseRecipe(GOOD.replace('distribution: debian', 'distribution: ubuntu').replace('suite: bookworm', 'suite: resolute'), { name: 'u' });
    assert.match(
      unknownSuiteWarning(ubuntu)!,
      /^recipe u: suite resolute is not among the Ubuntu suites labctl knows \(focal, .*\); building it as a newer Ubuntu release, with debootstrap's script \/usr\/share\/debootstrap\/scripts\/gutsy$/,
    );
    for (const name of ['noble', 'jammy', 'bookworm', 'trixie']) assert.equal(unknownSuiteWarning(loadRecipe(name)), undefined, name);
  });

  it('rejects duplicate packages and files', () => {
    const p = problemsOf(`${GOOD.replace('[systemd, less]', '[systemd, less, less]')}files:\n  - {path: /etc/a, content: x}\n  - {path: /etc/a, content: y}\n`);
    assert.ok(p.includes('packages[2]: less is listed twice'));
    assert.ok(p.includes('files[1].path: /etc/a is listed twice'));
  });

  it('checks mask entries: unit names only, each once', () => {
    const p = problemsOf(`${GOOD}mask: [apt-daily.timer, ../../etc/passwd, getty, apt-daily.timer]\n`);
    assert.ok(
      p.some((x) => /^mask\[1\]: must be a systemd unit name/.test(x)),
      p.join('\n'),
    );
    assert.ok(
      p.some((x) => /^mask\[2\]: must be a systemd unit name/.test(x)),
      p.join('\n'),
    );
    const dup = problemsOf(`${GOOD}mask: [apt-daily.timer, apt-daily.timer]\n`);
    assert.deepEqual(dup, ['mask[1]: apt-daily.timer is listed twice']);
    const gens = problemsOf(`${GOOD}mask-generators: [systemd-fstab-generator, ../systemd-fstab-generator, fstab, systemd-fstab-generator]\n`);
    assert.deepEqual(gens, [
      'mask-generators[1]: must be a generator name like systemd-fstab-generator',
      'mask-generators[2]: must be a generator name like systemd-fstab-generator',
    ]);
    assert.deepEqual(problemsOf(`${GOOD}mask-generators: [systemd-fstab-generator, systemd-fstab-generator]\n`), [
      'mask-generators[1]: systemd-fstab-generator is listed twice',
    ]);
  });

  it('a mask changes the recipe hash but not the base (no new debootstrap)', () => {
    const a = parseRecipe(GOOD, { name: 'x' });
    const b = parseRecipe(`${GOOD}mask: [apt-daily.timer]\n`, { name: 'x' });
    assert.deepEqual(b.mask, ['apt-daily.timer']);
    assert.equal(baseHash(a, true), baseHash(b, true));
    assert.notEqual(recipeHash(a, true), recipeHash(b, true));
  });

  it('checks files entries', () => {
    const p = problemsOf(`${GOOD}files:\n  - path: etc/x\n  - path: /etc/y\n    content: a\n    source: b\n  - path: /etc/z\n    content: a\n    mode: rwx\n`);
    assert.ok(p.some((x) => /^files\[0\]\.path: must be an absolute path/.test(x)));
    assert.ok(p.some((x) => /^files\[0\]: give exactly one of content/.test(x)));
    assert.ok(p.some((x) => /^files\[1\]: give exactly one of content/.test(x)));
    assert.ok(p.some((x) => /^files\[2\]\.mode: must be an octal mode/.test(x)));
  });

  it('normalises commands: strings run with /bin/sh -c, lists as they are', () => {
    const r = parseRecipe(`${GOOD}commands:\n  - echo hi > /etc/x\n  - [systemctl, enable, foo]\n`, { name: 'x' });
    assert.deepEqual(r.commands, [
      ['/bin/sh', '-c', 'echo hi > /etc/x'],
      ['systemctl', 'enable', 'foo'],
    ]);
    const p = problemsOf(`${GOOD}commands:\n  - []\n  - 3\n`);
    assert.ok(p.some((x) => x.startsWith('commands[0]:')));
    assert.ok(p.some((x) => x.startsWith('commands[1]: must be a shell command string')));
  });

  it('reports YAML syntax errors with a position', () => {
    const p = problemsOf('distribution: debian\nsuite: [\n');
    assert.match(p[0]!, /^line \d+ column \d+: YAML: /);
    const dup = problemsOf(`${GOOD}suite: trixie\n`);
    assert.match(dup[0]!, /YAML: Map keys must be unique/);
  });

  it('rejects a document that is not a mapping', () => {
    assert.match(problemsOf('- a\n- b\n')[0]!, /^\(top level\): must be a mapping/);
  });

  it('rejects a bad image name', () => {
    const p = problemsOf(`name: Bad/Name\n${GOOD}`);
    assert.match(p[0]!, /^name: invalid image name/);
  });
});

describe('loadRecipe', () => {
  it('loads a recipe file and names the image after it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'labctl-recipe-'));
    const file = join(dir, 'router.yaml');
    writeFileSync(file, GOOD);
    const r = loadRecipe(file);
    assert.equal(r.name, 'router');
    assert.equal(r.sourceFile, file);
    assert.equal(loadRecipe(file, { name: 'other' }).name, 'other');
  });

  it('names the file in errors', () => {
    const dir = mkdtempSync(join(tmpdir(), 'labctl-recipe-'));
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, `${GOOD}colour: blue\n`);
    assert.throws(
      () => loadRecipe(file),
      (e: Error) => e instanceof UsageError && e.message.includes(`${file}: invalid recipe`) && e.message.includes('colour: unknown key'),
    );
  });

  it('rejects an unknown name listing the known ones', () => {
    assert.throws(
      () => loadRecipe('nosuch'),
      (e: Error) => e instanceof UsageError && /no recipe named nosuch.*bookworm/.test(e.message),
    );
    assert.throws(() => loadRecipe('./missing.yaml'), /does not exist/);
  });
});

describe('sizes, mirrors and hashes', () => {
  it('parses sizes', () => {
    assert.equal(parseSize('2G'), 2 * 1024 ** 3);
    assert.equal(parseSize('1536M'), 1536 * 1024 ** 2);
    assert.equal(parseSize('2GiB'), 2 * 1024 ** 3);
    assert.equal(parseSize('1.5G'), 1.5 * 1024 ** 3);
    assert.equal(parseSize(4096), 4096);
    assert.equal(parseSize('lots'), undefined);
    assert.equal(parseSize(-1), undefined);
  });

  it('--mirror replaces the mirror and is validated', () => {
    const r = parseRecipe(GOOD, { name: 'x' });
    assert.equal(withMirror(r, 'http://mirror.local/debian/').mirror, 'http://mirror.local/debian');
    assert.equal(withMirror(r, undefined), r);
    assert.throws(
      () => withMirror(r, 'not a url'),
      (e: Error) => e instanceof UsageError && /--mirror/.test(e.message),
    );
  });

  it('always includes the lab packages', () => {
    const r = parseRecipe(GOOD, { name: 'x' });
    const pkgs = effectivePackages(r);
    for (const p of REQUIRED_PACKAGES) assert.ok(pkgs.includes(p));
    assert.equal(pkgs[0], 'systemd');
    assert.ok(pkgs.includes('less'));
    assert.equal(new Set(pkgs).size, pkgs.length);
  });

  it('keys the base cache on what debootstrap gets, the image on everything', () => {
    const r = parseRecipe(GOOD, { name: 'x' });
    const withFile = parseRecipe(`${GOOD}files:\n  - {path: /etc/motd, content: hello}\n`, { name: 'x' });
    const morePkgs = parseRecipe(GOOD.replace('less]', 'less, jq]'), { name: 'x' });
    const reordered = parseRecipe(GOOD.replace('[systemd, less]', '[less, systemd]'), { name: 'x' });
    assert.equal(baseHash(r, true), baseHash(withFile, true), 'files do not change the base');
    assert.notEqual(recipeHash(r, true), recipeHash(withFile, true), 'files change the image');
    assert.notEqual(baseHash(r, true), baseHash(morePkgs, true), 'packages change the base');
    assert.equal(baseHash(r, true), baseHash(reordered, true), 'package order does not matter');
    assert.notEqual(baseHash(r, true), baseHash(withMirror(r, 'http://other/debian'), true), 'mirror changes the base');
    assert.notEqual(baseHash(r, true), baseHash(r, false), 'an unverified base is never reused for a verified build');
    assert.equal(baseHash(r, true), baseHash({ ...r, name: 'renamed' }, true), 'the image name does not matter');
    assert.match(recipeHash(r, true), /^[0-9a-f]{32}$/);
  });
});
