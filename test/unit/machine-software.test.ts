// A machine's software as the machine layer makes it (src/machine/software.ts, nspawn.ts):
// the nspawn options both backends add, the unit files written for the machine (and what
// systemd-analyze verify says of them), the generated directory, and how a service's state
// is judged. No root, no machine: test/e2e/machine-software.test.ts boots them.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import type { MachineSoftware } from '../../src/lab/model.js';
import { journalctlArgs } from '../../src/cli/logs.js';
import { bindPath, machineArgs, nspawnArgs } from '../../src/machine/nspawn.js';
import {
  FILES_UNIT,
  SERVICES_TARGET,
  filesUnit,
  parseShow,
  prepareSoftwareDir,
  serviceProblem,
  serviceUnit,
  servicesTarget,
  unitWord,
} from '../../src/machine/software.js';
import { loadUnitTemplate, unitProperties } from '../../src/machine/unit-template.js';
import { whichExecutable } from '../../src/util/process.js';

// biome-ignore lint/suspicious/noTemplateCurlyInString: a literal ${PORT}, which systemd must not expand
const VAR = '${PORT}';
const none: MachineSoftware = { binds: [], files: [], env: {}, services: [], commands: [] };
const SOFTWARE: MachineSoftware = {
  ...none,
  binds: [
    { from: '/home/me/build', to: '/opt/app', readonly: true },
    { from: '/srv/a:b', to: '/data', readonly: false },
  ],
  files: [
    { path: '/etc/app.conf', content: 'port 80\n', mode: 0o600 },
    { path: '/usr/local/bin/my tool', from: '/home/me/tool.sh', mode: 0o755 },
  ],
  env: { GREETING: 'hello "world" 100% $HOME', PORT: '8080' },
  services: [
    { name: 'app', command: ['/opt/app/server', '--greeting', 'a b', VAR, '50%', 'back\\slash', 'quo"te', 'new\nline'], restart: 'on-failure' },
    { name: 'echo', command: ['socat', 'UDP-LISTEN:9,fork', 'EXEC:cat'], restart: 'always' },
  ],
};
const DIR = '/run/labctl/lab1/machines/dev';

describe('the nspawn options of a machine with software', () => {
  it('binds the lab file paths (read-only where asked), escaping ":", then the generated directory twice, read-only', () => {
    assert.deepEqual(machineArgs({ software: SOFTWARE, softwareDir: DIR }), [
      '--bind-ro=/home/me/build:/opt/app',
      '--bind=/srv/a\\:b:/data',
      `--bind-ro=${DIR}:/run/labctl`,
      `--bind-ro=${DIR}/units:/run/systemd/system.attached`,
    ]);
    assert.equal(bindPath('a\\b:c'), 'a\\\\b\\:c');
  });

  it('adds nothing for a machine without software, and only the binds for one with neither files nor services', () => {
    assert.deepEqual(machineArgs({}), []);
    assert.deepEqual(machineArgs({ software: none, softwareDir: DIR }), []);
    assert.deepEqual(machineArgs({ software: { ...none, binds: SOFTWARE.binds, commands: [['true']] }, softwareDir: DIR }), [
      '--bind-ro=/home/me/build:/opt/app',
      '--bind=/srv/a\\:b:/data',
    ]);
  });

  it('are the same on both backends: the direct command line ends with them, the unit template puts them where {machineArgs} stands', () => {
    const spec = { name: 'dev', netns: 'ns-dev', directory: '/img/rootfs', software: SOFTWARE, softwareDir: DIR };
    const direct = nspawnArgs(spec);
    const exec = unitProperties(
      loadUnitTemplate(),
      { machine: 'dev', lab: 'lab1', netns: 'ns-dev', directory: '/img/rootfs', image: 'bookworm', readyTimeoutMs: '1000', machineArgs: machineArgs(spec) },
      (n) => n,
    ).find((p) => p.name === 'ExecStart')!;
    const [[, unitArgv]] = exec.value as [[string, string[], boolean]];
    assert.deepEqual(
      direct.filter((a) => a !== '--register=no'),
      unitArgv,
    );
    assert.deepEqual(direct.slice(-4), machineArgs(spec));
  });

  it('every option is one systemd-nspawn knows', () => {
    const help = spawnSync('systemd-nspawn', ['--help'], { encoding: 'utf8' });
    const known = new Set(help.stdout.match(/--[a-z-]+/g));
    for (const a of machineArgs({ software: SOFTWARE, softwareDir: DIR })) assert.ok(known.has(a.split('=')[0]!), a);
  });
});

describe('unit files for the machine', () => {
  it('quote every word so that systemd reads it back as written: escapes, %% and $$', () => {
    assert.equal(unitWord('plain'), '"plain"');
    assert.equal(unitWord('a b'), '"a b"');
    assert.equal(unitWord(`${VAR} 50%`), `"$${VAR} 50%%"`);
    assert.equal(unitWord(`${VAR} 50%`, 'value'), `"${VAR} 50%%"`, 'no variables in Environment=');
    assert.equal(unitWord('back\\slash "q"'), '"back\\\\slash \\"q\\""');
    assert.equal(unitWord('new\nline\ttab\x01'), '"new\\nline\\ttab\\x01"');
    assert.equal(unitWord('-leading'), '"-leading"', 'a quoted first word carries no "-" prefix');
  });

  it('a service: Type=exec, its argv, its restart policy, the env, after the files', () => {
    const text = serviceUnit(SOFTWARE.services[0]!, SOFTWARE, 'dev', 'lab1');
    assert.match(text, /^Description=labctl service app \(machine dev, lab lab1\)$/m);
    assert.match(text, /^After=labctl-files\.service$/m);
    assert.match(text, /^Type=exec$/m);
    assert.match(text, /^Restart=on-failure$/m);
    assert.ok(text.includes('ExecStart="/opt/app/server" "--greeting" "a b" "$${PORT}" "50%%" "back\\\\slash" "quo\\"te" "new\\nline"\n'), text);
    assert.ok(text.includes('Environment="GREETING=hello \\"world\\" 100%% $HOME"\n'), text);
    assert.ok(text.includes('Environment="PORT=8080"\n'));
    assert.doesNotMatch(serviceUnit(SOFTWARE.services[1]!, { ...SOFTWARE, files: [] }, 'dev', 'lab1'), /After=/);
  });

  it('the target wants and waits for every service; the files unit installs each file with its mode before sysinit', () => {
    assert.match(servicesTarget(SOFTWARE, 'dev', 'lab1'), /^Wants=app\.service echo\.service\nAfter=app\.service echo\.service$/m);
    const files = filesUnit(SOFTWARE, 'dev', 'lab1');
    assert.match(files, /^DefaultDependencies=no$/m);
    assert.match(files, /^Before=sysinit\.target$/m);
    assert.match(files, /^Type=oneshot$/m);
    assert.ok(files.includes('ExecStart="install" "-D" "-m" "0600" "-T" "/run/labctl/files/0" "/etc/app.conf"\n'), files);
    assert.ok(files.includes('ExecStart="install" "-D" "-m" "0755" "-T" "/run/labctl/files/1" "/usr/local/bin/my tool"\n'), files);
  });

  it('systemd-analyze verify takes them (syntax, keys, sections, dependencies)', () => {
    const analyze = whichExecutable('systemd-analyze');
    assert.ok(analyze, 'systemd-analyze (systemd) is missing');
    const dir = mkdtempSync(join(tmpdir(), 'labctl-units-'));
    try {
      // verify looks the programs up on this host: ones it has.
      const software: MachineSoftware = {
        ...SOFTWARE,
        services: SOFTWARE.services.map((s) => ({ ...s, command: ['/bin/sh', ...s.command.slice(1)] })),
      };
      const units: [string, string][] = [
        [FILES_UNIT, filesUnit(software, 'dev', 'lab1')],
        [SERVICES_TARGET, servicesTarget(software, 'dev', 'lab1')],
        ...software.services.map((s): [string, string] => [`${s.name}.service`, serviceUnit(s, software, 'dev', 'lab1')]),
      ];
      for (const [name, text] of units) writeFileSync(join(dir, name), text);
      const r = spawnSync(analyze, ['verify', '--man=no', ...units.map(([name]) => join(dir, name))], { encoding: 'utf8' });
      const ours = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => units.some(([name]) => l.includes(name)));
      assert.deepEqual(ours, [], r.stderr);
      assert.equal(r.status, 0, r.stderr);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the generated directory', () => {
  const root = mkdtempSync(join(tmpdir(), 'labctl-swdir-'));
  after(() => rmSync(root, { recursive: true, force: true }));

  it('holds the files (from: copied at up), the units and the sysinit link, written afresh', () => {
    const tool = join(root, 'tool.sh');
    writeFileSync(tool, '#!/bin/sh\necho tool\n');
    const dir = join(root, 'dev');
    const software = { ...SOFTWARE, files: [SOFTWARE.files[0]!, { ...SOFTWARE.files[1]!, from: tool }] };
    prepareSoftwareDir({ name: 'dev', lab: 'lab1', software, softwareDir: dir });
    writeFileSync(join(dir, 'stale'), 'x');
    prepareSoftwareDir({ name: 'dev', lab: 'lab1', software, softwareDir: dir });
    assert.ok(!existsSync(join(dir, 'stale')), 'written afresh');
    assert.equal(readFileSync(join(dir, 'files', '0'), 'utf8'), 'port 80\n');
    assert.equal(readFileSync(join(dir, 'files', '1'), 'utf8'), '#!/bin/sh\necho tool\n');
    assert.equal(statSync(join(dir, 'files')).mode & 0o777, 0o700, 'root-only: the contents may be secrets');
    for (const unit of [FILES_UNIT, SERVICES_TARGET, 'app.service', 'echo.service']) assert.ok(existsSync(join(dir, 'units', unit)), unit);
    assert.equal(readlinkSync(join(dir, 'units', 'sysinit.target.wants', FILES_UNIT)), `../${FILES_UNIT}`);
  });

  it('is not made for a machine without files or services; a missing from: fails the start with its path', () => {
    const dir = join(root, 'none');
    prepareSoftwareDir({ name: 'x', lab: 'lab1', software: { ...none, commands: [['true']] }, softwareDir: dir });
    assert.ok(!existsSync(dir));
    assert.throws(
      () =>
        prepareSoftwareDir({ name: 'x', lab: 'lab1', software: { ...none, files: [{ path: '/a', from: join(root, 'gone'), mode: 0o644 }] }, softwareDir: dir }),
      /machine x: cannot read .*gone for \/a/,
    );
  });
});

describe("a service's state, as systemctl show says it", () => {
  const show = (props: Record<string, string>) =>
    parseShow(
      Object.entries({
        Id: 'app.service',
        LoadState: 'loaded',
        ActiveState: 'active',
        SubState: 'running',
        Result: 'success',
        NRestarts: '0',
        ExecMainCode: '0',
        ExecMainStatus: '0',
        ...props,
      })
        .map(([k, v]) => `${k}=${v}`)
        .join('\n'),
    )[0]!;

  it('running, or finished well without restarts: started', () => {
    assert.equal(serviceProblem(show({})), undefined);
    assert.equal(serviceProblem(show({ ActiveState: 'inactive', SubState: 'dead', ExecMainCode: '1' })), undefined);
  });

  it('failed, restarting, restarted, stopped with an error, or not loaded: not started, and why', () => {
    assert.equal(
      serviceProblem(show({ ActiveState: 'failed', SubState: 'failed', Result: 'exit-code', ExecMainCode: '1', ExecMainStatus: '3', NRestarts: '5' })),
      'it failed (exit-code, exit status 3, after 5 restarts)',
    );
    assert.match(
      serviceProblem(show({ ActiveState: 'activating', SubState: 'auto-restart', NRestarts: '2', ExecMainCode: '1', ExecMainStatus: '1' }))!,
      /keeps exiting/,
    );
    assert.match(serviceProblem(show({ NRestarts: '1' }))!, /keeps exiting and being restarted \(1 restarts/);
    assert.equal(serviceProblem(show({ ActiveState: 'inactive', Result: 'signal', ExecMainCode: '2', ExecMainStatus: '9' })), 'it stopped (signal, signal 9)');
    assert.equal(serviceProblem(show({ LoadState: 'bad-setting' })), 'its unit did not load (bad-setting)');
  });

  it('reads one block per unit, in order', () => {
    const two = parseShow('Id=a.service\nActiveState=active\n\nId=b.service\nActiveState=failed\n');
    assert.deepEqual(
      two.map((s) => [s.Id, s.ActiveState]),
      [
        ['a.service', 'active'],
        ['b.service', 'failed'],
      ],
    );
  });
});

describe('labctl logs: what journalctl runs in the machine', () => {
  it('a bare service name is NAME.service; lines and follow as asked', () => {
    assert.deepEqual(journalctlArgs('echo', { follow: true, lines: '5' }), [
      'journalctl',
      '--no-pager',
      '--output',
      'short-precise',
      '--unit',
      'echo.service',
      '--lines',
      '5',
      '--follow',
    ]);
    assert.deepEqual(journalctlArgs('nftables.service', {}).slice(-2), ['--unit', 'nftables.service']);
    assert.deepEqual(journalctlArgs(undefined, {}), ['journalctl', '--no-pager', '--output', 'short-precise']);
    assert.throws(() => journalctlArgs(undefined, { lines: 'ten' }), /--lines must be a whole number/);
  });
});
