// The systemd backend, for real, on a machine whose PID 1 is not systemd: everything
// runs inside a booted "systemd host" container (test/support/systemd-host.ts) with
// systemd, the system bus and machined, where the lab's machines are nested nspawn
// machines booted from the shared bookworm test image.
//   (a) SystemdBackend directly: start, machinectl list/shell, info, execArgv, stop,
//       a failing start, a duplicate start.
// The nested machines boot the host's own bookworm image (HOST_DATA_DIR, see the harness
// for why not the shared test image).
//   (b) `labctl up|status|exec|shell|down --backend systemd` (src/cli/machines.ts), the
//       shell driven through tmux; an `up` killed while its machines boot, then `down`,
//       and then `up` again (the machines it left are found through machined).
//   (c) systemd/labctl@.service installed in the host: start/stop of the unit.
//   (d) the user's software in the machines (test/support/software-lab.ts): binds, files,
//       env, services, commands and a machine booting a second image; a service that does
//       not start fails `up`, which rolls back.
// Finally the host is stopped and the real host must be clean.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { MachineState } from '../../src/host/state.js';
import type { MachineInfo } from '../../src/machine/backend.js';
import { snapshotFromMountinfo } from '../../src/machine/snapshots.js';
import { loadUnitTemplate, unitProperties } from '../../src/machine/unit-template.js';
import {
  HOST_DATA_DIR,
  HOST_PROJECT,
  backendCall,
  execInHost,
  innerSnapshots,
  isClean,
  startHost,
  stopHost,
  type HostRunOptions,
  type LeakReport,
  type SystemdHost,
} from '../support/systemd-host.js';
import { driveShellInTmux } from '../support/tmux-shell.js';
import { ALT_IMAGE } from '../support/alt-image.js';
import { checkSoftwareLab, SOFTWARE_LAB_DIR, writeFailingServiceLab, writeSoftwareLab } from '../support/software-lab.js';
import { imagePaths } from '../../src/image/paths.js';
import { ROOT } from '../support/cli.js';

const isRoot = process.getuid?.() === 0;
const LABCTL = ['node', `${HOST_PROJECT}/bin/labctl.js`];
/** Run labctl inside the host from the TypeScript sources (dist/ may be older than the checkout). */
const LABCTL_ENV = { LABCTL_FROM_SOURCE: '1' };
const LAB_MACHINES = ['c0', 'c0-nat', 'c1', 'c1-nat'];
const LAB_NETNS = ['ns-c0', 'ns-c0-nat', 'ns-c1', 'ns-c1-nat', 'ns-inet'];
const SMOKE = 'sdsmoke';
const SMOKE_NETNS = 'ns-sdsmoke';

const _sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function hostRun(argv: string[], options: HostRunOptions = {}) {
  return execInHost(argv, { allowFailure: true, cwd: HOST_PROJECT, timeoutMs: 180_000, ...options, env: { ...LABCTL_ENV, ...(options.env ?? {}) } });
}

interface DriverReply<T> {
  ok: boolean;
  ms: number;
  result: T;
  name?: string;
  message?: string;
  consoleTail?: string;
}

/** One SystemdBackend call inside the host (a process of its own). */
async function backend<T>(method: string, arg?: unknown, extra: string[] = [], options: HostRunOptions = {}): Promise<DriverReply<T>> {
  const r = await hostRun(backendCall(method, arg, extra), options);
  const last = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(last) as DriverReply<T>;
  } catch {
    throw new Error(`backend ${method}: no reply (exit ${r.exitCode}):\n${r.stdout}\n${r.stderr}`);
  }
}

async function machinesListed(): Promise<string[]> {
  const r = await hostRun(['machinectl', 'list', '--no-legend', '--no-pager']);
  assert.equal(r.exitCode, 0, r.stderr);
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter(Boolean);
}

async function labctlUnits(): Promise<string[]> {
  const r = await hostRun(['systemctl', 'list-units', '--all', '--plain', '--no-legend', '--no-pager', 'labctl-*']);
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter(Boolean);
}

/** The inode of a network namespace file (an nsfs bind mount), or undefined. */
function nsIno(path: string): number | undefined {
  try {
    return statSync(path).ino;
  } catch {
    return undefined;
  }
}

describe('systemd backend inside a systemd host', { skip: !isRoot && 'needs root: boots a systemd host container and machines in it' }, () => {
  let h: SystemdHost;
  let report: LeakReport | undefined;

  before(
    async () => {
      const started = Date.now();
      h = await startHost();
      process.stderr.write(
        `# systemd host up in ${((Date.now() - started) / 1000).toFixed(1)} s (image build ${h.buildSeconds.toFixed(1)} s, boot ${h.bootSeconds.toFixed(1)} s, ${h.systemState})\n`,
      );
    },
    { timeout: 40 * 60_000 },
  );

  after(
    async () => {
      // Only if a test stopped early: the last test stops the host and checks.
      report ??= await stopHost();
    },
    { timeout: 120_000 },
  );

  it("boots systemd with the system bus and machined, the checkout at /project, node, and the machines' image", async () => {
    assert.match(h.systemState, /^(running|degraded)$/);
    const r = await hostRun(['systemctl', 'is-active', 'dbus.service']);
    assert.equal(r.stdout.trim(), 'active');
    const m = await hostRun(['busctl', 'call', 'org.freedesktop.machine1', '/org/freedesktop/machine1', 'org.freedesktop.machine1.Manager', 'ListMachines']);
    assert.equal(m.exitCode, 0, m.stderr);
    assert.equal((await hostRun(['node', '--version'])).stdout.trim(), process.version);
    assert.equal((await hostRun(['test', '-f', `${HOST_PROJECT}/src/machine/systemd.ts`])).exitCode, 0);
    assert.equal((await hostRun(['test', '-d', h.image.path])).exitCode, 0, "the machines' image is mounted inside");
    assert.deepEqual(innerSnapshots(), [], 'no machine snapshot yet');
    // Its /run is its own tmpfs: namespaces made inside never reach the real host's /run/netns.
    assert.equal((await hostRun(['findmnt', '-n', '-o', 'FSTYPE', '/run'])).stdout.trim(), 'tmpfs');
    const a = await backend<boolean>('available');
    assert.deepEqual([a.ok, a.result], [true, true], 'systemdAvailable() inside the host');
  });

  it('(a) SystemdBackend starts a machine, machined and machinectl see it, stop leaves nothing', { timeout: 10 * 60_000 }, async (t) => {
    const mk = await hostRun(['ip', 'netns', 'add', SMOKE_NETNS]);
    assert.equal(mk.exitCode, 0, mk.stderr);
    assert.ok(existsSync(`/proc/${h.leader}/root/run/netns/${SMOKE_NETNS}`), 'made inside the host');
    assert.ok(!existsSync(`/run/netns/${SMOKE_NETNS}`), 'not on the real host');
    const spec = {
      name: SMOKE,
      lab: 'sdtest',
      netns: SMOKE_NETNS,
      image: h.image.name,
      directory: h.image.path,
      readyTimeoutMs: 60_000,
      consoleLog: '/dev/null',
    };
    try {
      const started = await backend<MachineState>('start', spec);
      assert.ok(started.ok, `${started.message}\n${started.consoleTail}`);
      t.diagnostic(`start took ${started.ms} ms`);
      const state = started.result;
      assert.equal(state.backend, 'systemd');
      assert.equal(state.unit, `labctl-${SMOKE}.service`);
      assert.equal(state.directory, h.image.path);
      assert.equal(state.netns, SMOKE_NETNS);
      assert.ok(state.leaderPid && state.leaderPid > 1);
      assert.ok(!Number.isNaN(Date.parse(state.startedAt!)));

      assert.ok((await machinesListed()).includes(SMOKE), 'machinectl list shows it');
      // Every property labctl sent (by its D-Bus name) is one systemd has for the unit: a name
      // it does not know fails StartTransientUnit, one it knows under another name would be
      // missing here. And the values are the template's, as systemd reads them.
      const sent = unitProperties(
        loadUnitTemplate(),
        { machine: SMOKE, lab: 'sdtest', netns: SMOKE_NETNS, directory: h.image.path, image: h.image.name, readyTimeoutMs: '60000' },
        (name) => name,
      ).map((p) => p.name);
      const show = await hostRun(['systemctl', 'show', state.unit!, '-p', 'ActiveState', ...sent.flatMap((name) => ['-p', name])]);
      const shown = show.stdout.split('\n');
      for (const name of sent)
        assert.ok(
          shown.some((l) => l.startsWith(`${name}=`)),
          `${name} in:\n${show.stdout}`,
        );
      for (const line of [
        'ActiveState=active',
        `Description=labctl machine ${SMOKE} (lab sdtest)`,
        'CollectMode=inactive-or-failed',
        'Type=notify',
        'Slice=machine.slice',
        'Delegate=yes',
        'KillMode=mixed',
        'TimeoutStartUSec=1min',
        'TimeoutStopUSec=15s',
        'WatchdogUSec=3min',
        'SuccessExitStatus=133',
        'RestartForceExitStatus=133',
        'TasksMax=16384',
        'DevicePolicy=closed',
      ]) {
        assert.ok(shown.includes(line), `${line} in:\n${show.stdout}`);
      }
      const exec = await hostRun(['systemctl', 'show', state.unit!, '-p', 'ExecStart', '--value']);
      assert.match(exec.stdout, /systemd-nspawn --quiet --keep-unit --boot --ephemeral --notify-ready=yes --settings=no/);
      assert.ok(exec.stdout.includes(`--network-namespace-path=/run/netns/${SMOKE_NETNS}`));

      const shell = await hostRun(['machinectl', 'shell', `root@${SMOKE}`, '/bin/sh', '-c', 'echo hi']);
      assert.equal(shell.exitCode, 0, shell.stderr);
      assert.match(shell.stdout, /^hi\r?$/m);
      // labctl shell: machinectl shell with a wrapper that leaves the login shell's status in
      // the machine's /run, read through the leader's root (machinectl itself exits 0).
      const shellCommand = (await backend<{ argv: string[]; statusFile: string }>('shell-command', state)).result;
      assert.deepEqual(shellCommand.argv.slice(0, 4), ['machinectl', 'shell', `root@${SMOKE}`, '/bin/sh']);
      assert.equal(shellCommand.statusFile, `/proc/${state.leaderPid}/root/run/labctl-shell.${shellCommand.argv.at(-1)}.status`);

      const info = await backend<MachineInfo>('info', state);
      assert.ok(info.ok, info.message);
      assert.match(info.result.state, /^(running|degraded)$/);
      assert.equal(info.result.leaderPid, state.leaderPid);
      assert.equal(info.result.unit, state.unit);
      assert.ok(Math.abs(Date.parse(info.result.since!) - Date.parse(state.startedAt!)) < 10_000);
      assert.deepEqual(info.result.addresses, [], 'its namespace has no address');

      // execArgv: runs in the machine, stdout and exit code pass through.
      const argv = (await backend<string[]>('exec-argv', state, ['--', 'hostname'])).result;
      assert.deepEqual(argv.slice(0, 3), ['nsenter', '-t', String(state.leaderPid)]);
      assert.equal((await hostRun(argv)).stdout.trim(), SMOKE);
      const failing = (await backend<string[]>('exec-argv', state, ['--', 'sh', '-c', 'echo out; echo err >&2; exit 7'])).result;
      const f = await hostRun(failing);
      assert.deepEqual([f.exitCode, f.stdout.trim(), f.stderr.trim()], [7, 'out', 'err']);

      // A failed unit inside makes the machine degraded (its own systemd says so).
      const boom = (await backend<string[]>('exec-argv', state, ['--', 'systemd-run', '--wait', '--unit=labctl-e2e-boom', '/bin/false'])).result;
      await hostRun(boom);
      assert.equal((await backend<MachineInfo>('info', state)).result.state, 'degraded');

      // An open bus connection never keeps a process alive: this call does not close it.
      const open = await backend<MachineInfo>('info', state, ['--no-close'], { timeoutMs: 30_000 });
      assert.ok(open.ok && /^(running|degraded)$/.test(open.result.state), JSON.stringify(open));

      // A second start of the same machine is refused, and leaves the first alone.
      const dup = await backend<MachineState>('start', spec);
      assert.equal(dup.ok, false);
      assert.match(dup.message ?? '', /already registered with machined/);
      assert.match((await backend<MachineInfo>('info', state)).result.state, /^(running|degraded)$/);

      // The machine runs in an ephemeral snapshot beside the image's rootfs.
      const mountinfo = await hostRun(['cat', `/proc/${state.leaderPid}/mountinfo`]);
      const snapshot = snapshotFromMountinfo(mountinfo.stdout, h.image.path) ?? '';
      assert.ok(snapshot.startsWith(`${dirname(h.image.path)}/.#machine.`), `its / is a snapshot beside the rootfs: ${snapshot}`);
      assert.ok(innerSnapshots().includes(snapshot), `${snapshot} among ${innerSnapshots().join(' ')}`);

      const stopped = await backend<{ stopped: boolean }>('stop', state);
      assert.ok(stopped.ok, stopped.message);
      t.diagnostic(`stop took ${stopped.ms} ms`);
      assert.ok(!(await machinesListed()).includes(SMOKE), 'machinectl list no longer shows it');
      assert.deepEqual(await labctlUnits(), [], 'no unit left');
      assert.equal((await hostRun(['test', '-e', snapshot])).exitCode, 1, `its snapshot ${snapshot} is gone`);
      assert.deepEqual(innerSnapshots(), [], 'no .#machine.* snapshot left beside the rootfs');
      assert.equal((await backend<MachineInfo>('info', state)).result.state, 'gone');
      const again = await backend<{ stopped: boolean }>('stop', state);
      assert.ok(again.ok, `stop is idempotent: ${again.message}`);
      assert.ok(again.ms < 5_000);
      const execGone = await backend<string[]>('exec-argv', state, ['--', 'true']);
      assert.equal(execGone.ok, false);
      assert.match(execGone.message ?? '', /not running/);
    } finally {
      await backend('stop', { name: SMOKE, netns: SMOKE_NETNS, image: spec.image, directory: spec.directory, backend: 'systemd' });
      await hostRun(['ip', 'netns', 'delete', SMOKE_NETNS]);
    }
  });

  it('(a) a machine that does not boot in time fails with its last journal lines, leaving nothing', { timeout: 5 * 60_000 }, async (t) => {
    await hostRun(['ip', 'netns', 'add', SMOKE_NETNS]);
    try {
      // Under a boot: with the image in the page cache a machine here is ready within 100 ms
      // of its unit's start (a 100 ms or 200 ms timeout let it boot). Told to stop that
      // early, while nspawn or the machine's systemd is still setting up, the halt request
      // can be lost (the machine's systemd does not take signals yet): then the unit's stop
      // ends in SIGKILL and the snapshot must be removed by the backend.
      for (const readyTimeoutMs of [50, 30]) {
        const spec = { name: SMOKE, lab: 'sdtest', netns: SMOKE_NETNS, image: h.image.name, directory: h.image.path, readyTimeoutMs, consoleLog: '/dev/null' };
        const r = await backend<MachineState>('start', spec);
        t.diagnostic(`ready timeout ${readyTimeoutMs} ms: failed after ${r.ms} ms`);
        assert.equal(r.ok, false);
        assert.equal(r.name, 'MachineStartError');
        assert.match(r.message ?? '', new RegExp(`start job of labctl-sdsmoke\\.service ended with "failed".*: not booted within ${readyTimeoutMs} ms`));
        assert.match(r.message ?? '', /last console lines:/);
        assert.match(r.consoleTail ?? '', /start operation timed out/, 'the journal says why');
        assert.ok(!(await machinesListed()).includes(SMOKE));
        assert.deepEqual(await labctlUnits(), []);
        assert.deepEqual(innerSnapshots(), [], 'no snapshot left');
      }
      const missing = await backend<MachineState>('start', {
        name: SMOKE,
        lab: 'sdtest',
        netns: 'ns-sd-missing',
        image: h.image.name,
        directory: h.image.path,
        readyTimeoutMs: 60_000,
        consoleLog: '/dev/null',
      });
      assert.equal(missing.ok, false);
      assert.match(missing.message ?? '', /network namespace ns-sd-missing does not exist/);
    } finally {
      await backend('stop', { name: SMOKE, netns: SMOKE_NETNS, image: h.image.name, directory: h.image.path, backend: 'systemd' });
      await hostRun(['ip', 'netns', 'delete', SMOKE_NETNS]);
    }
  });

  it('(a) a hung machine is still stopped within the bound, and its snapshot removed', { timeout: 5 * 60_000 }, async (t) => {
    await hostRun(['ip', 'netns', 'add', SMOKE_NETNS]);
    const spec = {
      name: SMOKE,
      lab: 'sdtest',
      netns: SMOKE_NETNS,
      image: h.image.name,
      directory: h.image.path,
      readyTimeoutMs: 60_000,
      consoleLog: '/dev/null',
    };
    try {
      const started = await backend<MachineState>('start', spec);
      assert.ok(started.ok, started.message);
      const state = started.result;
      const snapshot = snapshotFromMountinfo((await hostRun(['cat', `/proc/${state.leaderPid}/mountinfo`])).stdout, h.image.path);
      assert.ok(snapshot);
      // Its systemd frozen: it can never power off, so nspawn never exits by itself.
      assert.equal((await hostRun(['kill', '-STOP', String(state.leaderPid)])).exitCode, 0);
      const stopped = await backend<{ stopped: boolean }>('stop', state, [], { timeoutMs: 120_000 });
      assert.ok(stopped.ok, stopped.message);
      t.diagnostic(`stop of a hung machine took ${stopped.ms} ms`);
      assert.ok(stopped.ms < 35_000, `bounded: ${stopped.ms} ms`);
      assert.ok(!(await machinesListed()).includes(SMOKE));
      assert.deepEqual(await labctlUnits(), []);
      assert.equal((await hostRun(['test', '-e', snapshot])).exitCode, 1, `the snapshot of the killed machine is removed: ${snapshot}`);
      assert.deepEqual(innerSnapshots(), []);
    } finally {
      await backend('stop', { name: SMOKE, netns: SMOKE_NETNS, image: spec.image, directory: spec.directory, backend: 'systemd' });
      await hostRun(['ip', 'netns', 'delete', SMOKE_NETNS]);
    }
  });

  it('(b) labctl up --backend systemd, status, exec, shell through tmux, down', { timeout: 15 * 60_000 }, async (t) => {
    const help = await hostRun([...LABCTL, 'up', '--help']);
    for (const opt of ['--backend', '--data-dir', '--image']) assert.ok(help.stdout.includes(opt), `labctl up --help lists ${opt}`);
    // A failed up rolls back through the backend: machines that did not boot in time.
    const failed = await hostRun([...LABCTL, 'up', '--backend', 'systemd', '--image', 'bookworm', '--data-dir', HOST_DATA_DIR, '--timeout', '0.05']);
    assert.notEqual(failed.exitCode, 0, failed.stdout);
    assert.match(failed.stderr, /rolled back/);
    assert.match(failed.stderr, /not booted within 50 ms/);
    assert.deepEqual(await machinesListed(), [], 'the rollback left no machine');
    assert.deepEqual(await labctlUnits(), [], 'the rollback left no unit');
    assert.deepEqual(innerSnapshots(), [], 'the rollback left no snapshot');

    const startedAt = Date.now();
    try {
      const up = await hostRun([...LABCTL, 'up', '--backend', 'systemd', '--image', 'bookworm', '--data-dir', HOST_DATA_DIR]);
      assert.equal(up.exitCode, 0, `${up.stdout}\n${up.stderr}`);
      t.diagnostic(`labctl up took ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
      assert.match(up.stdout, /is up: 4 machines \(systemd backend\)/);
      assert.deepEqual((await machinesListed()).sort(), [...LAB_MACHINES].sort());
      assert.deepEqual((await labctlUnits()).sort(), LAB_MACHINES.map((m) => `labctl-${m}.service`).sort());

      // The lab's namespaces are the host's own: a real-host namespace of the same name
      // (another test's) must be a different namespace.
      const inside = readdirSync(`/proc/${h.leader}/root/run/netns`).sort();
      assert.deepEqual(inside, [...LAB_NETNS].sort());
      for (const n of LAB_NETNS) {
        const mine = nsIno(`/proc/${h.leader}/root/run/netns/${n}`);
        const real = nsIno(`/run/netns/${n}`);
        assert.ok(mine !== undefined && mine !== real, `${n} is the host's own namespace`);
      }

      const st = await hostRun([...LABCTL, 'status', '--json']);
      assert.equal(st.exitCode, 0, st.stderr);
      const labs = JSON.parse(st.stdout) as { lab: string; machines: { name: string; state: string; backend: string; addresses: string[] }[] }[];
      const article = labs.find((l) => l.lab === 'article');
      assert.ok(article);
      for (const m of article.machines) {
        assert.equal(m.backend, 'systemd', m.name);
        assert.match(m.state, /^(running|degraded)$/, m.name);
      }
      assert.ok(article.machines.find((m) => m.name === 'c1-nat')?.addresses.includes('100.64.2.100'));

      const ex = await hostRun([...LABCTL, 'exec', 'c0', '--', 'sh', '-c', 'hostname; exit 3']);
      assert.deepEqual([ex.exitCode, ex.stdout.trim()], [3, 'c0']);

      // labctl shell c1-nat (machinectl shell) in a terminal: tmux inside the host. A
      // prompt, a command, resize, Ctrl-C, and `exit 7` making labctl exit 7.
      await driveShellInTmux((argv) => hostRun(argv), [...LABCTL, 'shell', 'c1-nat'], {
        socket: 'labctl-e2e',
        connected: /Connected to machine c1-nat/,
        probe: 'ip -o -4 addr show ve-c1-nat-inet',
        expect: /ve-c1-nat-inet\s+inet 100\.64\.2\.100\/24/,
      });

      const down = await hostRun([...LABCTL, 'down']);
      assert.equal(down.exitCode, 0, `${down.stdout}\n${down.stderr}`);
      assert.match(down.stdout, /stopped 4 machines/);
    } finally {
      // Whatever happened: nothing of the lab may stay (down is idempotent).
      await hostRun([...LABCTL, 'down']);
    }
    assert.deepEqual(await machinesListed(), [], 'no machine left');
    assert.deepEqual(await labctlUnits(), [], 'no unit left');
    let netnsLeft: string[] = [];
    try {
      netnsLeft = readdirSync(`/proc/${h.leader}/root/run/netns`);
    } catch {
      /* no /run/netns at all */
    }
    assert.deepEqual(netnsLeft, [], 'no namespace left in the host');
    assert.equal((await hostRun(['test', '-e', '/run/labctl/article.json'])).exitCode, 1, 'no state file left');
    assert.deepEqual(innerSnapshots(), [], 'no snapshot left');
  });

  it('(b) SIGKILL of up while machines boot (machined knows one, the state file none): down stops them, and so does the next up before it starts afresh', {
    timeout: 10 * 60_000,
  }, async (t) => {
    // The kill comes from a shell in the host, once that point is reached (not after a
    // guessed delay): a machine of the lab registered, none recorded in the state file.
    const upKilledWhileBooting = async (): Promise<void> => {
      const script = [
        '"$@" >/dev/null 2>&1 & up=$!',
        'for i in $(seq 1 1200); do',
        '  if machinectl show c0 >/dev/null 2>&1 && ! grep -qs \'"machines"\' /run/labctl/article.json; then kill -9 "$up"; echo killed; exit 0; fi',
        '  sleep 0.05',
        'done',
        'kill -9 "$up"; echo "not reached"',
      ].join('\n');
      const r = await hostRun(['sh', '-c', script, 'up-killed', ...LABCTL, 'up', '--backend', 'systemd', '--image', 'bookworm', '--data-dir', HOST_DATA_DIR]);
      assert.equal(r.stdout.trim(), 'killed', `up was killed while its machines booted: ${r.stdout}${r.stderr}`);
      assert.ok((await machinesListed()).length > 0, 'its machines go on booting without it');
    };
    const assertClean = async (what: string) => {
      assert.deepEqual(await machinesListed(), [], `${what}: no machine left`);
      assert.deepEqual(await labctlUnits(), [], `${what}: no unit left`);
      assert.deepEqual(innerSnapshots(), [], `${what}: no snapshot left`);
      assert.equal((await hostRun(['test', '-e', '/run/labctl/article.json'])).exitCode, 1, `${what}: no state file left`);
    };
    try {
      await upKilledWhileBooting();
      const down = await hostRun([...LABCTL, 'down']);
      assert.equal(down.exitCode, 0, `${down.stdout}\n${down.stderr}`);
      t.diagnostic(down.stdout.trim());
      await assertClean('down after up was killed');

      await upKilledWhileBooting();
      const up = await hostRun([...LABCTL, 'up', '--backend', 'systemd', '--image', 'bookworm', '--data-dir', HOST_DATA_DIR]);
      assert.equal(up.exitCode, 0, `${up.stdout}\n${up.stderr}`);
      assert.deepEqual((await machinesListed()).sort(), [...LAB_MACHINES].sort(), 'one of each machine');
      const down2 = await hostRun([...LABCTL, 'down']);
      assert.equal(down2.exitCode, 0, `${down2.stdout}\n${down2.stderr}`);
      assert.match(down2.stdout, /stopped 4 machines/);
    } finally {
      await hostRun([...LABCTL, 'down']);
    }
    await assertClean('up again, then down');
  });

  it('(c) systemd/labctl@.service, installed as its comments say, brings the lab up and down', { timeout: 10 * 60_000 }, async () => {
    const ok = async (argv: string[], options: HostRunOptions = {}) => {
      const r = await hostRun(argv, options);
      assert.equal(r.exitCode, 0, `${argv.join(' ')}: ${r.stdout}\n${r.stderr}`);
      return r;
    };
    await ok(['install', '-m', '0644', `${HOST_PROJECT}/systemd/labctl@.service`, '/etc/systemd/system/']);
    // labctl "installed" as /usr/local/bin/labctl; the drop-in only points it at the test's
    // data dir and at the sources (dist/ may be older than the checkout).
    await ok(['ln', '-sf', `${HOST_PROJECT}/bin/labctl.js`, '/usr/local/bin/labctl']);
    await ok(['mkdir', '-p', '/etc/systemd/system/labctl@.service.d']);
    await ok(['tee', '/etc/systemd/system/labctl@.service.d/test.conf'], {
      input: `[Service]\nEnvironment=LABCTL_DATA_DIR=${HOST_DATA_DIR} LABCTL_FROM_SOURCE=1\n`,
    });
    // The article's lab as a lab file of the host's own (the unit's documented second form):
    // it boots noble, and the host has the bookworm image, so this copy names bookworm.
    const article = readFileSync(join(ROOT, 'machines', 'article.yaml'), 'utf8').replace(/^image: noble$/m, 'image: bookworm');
    await ok(['mkdir', '-p', '/etc/labctl']);
    await ok(['tee', '/etc/labctl/article.yaml'], { input: article });
    const unit = `labctl@${(await ok(['systemd-escape', '--path', '/etc/labctl/article.yaml'])).stdout.trim()}.service`;
    await ok(['systemctl', 'daemon-reload']);
    try {
      await ok(['systemctl', 'start', unit], { timeoutMs: 300_000 });
      assert.equal((await hostRun(['systemctl', 'is-active', unit])).stdout.trim(), 'active');
      assert.deepEqual((await machinesListed()).sort(), [...LAB_MACHINES].sort());
      const st = await ok([...LABCTL, 'status', '--json']);
      assert.ok((JSON.parse(st.stdout) as { machines: { backend: string }[] }[])[0]?.machines.every((m) => m.backend === 'systemd'));
      await ok(['systemctl', 'stop', unit], { timeoutMs: 300_000 });
      assert.deepEqual(await machinesListed(), []);
      assert.deepEqual(await labctlUnits(), []);
    } finally {
      await hostRun(['systemctl', 'stop', unit]);
      await hostRun([...LABCTL, 'down']);
      await hostRun(['rm', '-rf', '/etc/systemd/system/labctl@.service', '/etc/systemd/system/labctl@.service.d', '/usr/local/bin/labctl', '/etc/labctl']);
      await hostRun(['systemctl', 'daemon-reload']);
    }
    assert.deepEqual(innerSnapshots(), []);
  });

  it('(d) software in the machines: binds, files, env, services, commands, a second image; a service that does not start', {
    timeout: 10 * 60_000,
  }, async (t) => {
    // The harness built the second image into the host's data dir and pinned it there (as `labctl image mount`).
    const altMount = imagePaths(HOST_DATA_DIR, ALT_IMAGE).mountDir;
    const up = ['--backend', 'systemd', '--data-dir', HOST_DATA_DIR];
    try {
      const r = await hostRun([...LABCTL, 'up', writeSoftwareLab(), ...up]);
      assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
      t.diagnostic(r.stdout.trim().split('\n').pop() ?? '');
      const st = await hostRun([...LABCTL, 'status', 'software', '--json']);
      assert.equal(st.exitCode, 0, st.stderr);
      await checkSoftwareLab((machine, argv) => hostRun([...LABCTL, 'exec', machine, '--', ...argv]), st.stdout);
      // The unit's nspawn has the machine's own options (the template's {machineArgs}).
      const exec = await hostRun(['systemctl', 'show', 'labctl-sw-server.service', '-p', 'ExecStart', '--value']);
      assert.ok(exec.stdout.includes(`--bind-ro=${SOFTWARE_LAB_DIR}/build:/opt/app`), exec.stdout);
      assert.ok(exec.stdout.includes('--bind-ro=/run/labctl/software/machines/sw-server/units:/run/systemd/system.attached'), exec.stdout);
      const logs = await hostRun([...LABCTL, 'logs', 'sw-server', 'args']);
      assert.match(logs.stdout, /args-started/);
    } finally {
      await hostRun([...LABCTL, 'down', 'software']);
    }
    assert.deepEqual(await machinesListed(), [], 'no machine left');
    assert.equal((await hostRun(['findmnt', altMount])).exitCode, 0, `${ALT_IMAGE} stays: mounted by hand (pinned)`);

    const failed = await hostRun([...LABCTL, 'up', writeFailingServiceLab(`${SOFTWARE_LAB_DIR}/fail/lab.yaml`), ...up]);
    assert.equal(failed.exitCode, 1, failed.stdout + failed.stderr);
    assert.match(failed.stderr, /machine swf-box: service bad did not start/);
    assert.match(failed.stderr, /bad-service-says-why/);
    assert.match(failed.stderr, /rolled back/);
    assert.deepEqual(await machinesListed(), [], 'the rollback left no machine');
    assert.deepEqual(await labctlUnits(), [], 'the rollback left no unit');
    assert.deepEqual(innerSnapshots(), [], 'the rollback left no snapshot');
  });

  it('stopping the host leaves nothing on the real host', { timeout: 120_000 }, async (t) => {
    const started = Date.now();
    report = await stopHost();
    t.diagnostic(`stopped in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    assert.ok(isClean(report), `left on the real host: ${JSON.stringify(report, null, 2)}`);
    assert.ok(!existsSync(`/proc/${h.nspawnPid}`), 'nspawn is gone');
    assert.ok(!existsSync(`/proc/${h.holderPid}`), 'the mount namespace holder is gone');
  });
});
