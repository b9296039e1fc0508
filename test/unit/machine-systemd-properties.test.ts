// The systemd backend's unit template (systemd/labctl-machine.unit-properties) and what
// it turns into for StartTransientUnit, checked against systemd itself where it can be
// without a running systemd (systemd-analyze verify); the property names as sent over
// D-Bus are checked on a running systemd by test/e2e/machines-systemd.test.ts. No root, no bus.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { unitNameFor } from '../../src/machine/unit-name.js';
import {
  KNOWN_PROPERTIES,
  UNIT_PROPERTIES_FILE,
  UnitTemplateError,
  loadUnitTemplate,
  parseTimespan,
  parseUnitTemplate,
  unitProperties,
  type TemplateEntry,
  type UnitProperty,
  type UnitVars,
} from '../../src/machine/unit-template.js';
import { whichExecutable } from '../../src/util/process.js';

const VARS: UnitVars = {
  machine: 'c1-nat',
  lab: 'article',
  netns: 'ns-c1-nat',
  directory: '/var/lib/labctl/mnt/my image/rootfs',
  image: 'bookworm',
  readyTimeoutMs: '45000',
};
const fakeExe = (name: string) => `/usr/bin/${name}`;

function props(): Map<string, UnitProperty> {
  return new Map(unitProperties(loadUnitTemplate(), VARS, fakeExe).map((p) => [p.name, p]));
}

function problemsOf(text: string): string[] {
  try {
    parseUnitTemplate(text, 't.unit-properties');
  } catch (e) {
    assert.ok(e instanceof UnitTemplateError, String(e));
    return e.problems;
  }
  assert.fail('template was accepted');
}

describe('the shipped unit template', () => {
  it('lives in systemd/ at the project root and parses', () => {
    assert.ok(UNIT_PROPERTIES_FILE.endsWith('/systemd/labctl-machine.unit-properties'));
    assert.ok(existsSync(UNIT_PROPERTIES_FILE));
    const entries = loadUnitTemplate();
    assert.ok(entries.length >= 10);
    for (const e of entries) assert.ok(KNOWN_PROPERTIES[e.key], e.key);
  });

  it('explains itself: every property group has a comment', () => {
    const text = readFileSync(UNIT_PROPERTIES_FILE, 'utf8');
    assert.match(text, /KillMode=mixed/);
    assert.match(text, /ignores? (it|SIGTERM)/, 'says why KillMode=mixed');
    assert.match(text, /--notify-ready=yes/);
  });

  it('is a notify service in machine.slice with delegation and KillMode=mixed', () => {
    const p = props();
    assert.deepEqual(p.get('Type'), { name: 'Type', signature: 's', value: 'notify' });
    assert.equal(p.get('Slice')?.value, 'machine.slice');
    assert.deepEqual(p.get('Delegate'), { name: 'Delegate', signature: 'b', value: true });
    assert.equal(p.get('KillMode')?.value, 'mixed');
    assert.equal(p.get('CollectMode')?.value, 'inactive-or-failed');
    assert.equal(p.get('Description')?.value, 'labctl machine c1-nat (lab article)');
  });

  it('sends the start timeout from the spec, in microseconds', () => {
    const p = props();
    assert.deepEqual(p.get('TimeoutStartUSec'), { name: 'TimeoutStartUSec', signature: 't', value: 45_000_000n });
    assert.equal(p.get('TimeoutStopUSec')?.value, 15_000_000n);
    assert.equal(p.get('WatchdogUSec')?.value, 180_000_000n);
    assert.deepEqual(p.get('SuccessExitStatus'), { name: 'SuccessExitStatus', signature: '(aiai)', value: [[133], []] });
  });

  it('runs systemd-nspawn as an argument array (a(sasb)), placeholders filled per argument', () => {
    // What the options are and mean: test/unit/machine-nspawn.test.ts.
    const exec = props().get('ExecStart');
    assert.equal(exec?.signature, 'a(sasb)');
    const [[path, argv, ignoreFailure]] = exec!.value as [[string, string[], boolean]];
    assert.equal(path, '/usr/bin/systemd-nspawn', 'the program found in PATH');
    assert.equal(argv[0], path);
    assert.equal(ignoreFailure, false);
    assert.ok(argv.includes(`--directory=${VARS.directory}`), 'a space stays inside one argument');
    assert.ok(argv.includes(`--machine=${VARS.machine}`));
  });

  it('has the device policy of systemd-nspawn@.service', () => {
    const p = props();
    assert.equal(p.get('DevicePolicy')?.value, 'closed');
    assert.deepEqual(p.get('DeviceAllow'), {
      name: 'DeviceAllow',
      signature: 'a(ss)',
      value: [
        ['/dev/net/tun', 'rwm'],
        ['char-pts', 'rw'],
        ['/dev/loop-control', 'rw'],
        ['block-loop', 'rw'],
        ['block-blkext', 'rw'],
        ['/dev/mapper/control', 'rw'],
        ['block-device-mapper', 'rw'],
      ],
    });
  });

  it('matches the real systemd-nspawn@.service where it is installed', (t) => {
    const file = ['/lib/systemd/system/systemd-nspawn@.service', '/usr/lib/systemd/system/systemd-nspawn@.service'].find(existsSync);
    if (!file) return t.skip('no systemd-nspawn@.service on this machine');
    const real = readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => /^(DeviceAllow|DevicePolicy|KillMode|Delegate|Slice|Type|TasksMax)=/.test(l))
      .map((l) => l.trim());
    const ours = readFileSync(UNIT_PROPERTIES_FILE, 'utf8')
      .split('\n')
      .map((l) => l.trim());
    for (const line of real) assert.ok(ours.includes(line), `${line} (from ${file}) is missing`);
  });
});

/**
 * The unit file the template stands for, for one machine: each key in its section with the
 * placeholders filled, ExecStart= as the argument array labctl sends (the program as found
 * in PATH), each argument quoted as unit files quote them.
 */
function unitFileText(entries: TemplateEntry[], vars: UnitVars): string {
  const escapePercent = (v: string) => v.replace(/%/g, '%%');
  const fill = (v: string) => v.replace(/\{([A-Za-z]+)\}/g, (_, name: string) => String(vars[name as keyof UnitVars] ?? ''));
  const [exec] = unitProperties(
    entries.filter((e) => e.key === 'ExecStart'),
    vars,
  );
  const [[path, argv]] = exec!.value as [[string, string[], boolean]];
  const quoted = [path, ...argv.slice(1)].map((a) => `"${escapePercent(a).replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\$/g, '$$$$')}"`);
  const lines = (section: string) =>
    entries
      .filter((e) => e.section === section)
      .map((e) => (e.key === 'ExecStart' ? `ExecStart=${quoted.join(' ')}` : `${e.key}=${escapePercent(fill(e.value))}`));
  return ['[Unit]', ...lines('Unit'), '', '[Service]', ...lines('Service'), ''].join('\n');
}

/** What `systemd-analyze verify` says about that unit file (its lines about the unit; none when all is well). */
function verify(entries: TemplateEntry[]): string[] {
  const analyze = whichExecutable('systemd-analyze');
  assert.ok(analyze, 'systemd-analyze is missing: install systemd (scripts/install.sh installs systemd-container, which brings it)');
  const dir = mkdtempSync(join(tmpdir(), 'labctl-unit-'));
  const unit = unitNameFor(VARS.machine);
  try {
    writeFileSync(join(dir, unit), unitFileText(entries, VARS));
    const r = spawnSync(analyze, ['verify', '--man=no', join(dir, unit)], { encoding: 'utf8' });
    const said = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => l.includes(unit));
    return r.status === 0 ? said : [...said, `systemd-analyze verify exited ${r.status}: ${r.stderr}`];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('systemd itself (systemd-analyze verify) on the unit the template makes', () => {
  it('knows every key in its section and takes every value', () => {
    const entries = loadUnitTemplate();
    // Every key labctl knows how to send is in the shipped template, so all of them are checked here.
    assert.deepEqual(
      new Set(entries.map((e) => e.key)),
      new Set(Object.keys(KNOWN_PROPERTIES)),
      'a key labctl can send that the template does not use goes unchecked: use it in the template',
    );
    assert.deepEqual(verify(entries), []);
  });

  it('would say so of a key it does not know, a key in the wrong section and a value it cannot parse (so the check above can fail)', () => {
    const extra = (section: string, key: string, value: string): TemplateEntry[] => [...loadUnitTemplate(), { section, key, value, line: 0 }];
    assert.match(verify(extra('Service', 'KillMod', 'mixed')).join('\n'), /Unknown key 'KillMod' in section \[Service\]/);
    assert.match(verify(extra('Unit', 'KillMode', 'mixed')).join('\n'), /Unknown key 'KillMode' in section \[Unit\]/);
    assert.match(verify(extra('Service', 'TimeoutStopSec', 'soon')).join('\n'), /TimeoutStopSec|soon/);
  });
});

describe('parseUnitTemplate', () => {
  const MIN = '[Service]\nExecStart=systemd-nspawn --machine={machine}\n';

  it('accepts comments, blank lines and sections', () => {
    const e = parseUnitTemplate(`# hi\n\n[Unit]\nDescription=x {lab}\n${MIN}`);
    assert.deepEqual(
      e.map((x) => [x.section, x.key, x.value, x.line]),
      [
        ['Unit', 'Description', 'x {lab}', 4],
        ['Service', 'ExecStart', 'systemd-nspawn --machine={machine}', 6],
      ],
    );
  });

  it('rejects unknown keys, misplaced keys, unknown placeholders and shell syntax, with line numbers', () => {
    assert.deepEqual(problemsOf('[Service]\nRestrat=always\n'), [
      `line 2: Restrat= is not a property labctl sends (known: ${Object.keys(KNOWN_PROPERTIES).join(', ')})`,
      'no ExecStart= line',
    ]);
    assert.deepEqual(problemsOf(`[Service]\nDescription=x\n${MIN.slice(10)}`), ['line 2: Description= belongs in [Unit], not [Service]']);
    assert.deepEqual(problemsOf(`Type=notify\n${MIN}`), ['line 1: Type= comes before any [Unit] or [Service] section']);
    assert.deepEqual(problemsOf(`[Install]\n${MIN}`), ['line 1: unknown section [Install] (use [Unit] or [Service])']);
    assert.match(problemsOf('[Service]\nExecStart=nspawn -M {name}\n')[0]!, /^line 2: unknown placeholder \{name\}/);
    assert.match(problemsOf('[Service]\nExecStart=sh -c "nspawn; true"\n')[0]!, /no quotes, escapes or shell syntax/);
    assert.match(problemsOf('[Service]\nthis is not a line\n')[0]!, /^line 2: not a Key=Value line/);
  });

  it('reports a bad value with its line when the properties are made', () => {
    const entries = parseUnitTemplate(`${MIN}Delegate=maybe\n`);
    assert.throws(() => unitProperties(entries, VARS, fakeExe), /line 3: Delegate=: not a boolean/);
    const t = parseUnitTemplate(`${MIN}TimeoutStopSec=5 fortnights\n`);
    assert.throws(() => unitProperties(t, VARS, fakeExe), /line 3: TimeoutStopSec=: unknown time unit "fortnights"/);
  });

  it('a repeated key replaces, except DeviceAllow which adds', () => {
    const e = parseUnitTemplate(`${MIN}KillMode=process\nKillMode=mixed\nDeviceAllow=/dev/null rw\nDeviceAllow=char-pts\n`);
    const p = unitProperties(e, VARS, fakeExe);
    assert.deepEqual(
      p.filter((x) => x.name === 'KillMode').map((x) => x.value),
      ['mixed'],
    );
    assert.deepEqual(p.find((x) => x.name === 'DeviceAllow')?.value, [
      ['/dev/null', 'rw'],
      ['char-pts', 'rwm'],
    ]);
  });
});

describe('parseTimespan', () => {
  it('reads systemd time spans as microseconds', () => {
    assert.equal(parseTimespan('15s'), 15_000_000n);
    assert.equal(parseTimespan('90'), 90_000_000n);
    assert.equal(parseTimespan('2500ms'), 2_500_000n);
    assert.equal(parseTimespan('1min 30s'), 90_000_000n);
    assert.equal(parseTimespan('3min'), 180_000_000n);
    assert.equal(parseTimespan('infinity'), 2n ** 64n - 1n);
    assert.throws(() => parseTimespan('soon'), /unknown time unit|not a time span/);
    assert.throws(() => parseTimespan(''), /not a time span/);
  });
});

describe('unitNameFor', () => {
  it('names the unit after the machine', () => {
    assert.equal(unitNameFor('c1-nat'), 'labctl-c1-nat.service');
    assert.throws(() => unitNameFor('../x'), /invalid machine name/);
    assert.throws(() => unitNameFor(''), /invalid machine name/);
  });
});

describe("images/systemd-host.yaml (the test harness's systemd host)", () => {
  it('is a valid recipe with what a host for the systemd backend needs', async () => {
    const { loadRecipe, REQUIRED_PACKAGES } = await import('../../src/image/index.js');
    const r = loadRecipe('systemd-host');
    assert.equal(r.name, 'systemd-host');
    assert.equal(r.suite, 'bookworm');
    for (const p of [...REQUIRED_PACKAGES, 'systemd-container', 'btrfs-progs', 'tmux', 'procps', 'util-linux']) assert.ok(r.packages.includes(p), p);
    assert.equal(r.rootPasswordFile, undefined);
  });
});
