import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { nspawnMachineName } from '../../src/machine/proc.js';
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

describe('unitNameFor', () => {
  it('takes any name machined takes (a host name of up to 64 bytes)', () => {
    assert.equal(unitNameFor('c1-nat'), 'labctl-c1-nat.service');
    assert.equal(unitNameFor('a'.repeat(64)), `labctl-${'a'.repeat(64)}.service`);
    assert.throws(() => unitNameFor('a'.repeat(65)), /invalid machine name/);
    assert.throws(() => unitNameFor('-x'), /invalid machine name/);
  });
});
