// The npm package: `npm pack` of a copy of this tree without a build (no dist/, so the built
// output can only come from prepack) gives a tarball with the bundle and what it reads
// beside it, and nothing of the sources or tests; `npm install -g --prefix DIR` of that
// tarball (dependencies from the registry, no devDependencies) gives a `labctl` that
// runs: --version, --help, and validate, image --help and completion, which find the
// built-in labs and recipes relative to the installed package. The copy also shows that
// the compiled modules (dist/cli) and the sources (through tsx) find them from their
// depth in the tree. Needs no root, only the npm registry for the dependencies.
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ROOT } from '../support/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'labctl-npm-'));
const copy = join(dir, 'labctl');
const prefix = join(dir, 'prefix');
const installed = join(prefix, 'lib', 'node_modules', 'labctl');
const bin = join(prefix, 'bin', 'labctl');
const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
let tarball = '';
let packed: string[] = [];
after(() => rmSync(dir, { recursive: true, force: true }));

function ok(r: SpawnSyncReturns<string>, what: string): string {
  assert.equal(r.status, 0, `${what} exited ${r.status}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

/** Commands as a user runs them, without LABCTL_FROM_SOURCE, from a directory of their own. */
const env = () => {
  const e = { ...process.env };
  delete e.LABCTL_FROM_SOURCE;
  return e;
};
const run = (file: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) =>
  spawnSync(file, args, { encoding: 'utf8', cwd: options.cwd ?? dir, env: options.env ?? env(), timeout: 300_000 });

before(() => {
  // This tree as a developer has it, less what a build or an install makes.
  const skipped = new Set(['node_modules', 'dist', '.git'].map((d) => join(ROOT, d)));
  cpSync(ROOT, copy, { recursive: true, filter: (src) => !skipped.has(src.replace(/\/$/, '')) });
  // The devDependencies the build needs (tsc, esbuild, tsx) are the checkout's.
  symlinkSync(join(ROOT, 'node_modules'), join(copy, 'node_modules'));
  const out = ok(run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: copy }), 'npm pack');
  const [info] = JSON.parse(out) as { filename: string; files: { path: string }[] }[];
  tarball = join(dir, info!.filename);
  packed = info!.files.map((f) => f.path);
  ok(run('npm', ['install', '--global', '--prefix', prefix, '--no-audit', '--no-fund', tarball]), 'npm install -g');
});

describe('npm pack', () => {
  it('holds the bundle, its loader, the labs, recipes, unit files and schemas, all built by prepack', () => {
    for (const f of [
      'package.json',
      'README.md',
      'bin/labctl.js',
      'bin/package.json',
      'dist/bundle/labctl.cjs',
      'dist/bundle/agent.cjs',
      'machines/article.yaml',
      'images/bookworm.yaml',
      'systemd/labctl@.service',
      'systemd/labctl-machine.unit-properties',
      'systemd/labctl-stun-server.service',
      'schema/lab.schema.json',
      'schema/recipe.schema.json',
    ]) {
      assert.ok(packed.includes(f), `${f} is in ${tarball}`);
    }
    assert.ok(existsSync(join(copy, 'dist', 'bundle', 'labctl.cjs')), 'the copy had no dist/ before: prepack built it');
  });

  it('holds no sources, tests, compiled modules or source maps', () => {
    const strays = packed.filter((f) => /^(src|test|bench|scripts|node_modules)\/|^dist\/(?!bundle\/)|\.map$/.test(f));
    assert.deepEqual(strays, []);
  });
});

describe('npm install -g of the tarball', () => {
  it('installs the dependencies and none of the devDependencies (tsx, typescript, esbuild)', () => {
    const modules = readdirSync(join(installed, 'node_modules'));
    assert.ok(modules.includes('dbus-next'), 'the bundle loads dbus-next');
    for (const dev of ['tsx', 'typescript', 'esbuild', '@types', '@biomejs']) assert.ok(!modules.includes(dev), `${dev} is not installed`);
    assert.ok(!existsSync(join(installed, 'src')), 'no sources to fall back on');
  });

  it('labctl --version and --help', () => {
    assert.equal(ok(run(bin, ['--version']), '--version').trim(), version);
    const help = ok(run(bin, ['--help']), '--help');
    assert.match(help, /^Usage: labctl /m);
    for (const command of ['up', 'net', 'validate', 'image', 'doctor', 'completion']) assert.match(help, new RegExp(`^  ${command}\\b`, 'm'), command);
  });

  it('validate finds the default lab in the installed package', () => {
    const out = ok(run(bin, ['validate']), 'validate');
    assert.match(out, new RegExp(`^${join(installed, 'machines', 'article.yaml')}: lab "article" is valid$`, 'm'));
    assert.match(out, /^ {2}nat c1-nat \(ns-c1-nat\): restricted-cone/m);
  });

  it('the shipped recipes and built-in labs are found relative to the installed package', () => {
    assert.match(ok(run(bin, ['image', '--help']), 'image --help'), /^Shipped recipes: bookworm, .*trixie/m);
    assert.match(ok(run(bin, ['__complete', 'recipes']), '__complete recipes'), /^bookworm$/m);
    assert.match(ok(run(bin, ['__complete', 'labs']), '__complete labs'), /^article$/m);
    assert.match(ok(run(bin, ['completion', 'bash']), 'completion bash'), /^complete -F _labctl labctl$/m);
  });
});

describe('built-in labs from every way labctl runs', () => {
  const article = join(copy, 'machines', 'article.yaml');
  it('the compiled modules (dist/cli/main.js) and the sources through tsx (LABCTL_FROM_SOURCE=1)', () => {
    const compiled = ok(run(process.execPath, [join(copy, 'dist', 'cli', 'main.js'), 'validate']), 'node dist/cli/main.js validate');
    assert.match(compiled, new RegExp(`^${article}: lab "article" is valid$`, 'm'));
    const sources = ok(run(process.execPath, [join(copy, 'bin', 'labctl.js'), 'validate'], { env: { ...env(), LABCTL_FROM_SOURCE: '1' } }), 'sources validate');
    assert.match(sources, new RegExp(`^${article}: lab "article" is valid$`, 'm'));
  });
});
