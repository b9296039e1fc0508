import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { hostnameCleanup, nspawnMachineName, signalTree } from '../../src/machine/proc.js';
import { descendants, processId, sleep, waitGone, type ProcessId } from '../../src/util/process.js';
import { unitNameFor } from '../../src/machine/unit-name.js';

describe('nspawnMachineName: the machine an nspawn command line runs, however it was named', () => {
  const cases: [string[], string | undefined][] = [
    [['systemd-nspawn', '--quiet', '--machine=c0', '-D', '/x'], 'c0'],
    [['systemd-nspawn', '--machine', 'c0', '-D', '/x'], 'c0'],
    // the article's way
    [['systemd-nspawn', '--ephemeral', '-b', '-D', 'root', '--network-namespace-path=/var/run/netns/ns-c0', '--capability=CAP_NET_ADMIN', '-M', 'c0'], 'c0'],
    [['/usr/bin/systemd-nspawn', '-Mc1-nat', '-b'], 'c1-nat'],
    [['systemd-nspawn', '-bM', 'c1'], 'c1'],
    // values that look like options are skipped with their option
    [['systemd-nspawn', '--setenv', '-M', '-M', 'real'], 'real'],
    [['systemd-nspawn', '-E', 'X=--machine=no', '--machine=yes'], 'yes'],
    // named after its directory, unless ephemeral (then a random suffix is added)
    [['systemd-nspawn', '-D', '/var/lib/machines/web/', '-b'], 'web'],
    [['systemd-nspawn', '--image=/srv/disk.raw'], 'disk'],
    [['systemd-nspawn', '-xD', '/var/lib/machines/web'], undefined],
    [['systemd-nspawn', '--ephemeral', '-D', '/var/lib/machines/web'], undefined],
    // after the options: the container's command, not nspawn's
    [['systemd-nspawn', '-D', '/r', '/bin/sh', '-c', 'x', '-M', 'nope'], 'r'],
    [['systemd-nspawn', '--directory=/r', '--', '-M', 'nope'], 'r'],
    [['systemd-nspawn', '-b'], undefined],
  ];
  for (const [argv, name] of cases) {
    it(`${argv.slice(1).join(' ')} -> ${name ?? '(unknown)'}`, () => assert.equal(nspawnMachineName(argv), name));
  }
});

/** Test titles: a long run of one letter as a{70}. */
const short = (s: string) => s.replace(/([ax])\1{9,}/g, (run, c: string) => `${c}{${run.length}}`);

describe('nspawnMachineName: a name from the directory, cleaned up as systemd-nspawn 252/257 does', () => {
  const a = (n: number) => 'a'.repeat(n);
  // Expected names as systemd 252's hostname_cleanup() and hostname_is_valid() give them
  // (checked against libsystemd-shared-252.so); undefined: nspawn refuses to start
  // ("Failed to determine machine name automatically, please use -M").
  const cases: [string, string | undefined][] = [
    ['/srv/c_0', 'c0'], // underscores are dropped
    ['/srv/C_0', 'C0'],
    ['/srv/c 0+x@y', 'c0xy'],
    ['/srv/web.example.com', 'web.example.com'], // dots stay between labels
    ['/srv/.c0.', 'c0'],
    ['/srv/x..y', 'x.y'],
    ['/srv/a-.b', 'a-b'], // no label ends with "-"
    ['/srv/a.-b', 'a.b'], // nor starts with one
    ['/srv/c0-', 'c0'], // one trailing "-" goes
    ['/srv/-c0', 'c0'],
    ['/srv/c0--', undefined], // only one: "c0-" is no host name
    ['/srv/a--b', 'a--b'],
    ['/srv/fööbar', 'fbar'],
    ['/srv/___', undefined],
    [`/srv/${a(70)}`, a(64)], // cut at 64 characters
    [`/srv/${a(63)}-b`, a(63)], // ... then a trailing "-" goes
    [`/srv/${a(63)}_-b`, a(63)],
    [`/srv/${a(62)}--b`, undefined],
    [`/srv/${a(63)}.b`, a(63)],
    ['/srv/c0/', 'c0'],
    ['/srv/c0/.', 'c0'],
    ['c_0', 'c0'],
    ['./c_0', 'c0'],
    // named after the host or nspawn's working directory: not known from argv
    ['/', undefined],
    ['.', undefined],
    ['/srv/c0/..', undefined],
  ];
  for (const [dir, name] of cases) {
    it(`-D ${short(dir)} -> ${name === undefined ? '(none: nspawn refuses, or argv does not tell)' : short(name)}`, () => {
      assert.equal(nspawnMachineName(['systemd-nspawn', '-D', dir, '-b']), name);
      assert.equal(nspawnMachineName(['systemd-nspawn', `--directory=${dir}`, '-b']), name);
    });
  }

  it('drops .raw from an image only, and cleans up what is left', () => {
    assert.equal(nspawnMachineName(['systemd-nspawn', '-i', '/srv/disk_1.raw']), 'disk1');
    assert.equal(nspawnMachineName(['systemd-nspawn', '--image', '/srv/disk.v2.raw']), 'disk.v2');
    assert.equal(nspawnMachineName(['systemd-nspawn', '-D', '/srv/web.raw']), 'web.raw');
  });

  it('takes an explicit name as given', () => {
    assert.equal(nspawnMachineName(['systemd-nspawn', '-D', '/srv/c_0', '-M', 'c0']), 'c0');
  });
});

describe("hostnameCleanup: systemd's own test cases (test-hostname-util.c)", () => {
  const cases: [string, string][] = [
    ['foobar', 'foobar'],
    ['foobar.com', 'foobar.com'],
    ['foobar.com.', 'foobar.com'],
    ['foo-bar.-com-.', 'foo-bar.com'],
    ['foo-bar-.-com-.', 'foo-bar--com'],
    ['--foo-bar.-com', 'foo-bar.com'],
    ['fooBAR', 'fooBAR'],
    ['fööbar', 'fbar'],
    ['', ''],
    ['.', ''],
    ['..', ''],
    ['.foobar', 'foobar'],
    ['foo..bar', 'foo.bar'],
    ['foo.bar..', 'foo.bar'],
    ['x'.repeat(100), 'x'.repeat(64)],
    [`xxxx........${'x'.repeat(92)}`, `xxxx.${'x'.repeat(59)}`],
  ];
  for (const [input, output] of cases) {
    it(`${JSON.stringify(short(input))} -> ${JSON.stringify(short(output))}`, () => assert.equal(hostnameCleanup(input), output));
  }
});

describe('unitNameFor', () => {
  it('takes any name machined takes (a host name of up to 64 bytes)', () => {
    assert.equal(unitNameFor('c1-nat'), 'labctl-c1-nat.service');
    assert.equal(unitNameFor('a'.repeat(64)), `labctl-${'a'.repeat(64)}.service`);
    assert.throws(() => unitNameFor('a'.repeat(65)), /invalid machine name/);
    assert.throws(() => unitNameFor('-x'), /invalid machine name/);
  });
});

describe('signalTree', () => {
  it('signals a process and every descendant, grandchildren too (which would outlive their parent otherwise)', async () => {
    // sh -> sh (a subshell) -> sleep, and sh -> sleep
    const child = spawn('sh', ['-c', '(sleep 60; true) & sleep 61; wait'], { stdio: 'ignore' });
    const root = processId(child.pid!)!;
    let tree: ProcessId[] = [];
    for (let i = 0; i < 200 && tree.length < 3; i++) {
      await sleep(10);
      tree = descendants([root.pid]);
    }
    assert.equal(tree.length, 3, 'the subshell and both sleeps run');
    signalTree(root.pid, 'SIGTERM');
    assert.deepEqual(await waitGone([root, ...tree], 5000), []);
  });
});
