// The two systemd-nspawn command lines: the direct backend's (src/machine/nspawn.ts) and the
// systemd backend's (ExecStart= of systemd/labctl-machine.unit-properties). What matters
// of them, not a copy of either: they agree, they boot an ephemeral snapshot of the image in
// the lab's namespace, registration is the one difference, every option is one the
// installed systemd-nspawn knows, and labctl's own lookups (machine/proc.ts) find the
// machine from them. No root, no bus.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { NETNS_DIR } from '../../src/host/netns.js';
import { nspawnArgs } from '../../src/machine/nspawn.js';
import { nspawnMachineName } from '../../src/machine/proc.js';
import { loadUnitTemplate, unitProperties, type UnitVars } from '../../src/machine/unit-template.js';

const SPEC = { name: 'c1-nat', netns: 'ns-c1-nat', directory: '/var/lib/labctl/mnt/my image/rootfs' };
const VARS: UnitVars = { machine: SPEC.name, lab: 'article', netns: SPEC.netns, directory: SPEC.directory, image: 'bookworm', readyTimeoutMs: '45000' };

/** The template's ExecStart= for SPEC, as the argument array the unit runs (program name as written). */
function templateArgv(): string[] {
  const exec = unitProperties(loadUnitTemplate(), VARS, (name) => name).find((p) => p.name === 'ExecStart');
  assert.ok(exec, 'the template has an ExecStart=');
  const [[, argv]] = exec.value as [[string, string[], boolean]];
  return argv;
}

const both = (): [string, string[]][] => [
  ['direct', nspawnArgs(SPEC)],
  ['systemd', templateArgv()],
];

/** The value of a --name=value option (the last one given, as nspawn takes it), or undefined. */
const option = (argv: string[], name: string) =>
  argv
    .filter((a) => a.startsWith(`${name}=`))
    .map((a) => a.slice(name.length + 1))
    .pop();

describe('the nspawn command lines of the two backends', () => {
  it("agree, apart from registration: the unit's nspawn registers with machined (under its unit), the direct one cannot (--register=no)", () => {
    const direct = nspawnArgs(SPEC);
    assert.deepEqual(
      direct.filter((a) => a !== '--register=no'),
      templateArgv(),
    );
    assert.equal(option(direct, '--register'), 'no');
    assert.equal(option(templateArgv(), '--register'), undefined, 'registration stays on (the default)');
  });

  for (const [backend, argv] of both()) {
    describe(`${backend} backend`, () => {
      it('runs systemd-nspawn, with options only (no command: the machine boots its own init)', () => {
        assert.equal(argv[0], 'systemd-nspawn');
        assert.ok(
          argv.slice(1).every((a) => a.startsWith('--')),
          argv.join(' '),
        );
      });

      it('boots (--boot) a throw-away snapshot of the image (--ephemeral) and says when it is up (--notify-ready=yes)', () => {
        assert.ok(argv.includes('--boot'));
        assert.ok(argv.includes('--ephemeral'));
        assert.equal(option(argv, '--notify-ready'), 'yes');
        assert.equal(option(argv, '--directory'), SPEC.directory, 'the image directory, spaces and all, as one argument');
      });

      it("runs in the lab's namespace, under NETNS_DIR, with the capability to configure it, and in the caller's cgroup", () => {
        assert.equal(option(argv, '--network-namespace-path'), `${NETNS_DIR}/${SPEC.netns}`);
        assert.ok(!argv.some((a) => /^--(private-network|network-veth|network-bridge|network-zone)/.test(a)), 'no network of its own');
        assert.equal(option(argv, '--capability'), 'CAP_NET_ADMIN');
        assert.ok(argv.includes('--keep-unit'));
      });

      it('names the machine so that labctl finds it among processes (machine/proc.ts)', () => {
        assert.equal(nspawnMachineName(argv), SPEC.name);
      });

      it('uses only options the installed systemd-nspawn knows', () => {
        const help = spawnSync('systemd-nspawn', ['--help'], { encoding: 'utf8' });
        assert.equal(help.status, 0, `systemd-nspawn --help (systemd-container installed?): ${help.error?.message ?? help.stderr}`);
        const known = new Set(help.stdout.match(/--[a-z-]+/g));
        for (const a of argv.slice(1)) assert.ok(known.has(a.split('=')[0]!), `${a} is not in systemd-nspawn --help`);
      });
    });
  }
});
