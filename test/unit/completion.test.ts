// Shell completion: the command specs walked from a commander program; the bash script
// loaded into a real bash, its completion function called as bash calls it (COMP_WORDS,
// COMP_CWORD) and COMPREPLY read back; the same cases through fish's own `complete -C`
// and through the zsh function with zsh's completion builtins stood in for; and the
// hidden `labctl __complete KIND` on a run dir and a data dir made here.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { Argument, Command, Option } from 'commander';
import { completionSpecs, completionValues, firstSentence } from '../../src/cli/completion.js';
import { loadLab } from '../../src/lab/load.js';
import { whichExecutable } from '../../src/util/process.js';

// Not from test/support/cli.js, whose import rebuilds dist/: these tests run the sources.
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = join(ROOT, 'bin', 'labctl.js');

const dir = mkdtempSync(join(tmpdir(), 'labctl-completion-'));
const runDir = join(dir, 'run');
const dataDir = join(dir, 'data');
const binDir = join(dir, 'bin');
after(() => rmSync(dir, { recursive: true, force: true }));

/** The sources through bin/labctl.js (a unit run has no build before it), as `labctl` on PATH, with this test's run and data dirs. */
const env = {
  ...process.env,
  LABCTL_FROM_SOURCE: '1',
  LABCTL_RUN_DIR: runDir,
  LABCTL_DATA_DIR: dataDir,
  PATH: `${binDir}:${process.env.PATH}`,
};
const scripts: Record<string, string> = {};

before(() => {
  mkdirSync(binDir);
  symlinkSync(BIN, join(binDir, 'labctl'));
  // A lab that is up, as its state file records it, and one image (broken, but there to remove).
  mkdirSync(runDir);
  writeFileSync(
    join(runDir, 'demo.json'),
    JSON.stringify({
      lab: 'demo',
      source: '/x/demo.yaml',
      planHash: 'h',
      status: 'up',
      createdAt: '',
      namespaces: [
        { netns: 'ns-d-c0', owner: 'c0', role: 'node' },
        { netns: 'ns-d-c0-nat', owner: 'c0-nat', role: 'nat' },
        { netns: 'ns-d-inet', owner: 'inet', role: 'internet' },
      ],
      nats: [],
      machines: [{ name: 'd-c0', netns: 'ns-d-c0', image: 'bookworm', directory: '/x', backend: 'direct' }],
    }),
  );
  mkdirSync(join(dataDir, 'images'), { recursive: true });
  writeFileSync(join(dataDir, 'images', 'myimage.btrfs'), '');
  writeFileSync(join(dataDir, 'images', 'myimage.json'), '{}');
  for (const shell of ['bash', 'zsh', 'fish']) {
    const r = spawnSync(process.execPath, [BIN, 'completion', shell], { encoding: 'utf8', env, timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    scripts[shell] = join(dir, `labctl.${shell}`);
    writeFileSync(scripts[shell]!, r.stdout);
  }
});

describe('completion specs from the commander program', () => {
  const program = new Command('tool');
  program
    .command('up')
    .argument('[file]')
    .addOption(new Option('--backend <b>').choices(['systemd', 'direct']))
    .option('--image <name>')
    .option('--data-dir <dir>')
    .option('--json');
  const net = program.command('net').description('the network: namespaces and more; nothing else');
  net.command('rules').argument('<nat>').argument('[file]');
  program.command('exec').argument('<machine>').argument('<command...>');
  program.command('secret', { hidden: true });
  program.command('pick').addArgument(new Argument('<shell>').choices(['bash', 'zsh']));
  const specs = completionSpecs(program);
  const at = (path: string) => specs.find((s) => s.path === path)!;

  it('walks every visible command, leaves hidden ones out, and adds commander help', () => {
    assert.deepEqual(
      specs.map((s) => s.path),
      ['', 'up', 'net', 'net rules', 'net help', 'exec', 'pick', 'help'],
    );
    assert.deepEqual(
      at('').commands.map((c) => c.name),
      ['up', 'net', 'exec', 'pick', 'help'],
    );
    assert.equal(at('').commands.find((c) => c.name === 'net')!.description, 'the network');
  });

  it('options: flags, choices, known kinds and placeholders', () => {
    const opts = Object.fromEntries(at('up').options.map((o) => [o.names.at(-1), o.value ?? 'flag']));
    assert.deepEqual(opts, { '--backend': 'choices:systemd,direct', '--image': 'images', '--data-dir': 'dirs', '--json': 'flag', '--help': 'flag' });
  });

  it('arguments: by name, by choices, variadic last, and help takes the commands beside it', () => {
    assert.deepEqual(at('up').args, ['labs']);
    assert.deepEqual(at('net rules').args, ['members', 'labs']);
    assert.deepEqual([at('exec').args, at('exec').variadic], [['machines', 'none'], true]);
    assert.deepEqual(at('pick').args, ['choices:bash,zsh']);
    assert.deepEqual(at('help').args, ['choices:up,net,exec,pick']);
    assert.deepEqual(at('net help').args, ['choices:rules']);
  });

  it('menu descriptions stop at the first colon or semicolon outside parentheses', () => {
    assert.equal(firstSentence('machine backend (default: systemd); more'), 'machine backend (default: systemd)');
    assert.equal(firstSentence('x'.repeat(100)).length, 80);
  });
});

describe('labctl __complete', () => {
  it('labs: the built-in labs, each of which loads, and the labs that are up', async () => {
    process.env.LABCTL_RUN_DIR = runDir;
    try {
      const labs = await completionValues('labs');
      assert.ok(labs.includes('article') && labs.includes('demo'), labs.join(' '));
      for (const name of labs.filter((l) => l !== 'demo')) assert.equal(loadLab(name).source, join(ROOT, 'machines', `${name}.yaml`));
    } finally {
      delete process.env.LABCTL_RUN_DIR;
    }
  });

  it('machines, members, images and recipes; nothing for an unknown kind', () => {
    const complete = (kind: string) => spawnSync(process.execPath, [BIN, '__complete', kind], { encoding: 'utf8', env, timeout: 60_000 });
    assert.equal(complete('machines').stdout, 'd-c0\n');
    assert.equal(complete('members').stdout, 'c0\nc0-nat\ninet\n');
    assert.equal(complete('images').stdout, 'myimage\n');
    assert.match(complete('recipes').stdout, /^bookworm$/m);
    const unknown = complete('nonsense');
    assert.deepEqual([unknown.status, unknown.stdout], [0, '']);
  });
});

/** Calls the bash completion function for the words typed (the last one is under the cursor) and returns COMPREPLY. */
function bashComplete(...words: string[]): string[] {
  const program = [
    'source "$1"; shift',
    `COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=\${#COMP_LINE}`,
    `_labctl labctl "\${COMP_WORDS[COMP_CWORD]}" "\${COMP_WORDS[COMP_CWORD-1]}"`,
    `printf "%s\\n" "\${COMPREPLY[@]}"`,
  ].join('\n');
  const r = spawnSync('bash', ['--norc', '--noprofile', '-c', program, 'bash', scripts.bash!, ...words], { encoding: 'utf8', env, cwd: dir, timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.split('\n').filter((l) => l !== '');
}

describe('bash', () => {
  it('top-level commands, and no hidden one', () => {
    const commands = bashComplete('labctl', '');
    for (const c of ['up', 'down', 'status', 'shell', 'exec', 'validate', 'net', 'conntrack', 'check', 'image', 'doctor', 'completion'])
      assert.ok(commands.includes(c), c);
    assert.ok(!commands.some((c) => c.startsWith('_')));
    assert.deepEqual(bashComplete('labctl', 'ne'), ['net']);
  });

  it('net subcommands, and image subcommands', () => {
    assert.deepEqual(bashComplete('labctl', 'net', ''), ['up', 'down', 'status', 'flush', 'rules', 'help']);
    assert.deepEqual(bashComplete('labctl', 'image', ''), ['build', 'list', 'rm', 'mount', 'umount', 'help']);
  });

  it("up's options and their values, spaced or after = (which bash splits off)", () => {
    assert.deepEqual(bashComplete('labctl', 'up', '--ba'), ['--backend']);
    assert.ok(bashComplete('labctl', 'up', '--').includes('--image'));
    assert.deepEqual(bashComplete('labctl', 'up', '--backend', ''), ['systemd', 'direct']);
    assert.deepEqual(bashComplete('labctl', 'up', '--backend', '=', 'd'), ['direct']);
    assert.deepEqual(bashComplete('labctl', 'up', '--image', ''), ['myimage']);
  });

  it('a built-in lab name, also after an option and its value', () => {
    assert.deepEqual(bashComplete('labctl', 'up', 'artic'), ['article']);
    assert.deepEqual(bashComplete('labctl', 'up', '--timeout', '30', 'artic'), ['article']);
    assert.deepEqual(bashComplete('labctl', 'validate', 'artic'), ['article']);
  });

  it('machines and members of the labs that are up, images, recipes', () => {
    assert.deepEqual(bashComplete('labctl', 'shell', ''), ['d-c0']);
    assert.deepEqual(bashComplete('labctl', 'exec', 'd'), ['d-c0']);
    assert.deepEqual(bashComplete('labctl', 'net', 'rules', 'c0-'), ['c0-nat']);
    assert.deepEqual(bashComplete('labctl', 'conntrack', 'in'), ['inet']);
    assert.deepEqual(bashComplete('labctl', 'image', 'rm', ''), ['myimage']);
    assert.ok(bashComplete('labctl', 'image', 'build', '').includes('bookworm'));
    assert.deepEqual(bashComplete('labctl', 'completion', 'z'), ['zsh']);
  });
});

const fish = whichExecutable('fish');
describe('fish', { skip: fish ? false : 'fish is not installed (scripts/install.sh installs it)' }, () => {
  const fishComplete = (line: string): string[] => {
    const r = spawnSync(fish!, ['--no-config', '-c', 'source $argv[1]; complete -C$argv[2]', scripts.fish!, line], {
      encoding: 'utf8',
      env,
      cwd: dir,
      timeout: 60_000,
    });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => l.split('\t')[0]!);
  };
  it('the script parses', () => {
    const r = spawnSync(fish!, ['--no-execute', scripts.fish!], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
  });
  it('commands, subcommands, options with their values, lab names, members', () => {
    assert.ok(fishComplete('labctl ').includes('doctor'));
    assert.deepEqual(fishComplete('labctl net ').sort(), ['down', 'flush', 'help', 'rules', 'status', 'up']);
    assert.deepEqual(fishComplete('labctl up --ba'), ['--backend']);
    assert.deepEqual(fishComplete('labctl up --backend ').sort(), ['direct', 'systemd']);
    assert.deepEqual(fishComplete('labctl up artic'), ['article']);
    assert.deepEqual(fishComplete('labctl net rules c0-'), ['c0-nat']);
  });
});

const zsh = whichExecutable('zsh');
describe('zsh', { skip: zsh ? false : 'zsh is not installed (scripts/install.sh installs it)' }, () => {
  /** The zsh function with compadd, _describe and _files stood in for: they collect the words offered. */
  const zshComplete = (...words: string[]): string[] => {
    const program = [
      'compdef() { :; }',
      'source $1; shift',
      'typeset -ga offered',
      'compadd() { while [[ $1 == -* && $1 != -- ]]; do shift; done; [[ $1 == -- ]] && shift; offered+=("$@"); }',
      `_describe() { local -a list; list=("\${(@P)4}"); offered+=("\${(@)list%%:*}"); }`,
      '_files() { offered+=("<files>"); }',
      'compset() { :; }',
      'words=("$@"); CURRENT=$#',
      '_labctl',
      'print -l -- $offered',
    ].join('\n');
    const r = spawnSync(zsh!, ['-f', '-c', program, 'zsh', scripts.zsh!, ...words], { encoding: 'utf8', env, cwd: dir, timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.split('\n').filter((l) => l !== '');
  };
  it('the script parses, and registers itself with compinit', () => {
    assert.equal(spawnSync(zsh!, ['-n', scripts.zsh!], { encoding: 'utf8' }).status, 0);
    const r = spawnSync(zsh!, ['-f', '-c', 'autoload -U compinit; compinit -u -D; source $1; print $_comps[labctl]', 'zsh', scripts.zsh!], {
      encoding: 'utf8',
      env,
    });
    assert.equal(r.stdout.trim(), '_labctl', r.stderr);
  });
  it('commands, subcommands, options with their values, lab names, members', () => {
    assert.ok(zshComplete('labctl', '').includes('doctor'));
    assert.deepEqual(zshComplete('labctl', 'net', ''), ['up', 'down', 'status', 'flush', 'rules', 'help']);
    assert.ok(zshComplete('labctl', 'up', '--').includes('--backend'));
    assert.deepEqual(zshComplete('labctl', 'up', '--backend', ''), ['systemd', 'direct']);
    assert.deepEqual(zshComplete('labctl', 'up', '--backend=d'), ['systemd', 'direct']);
    assert.deepEqual(zshComplete('labctl', 'up', ''), ['article', 'demo', 'wireguard', '<files>']);
    assert.deepEqual(zshComplete('labctl', 'shell', ''), ['d-c0']);
    assert.deepEqual(zshComplete('labctl', 'net', 'rules', ''), ['c0', 'c0-nat', 'inet']);
  });
});
