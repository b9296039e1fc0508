// The two systemd-nspawn command lines: the direct backend's (src/machine/nspawn.ts) and the
// systemd backend's (ExecStart= of systemd/labctl-machine.unit-properties). No root, no bus.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { nspawnArgs } from '../../src/machine/nspawn.js';
import { loadUnitTemplate, unitProperties, type UnitVars } from '../../src/machine/systemd.js';

const SPEC = { name: 'c1-nat', netns: 'ns-c1-nat', directory: '/var/lib/labctl/mnt/my image/rootfs' };
const VARS: UnitVars = { machine: SPEC.name, lab: 'article', netns: SPEC.netns, directory: SPEC.directory, image: 'bookworm', readyTimeoutMs: '45000' };

/** The template's ExecStart= for SPEC, as the argument array the unit runs (program name as written). */
function templateArgv(): string[] {
  const exec = unitProperties(loadUnitTemplate(), VARS, (name) => name).find((p) => p.name === 'ExecStart');
  assert.ok(exec, 'the template has an ExecStart=');
  const [[, argv]] = exec.value as [[string, string[], boolean]];
  return argv;
}

describe('nspawnArgs: the direct backend boots the same machine as the systemd backend', () => {
  it('has the template\'s options, plus --register=no', () => {
    // The one intended difference: the systemd backend's nspawn registers the machine with
    // machined under its unit (--keep-unit, registration on by default); the direct backend
    // has no machined, so --register=no (its --keep-unit: no scope of its own either).
    const direct = nspawnArgs(SPEC);
    assert.deepEqual(
      direct.filter((a) => a !== '--register=no'),
      templateArgv(),
    );
    assert.ok(!templateArgv().some((a) => a.startsWith('--register')), 'the unit registers with machined');
  });

  it('boots an ephemeral snapshot of the directory in the lab\'s namespace, without machined', () => {
    const argv = nspawnArgs(SPEC);
    assert.equal(argv[0], 'systemd-nspawn');
    for (const option of [
      '--register=no',
      '--keep-unit',
      '--boot',
      '--ephemeral',
      '--notify-ready=yes',
      '--settings=no',
      '--network-namespace-path=/run/netns/ns-c1-nat',
      '--capability=CAP_NET_ADMIN',
      '--machine=c1-nat',
      '--directory=/var/lib/labctl/mnt/my image/rootfs', // a space stays inside one argument
    ]) {
      assert.ok(argv.includes(option), `${option} in ${argv.join(' ')}`);
    }
  });
});
