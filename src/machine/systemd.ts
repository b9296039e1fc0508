// The systemd backend: each machine is a transient service labctl-MACHINE.service
// (systemd-nspawn --keep-unit --boot --ephemeral ...) started over D-Bus and registered
// with machined, so machinectl, journalctl -u and systemctl see the lab's machines like
// any other. Used where systemd is PID 1 and the system bus answers (systemdAvailable()
// in systemd-bus.ts).
//
// The unit's properties come from systemd/labctl-machine.unit-properties, read at every
// start (unit-template.ts); the bus calls are systemd-bus.ts's, the snapshot bookkeeping
// snapshots.ts's, a failed start's journal lines journal.ts's.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import type { MachineState } from '../host/state.js';
import { NETNS_DIR } from '../host/netns.js';
import { run } from '../exec/run.js';
import { sleep } from '../util/process.js';
import { MachineStartError, nsenterArgv, type MachineBackend, type MachineInfo, type MachineSpec, type ShellCommand } from './backend.js';
import { Variant, systemBus, type DBusMessage, type SystemBus } from './dbus.js';
import { journalTail } from './journal.js';
import { machineArgs } from './nspawn.js';
import { nspawnDirectory, nspawnPidsIn } from './proc.js';
import { prepareSoftwareDir } from './software.js';
import { orphanSnapshotsSince, removeSnapshot, snapshotHeldBy, snapshotNames, snapshotOf } from './snapshots.js';
import {
  MACHINED,
  MACHINED_PATH,
  MACHINE_MANAGER,
  MANAGER,
  SYSTEMD,
  SYSTEMD_PATH,
  getMachine,
  ignoring,
  listMachines,
  machineAddresses,
  serviceMainPid,
  serviceResult,
  subscribeJobs,
  unitActiveState,
  type MachineProps,
} from './systemd-bus.js';
import { unitNameFor } from './unit-name.js';
import { loadUnitTemplate, unitProperties, type UnitProperty } from './unit-template.js';

/** How long stop() waits for a terminated machine to go before it kills the unit (SIGKILL). */
const STOP_WAIT_MS = 15_000;
/** How long after KillUnit(SIGKILL) the unit may take to go. */
const STOP_FALLBACK_MS = 8_000;
/** A machine that failed to start gets this long to power off before SIGKILL. */
const FAILED_START_GRACE_MS = 3_000;
/** Our own bound on a start job, beyond the unit's TimeoutStartSec (which ends it first). */
const START_GRACE_MS = 30_000;
const POLL_MS = 100;

const toVariants = (props: UnitProperty[]) => props.map((p) => [p.name, new Variant(p.signature, p.value)]);

/** The snapshot of the nspawn that is the unit's main process (see snapshotHeldBy). */
async function snapshotOfUnit(bus: SystemBus, unit: string, directory: string): Promise<string | undefined> {
  return snapshotHeldBy(await serviceMainPid(bus, unit), directory);
}

/** Runs in the machine under machinectl shell: root's login shell, then its status to /run ($1: a token labctl chose). */
const SHELL_WRAPPER = '/bin/bash --login; s=$?; echo "$s" >"/run/labctl-shell.$1.status"; exit "$s"';

export class SystemdBackend implements MachineBackend {
  readonly name = 'systemd' as const;

  async start(spec: MachineSpec): Promise<MachineState> {
    const unit = unitNameFor(spec.name);
    const netnsPath = `${NETNS_DIR}/${spec.netns}`;
    if (!existsSync(netnsPath)) throw new MachineStartError(spec.name, `network namespace ${spec.netns} does not exist (${netnsPath})`);
    if (!existsSync(spec.directory))
      throw new MachineStartError(spec.name, `image directory ${spec.directory} does not exist (is image ${spec.image} mounted?)`);
    prepareSoftwareDir(spec);
    const props = unitProperties(loadUnitTemplate(), {
      machine: spec.name,
      lab: spec.lab,
      netns: spec.netns,
      directory: spec.directory,
      image: spec.image,
      readyTimeoutMs: String(Math.max(1, Math.round(spec.readyTimeoutMs))),
      machineArgs: machineArgs(spec),
    });
    const bus = systemBus();
    return bus.busy(async () => {
      await subscribeJobs(bus);
      const existing = await getMachine(bus, spec.name);
      if (existing) {
        throw new MachineStartError(
          spec.name,
          `a machine of this name is already registered with machined (unit ${existing.unit || '?'}, leader ${existing.leader}); stop it first`,
        );
      }
      const before = await unitActiveState(bus, unit);
      if (before === 'failed' || before === 'inactive')
        await ignoring(['NoSuchUnit'], () => bus.call(SYSTEMD, SYSTEMD_PATH, MANAGER, 'ResetFailedUnit', 's', [unit]));
      else if (before) throw new MachineStartError(spec.name, `unit ${unit} is already ${before}; stop it first (systemctl stop ${unit})`);

      const startedAt = new Date();
      const snapshotsBefore = snapshotNames(spec.directory);
      // Listen before starting: the job may end before StartTransientUnit's reply arrives.
      const removed = new Map<string, string>();
      let wake: (() => void) | undefined;
      const offSignal = bus.onSignal((msg: DBusMessage) => {
        if (msg.interface !== MANAGER || msg.member !== 'JobRemoved' || msg.path !== SYSTEMD_PATH) return;
        const [, job, u, result] = msg.body as [number, string, string, string];
        if (u !== unit) return;
        removed.set(job, result);
        wake?.();
      });
      let failure: string | undefined;
      let snapshot: string | undefined;
      try {
        let job: string;
        // Checked right before the call goes out: a rollback's later stop() by name, on this
        // same connection, reaches systemd after it and so finds (and stops) the unit.
        if (spec.signal?.aborted) throw new MachineStartError(spec.name, 'not started: up is being rolled back');
        try {
          [job] = (await bus.call(SYSTEMD, SYSTEMD_PATH, MANAGER, 'StartTransientUnit', 'ssa(sv)a(sa(sv))', [unit, 'fail', toVariants(props), []])) as [string];
        } catch (e) {
          throw new MachineStartError(spec.name, `systemd refused to start ${unit}: ${(e as Error).message}`);
        }
        // Meanwhile, note which snapshot its nspawn made: if the start fails, the unit's stop
        // may end in SIGKILL (a machine told to halt before its systemd can take the
        // signal never halts), and then the snapshot is ours to remove.
        let finished = false;
        const watch = (async () => {
          while (!finished && !snapshot) {
            snapshot = await snapshotOfUnit(bus, unit, spec.directory);
            if (!snapshot) await sleep(200);
          }
        })();
        const result = await new Promise<string>((resolve, reject) => {
          const deadline = setTimeout(() => finish(() => resolve('timeout (labctl)')), spec.readyTimeoutMs + START_GRACE_MS);
          const offFail = bus.onFailure((e) => finish(() => reject(e)));
          const finish = (fn: () => void) => {
            clearTimeout(deadline);
            offFail();
            wake = undefined;
            finished = true;
            fn();
          };
          wake = () => {
            const r = removed.get(job);
            if (r !== undefined) finish(() => resolve(r));
          };
          wake();
        });
        await watch;
        if (result !== 'done') {
          // The job says only "failed"; the service's Result says why (while the unit is still loaded).
          const why = await serviceResult(bus, unit);
          // Unloaded already (CollectMode): a job that failed after the whole timeout timed out.
          const timedOut = why === 'timeout' || result === 'timeout' || (why === undefined && Date.now() - startedAt.getTime() >= spec.readyTimeoutMs);
          failure = `the start job of ${unit} ended with "${result}"${why && why !== 'success' ? ` (service result: ${why})` : ''}${timedOut ? `: not booted within ${spec.readyTimeoutMs} ms` : ''}`;
        }
      } finally {
        offSignal();
      }
      let machine: MachineProps | undefined;
      if (!failure) {
        machine = await getMachine(bus, spec.name);
        if (!machine) failure = `${unit} started but machined has no machine ${spec.name}`;
        else if (machine.unit !== unit) failure = `machine ${spec.name} is registered for unit ${machine.unit}, not ${unit}`;
      }
      if (failure || !machine) {
        const tail = await journalTail(unit, startedAt);
        try {
          // A machine that failed to start has nothing worth a clean shutdown: a short grace, then SIGKILL.
          await this.removeUnit(bus, spec.name, unit, spec.directory, { ...(snapshot ? { knownSnapshot: snapshot } : {}), graceMs: FAILED_START_GRACE_MS });
          // An nspawn told to stop in its first moments can die before it set up its
          // signal handling, leaving a snapshot no one saw (and no lock holder).
          for (const orphan of orphanSnapshotsSince(spec.directory, snapshotsBefore))
            await removeSnapshot(orphan, `remove the snapshot of machine ${spec.name}`);
        } catch (e) {
          failure = `${failure ?? 'did not start'}; removing what it left also failed: ${(e as Error).message}`;
        }
        throw new MachineStartError(spec.name, failure ?? 'did not start', tail);
      }
      return {
        name: spec.name,
        netns: spec.netns,
        image: spec.image,
        directory: spec.directory,
        backend: 'systemd',
        unit,
        leaderPid: machine.leader,
        startedAt: startedAt.toISOString(),
        ...(spec.software && Object.keys(spec.software.env).length ? { env: spec.software.env } : {}),
      };
    });
  }

  async stop(m: MachineState): Promise<void> {
    const unit = m.unit ?? unitNameFor(m.name);
    const bus = systemBus();
    await bus.busy(() => this.removeUnit(bus, m.name, unit, m.directory));
  }

  /** Terminates the machine (if it is ours) and waits until machine and unit are gone; escalates if they do not go. */
  private async removeUnit(
    bus: SystemBus,
    name: string,
    unit: string,
    directory: string,
    options: { knownSnapshot?: string; graceMs?: number } = {},
  ): Promise<void> {
    const { knownSnapshot, graceMs = STOP_WAIT_MS } = options;
    const machine = await getMachine(bus, name);
    const ours = machine && machine.unit === unit ? machine : undefined;
    // Where it runs, found while it runs: nspawn removes its snapshot when it exits by
    // itself, not when it is killed (by the unit's stop timeout or by KillUnit below).
    // (Only from what machined and systemd say is ours now: a recorded PID may be reused.)
    let snapshot = knownSnapshot ?? (directory ? (snapshotOf(ours?.leader, directory) ?? (await snapshotOfUnit(bus, unit, directory))) : undefined);
    const lookAgain = async () => {
      if (directory) snapshot ??= await snapshotOfUnit(bus, unit, directory);
    };
    if (ours) {
      await ignoring(['NoSuchMachine'], () => bus.call(MACHINED, MACHINED_PATH, MACHINE_MANAGER, 'TerminateMachine', 's', [name]));
    } else if (await unitActiveState(bus, unit)) {
      await ignoring(['NoSuchUnit'], () => bus.call(SYSTEMD, SYSTEMD_PATH, MANAGER, 'StopUnit', 'ss', [unit, 'replace']));
    }
    let gone = await this.waitGone(bus, name, unit, graceMs, lookAgain);
    if (!gone) {
      // Still there (the unit's own TimeoutStopSec= would SIGKILL it about now): kill it all.
      await ignoring(['NoSuchUnit'], () => bus.call(SYSTEMD, SYSTEMD_PATH, MANAGER, 'KillUnit', 'ssi', [unit, 'all', 9]));
      gone = await this.waitGone(bus, name, unit, STOP_FALLBACK_MS, lookAgain);
    }
    await ignoring(['NoSuchUnit', 'LoadFailed'], () => bus.call(SYSTEMD, SYSTEMD_PATH, MANAGER, 'ResetFailedUnit', 's', [unit]));
    if (!gone) {
      const state = await unitActiveState(bus, unit);
      throw new Error(`machine ${name}: unit ${unit} is still ${state ?? 'there'} after stop, SIGKILL and ${(graceMs + STOP_FALLBACK_MS) / 1000} s`);
    }
    if (snapshot && existsSync(snapshot)) await removeSnapshot(snapshot, `remove the snapshot of machine ${name}`);
  }

  private async waitGone(bus: SystemBus, name: string, unit: string, ms: number, onPoll?: () => Promise<void>): Promise<boolean> {
    const deadline = Date.now() + ms;
    for (;;) {
      await onPoll?.();
      const machine = await getMachine(bus, name);
      const machineGone = !machine || machine.unit !== unit;
      const state = machineGone ? await unitActiveState(bus, unit) : 'active';
      if (machineGone && (state === undefined || state === 'inactive' || state === 'failed')) return true;
      if (Date.now() >= deadline) return false;
      await sleep(POLL_MS);
    }
  }

  async info(m: MachineState): Promise<MachineInfo> {
    const unit = m.unit ?? unitNameFor(m.name);
    const bus = systemBus();
    return bus.busy(async () => {
      const machine = await getMachine(bus, m.name);
      const active = await unitActiveState(bus, unit);
      if (!machine || machine.unit !== unit) {
        const state = active === 'activating' ? 'starting' : active === 'deactivating' ? 'stopping' : active === 'active' ? 'unknown' : 'gone';
        return { name: m.name, state, ...(active ? { unit } : {}), addresses: [] };
      }
      let state: MachineInfo['state'] = 'unknown';
      if (active === 'deactivating' || machine.state === 'closing') state = 'stopping';
      else if (active === 'activating' || machine.state === 'opening') state = 'starting';
      else if (active === 'active' && machine.state === 'running') state = 'running';
      else if (active === 'failed' || active === 'inactive') state = 'gone';
      if (state === 'running') {
        // machined knows only that it runs: ask the machine's own systemd (over its bus,
        // through machined) whether it is still starting or has failed units.
        const said = (
          await run(['systemctl', '--machine', m.name, 'is-system-running'], { allowFailure: true, timeoutMs: 5_000, step: `state of machine ${m.name}` })
        ).stdout.trim();
        if (said === 'degraded') state = 'degraded';
        else if (said === 'starting' || said === 'initializing') state = 'starting';
        else if (said === 'stopping') state = 'stopping';
      }
      const addresses = state === 'running' || state === 'degraded' ? await machineAddresses(bus, m.name) : [];
      return {
        name: m.name,
        state,
        leaderPid: machine.leader,
        unit,
        addresses,
        ...(machine.timestamp ? { since: new Date(Number(machine.timestamp / 1000n)).toISOString() } : {}),
      };
    });
  }

  /** The machine's leader (its PID 1, as the host sees it), from machined, when it runs in labctl's unit. */
  private async leaderOf(m: MachineState): Promise<number> {
    const bus = systemBus();
    const machine = await bus.busy(() => getMachine(bus, m.name));
    const unit = m.unit ?? unitNameFor(m.name);
    if (!machine || machine.unit !== unit || !machine.leader)
      throw new Error(`machine ${m.name} is not running (machined has no machine ${m.name} for unit ${unit})`);
    return machine.leader;
  }

  async execArgv(m: MachineState, command: string[]): Promise<string[]> {
    if (!command.length) throw new Error('execArgv: empty command');
    // As the direct backend: in root's home, where `machinectl shell` (labctl shell) starts too.
    return nsenterArgv(await this.leaderOf(m), command, m.env);
  }

  async shellCommand(m: MachineState): Promise<ShellCommand> {
    // machinectl shell gives a full terminal (its own pty in the machine) but always exits 0
    // (systemd/systemd#4215), so a small wrapper in the machine writes the login shell's
    // status to a file labctl reads afterwards through the machine's root (/proc/LEADER/root).
    const leader = await this.leaderOf(m);
    const token = randomBytes(8).toString('hex');
    return {
      argv: [
        'machinectl',
        'shell',
        ...Object.entries(m.env ?? {}).map(([k, v]) => `--setenv=${k}=${v}`),
        `root@${m.name}`,
        '/bin/sh',
        '-c',
        SHELL_WRAPPER,
        'labctl-shell',
        token,
      ],
      statusFile: `/proc/${leader}/root/run/labctl-shell.${token}.status`,
    };
  }

  async registered(): Promise<{ name: string; unit: string }[]> {
    const bus = systemBus();
    return bus.busy(async () => (await listMachines(bus)).map((m) => ({ name: m.name, unit: m.unit })));
  }

  /**
   * Found by name and labctl's unit among machined's machines (started by this backend), or
   * else by name and namespace among nspawn processes (started by the direct backend, or
   * with --backend direct on this host).
   */
  async strays(machines: { name: string; netns: string }[]): Promise<MachineState[]> {
    const bus = systemBus();
    const registered = await bus.busy(() => Promise.all(machines.map((m) => getMachine(bus, m.name))));
    return machines.flatMap((m, i): MachineState[] => {
      const pid = nspawnPidsIn(m)[0];
      const directory = pid ? (nspawnDirectory(pid) ?? '') : '';
      const unit = unitNameFor(m.name);
      if (registered[i]?.unit === unit) return [{ name: m.name, netns: m.netns, image: '', directory, backend: 'systemd', unit }];
      if (pid) return [{ name: m.name, netns: m.netns, image: '', directory, backend: 'direct', nspawnPid: pid }];
      return [];
    });
  }
}
