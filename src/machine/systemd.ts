// The systemd backend: each machine is a transient service labctl-MACHINE.service
// (systemd-nspawn --keep-unit --boot --ephemeral ...) started over D-Bus and registered
// with machined, so machinectl, journalctl -u and systemctl see the lab's machines like
// any other. Used where systemd is PID 1 and the system bus answers (systemdAvailable()).
//
// The unit's properties come from systemd/labctl-machine.unit-properties, read at every
// start: that file is the truth, this module only knows how to send each key.
import { formatIpv6 } from '../util/ipv6.js';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { access, constants as fsConstants } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MachineState } from '../host/state.js';
import { run } from '../exec/run.js';
import { MachineStartError, nsenterArgv, type MachineBackend, type MachineInfo, type MachineSpec, type ShellCommand } from './backend.js';
import { BusError, SYSTEM_BUS_SOCKET, Variant, closeSystemBus, isBusError, systemBus, type DBusMessage, type SystemBus } from './dbus.js';
import { fdTargets, pids, sleep, whichExecutable } from '../util/process.js';
import { unitNameFor } from './unit-name.js';

export { unitNameFor };

const SYSTEMD = 'org.freedesktop.systemd1';
const SYSTEMD_PATH = '/org/freedesktop/systemd1';
const MANAGER = 'org.freedesktop.systemd1.Manager';
const UNIT_IFACE = 'org.freedesktop.systemd1.Unit';
const MACHINED = 'org.freedesktop.machine1';
const MACHINED_PATH = '/org/freedesktop/machine1';
const MACHINE_MANAGER = 'org.freedesktop.machine1.Manager';
const MACHINE_IFACE = 'org.freedesktop.machine1.Machine';

/** How long stop() waits for a terminated machine to go before it kills the unit (SIGKILL). */
export const STOP_WAIT_MS = 15_000;
/** How long after KillUnit(SIGKILL) the unit may take to go. */
const STOP_FALLBACK_MS = 8_000;
/** A machine that failed to start gets this long to power off before SIGKILL. */
const FAILED_START_GRACE_MS = 3_000;
/** Our own bound on a start job, beyond the unit's TimeoutStartSec (which ends it first). */
const START_GRACE_MS = 30_000;
const POLL_MS = 100;
const JOURNAL_LINES = 20;


// ---------------------------------------------------------------------------------
// The unit template: systemd/labctl-machine.unit-properties
// ---------------------------------------------------------------------------------

/** The template file labctl reads at every start. */
export const UNIT_PROPERTIES_FILE = fileURLToPath(new URL('../../systemd/labctl-machine.unit-properties', import.meta.url));

type Kind = 'string' | 'bool' | 'usec' | 'count' | 'exec' | 'exit-status' | 'device-allow';

/** The keys the template may use: their unit-file section, how the value is sent, and the D-Bus property name. */
export const KNOWN_PROPERTIES: Record<string, { section: 'Unit' | 'Service'; kind: Kind; dbus?: string }> = {
  Description: { section: 'Unit', kind: 'string' },
  CollectMode: { section: 'Unit', kind: 'string' },
  Type: { section: 'Service', kind: 'string' },
  ExecStart: { section: 'Service', kind: 'exec' },
  Slice: { section: 'Service', kind: 'string' },
  Delegate: { section: 'Service', kind: 'bool' },
  KillMode: { section: 'Service', kind: 'string' },
  TimeoutStartSec: { section: 'Service', kind: 'usec', dbus: 'TimeoutStartUSec' },
  TimeoutStopSec: { section: 'Service', kind: 'usec', dbus: 'TimeoutStopUSec' },
  WatchdogSec: { section: 'Service', kind: 'usec', dbus: 'WatchdogUSec' },
  SuccessExitStatus: { section: 'Service', kind: 'exit-status' },
  RestartForceExitStatus: { section: 'Service', kind: 'exit-status' },
  TasksMax: { section: 'Service', kind: 'count' },
  DevicePolicy: { section: 'Service', kind: 'string' },
  DeviceAllow: { section: 'Service', kind: 'device-allow' },
};

/** What the placeholders of the template stand for. */
export interface UnitVars {
  machine: string;
  lab: string;
  netns: string;
  directory: string;
  image: string;
  readyTimeoutMs: string;
}

export interface TemplateEntry {
  section: string;
  key: string;
  value: string;
  line: number;
}

export class UnitTemplateError extends Error {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(`${file}: ${problems.join('; ')}`);
    this.name = 'UnitTemplateError';
  }
}

const PLACEHOLDER_RE = /\{([A-Za-z]+)\}/g;
const PLACEHOLDERS: readonly (keyof UnitVars)[] = ['machine', 'lab', 'netns', 'directory', 'image', 'readyTimeoutMs'];

/** Parses the template text (unit-file syntax); every problem is reported with its line. */
export function parseUnitTemplate(text: string, file = UNIT_PROPERTIES_FILE): TemplateEntry[] {
  const entries: TemplateEntry[] = [];
  const problems: string[] = [];
  let section = '';
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    const n = i + 1;
    if (!line || line.startsWith('#') || line.startsWith(';')) return;
    const sec = /^\[([A-Za-z]+)\]$/.exec(line);
    if (sec) {
      section = sec[1]!;
      if (section !== 'Unit' && section !== 'Service') problems.push(`line ${n}: unknown section [${section}] (use [Unit] or [Service])`);
      return;
    }
    const kv = /^([A-Za-z]+)\s*=\s*(.*)$/.exec(line);
    if (!kv) {
      problems.push(`line ${n}: not a Key=Value line: ${line}`);
      return;
    }
    const key = kv[1]!;
    const value = kv[2]!.trim();
    const known = KNOWN_PROPERTIES[key];
    if (!known) problems.push(`line ${n}: ${key}= is not a property labctl sends (known: ${Object.keys(KNOWN_PROPERTIES).join(', ')})`);
    else if (!section) problems.push(`line ${n}: ${key}= comes before any [Unit] or [Service] section`);
    else if (known.section !== section) problems.push(`line ${n}: ${key}= belongs in [${known.section}], not [${section}]`);
    if (raw.trimEnd().endsWith('\\')) problems.push(`line ${n}: continuation lines are not supported`);
    if (known?.kind === 'exec' && /["'\\;|&$`]/.test(value)) {
      problems.push(`line ${n}: ${key}= is split on spaces only: no quotes, escapes or shell syntax`);
    }
    for (const m of value.matchAll(PLACEHOLDER_RE)) {
      if (!PLACEHOLDERS.includes(m[1] as keyof UnitVars)) problems.push(`line ${n}: unknown placeholder {${m[1]}} (known: ${PLACEHOLDERS.map((p) => `{${p}}`).join(' ')})`);
    }
    entries.push({ section, key, value, line: n });
  });
  if (!entries.some((e) => e.key === 'ExecStart')) problems.push('no ExecStart= line');
  if (problems.length) throw new UnitTemplateError(file, problems);
  return entries;
}

/** Reads and parses the template (every call: the file is the truth). */
export function loadUnitTemplate(file = UNIT_PROPERTIES_FILE): TemplateEntry[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UnitTemplateError(file, [`cannot read the unit template: ${(e as Error).message}`]);
  }
  return parseUnitTemplate(text, file);
}

function fill(value: string, vars: UnitVars): string {
  return value.replace(PLACEHOLDER_RE, (_, name: string) => vars[name as keyof UnitVars]);
}

const USEC_UNITS: Record<string, number> = {
  us: 1,
  usec: 1,
  ms: 1_000,
  msec: 1_000,
  s: 1_000_000,
  sec: 1_000_000,
  second: 1_000_000,
  seconds: 1_000_000,
  m: 60_000_000,
  min: 60_000_000,
  minute: 60_000_000,
  minutes: 60_000_000,
  h: 3_600_000_000,
  hr: 3_600_000_000,
  hour: 3_600_000_000,
  hours: 3_600_000_000,
  d: 86_400_000_000,
  day: 86_400_000_000,
  days: 86_400_000_000,
};
const UINT64_MAX = 2n ** 64n - 1n;

/** A systemd time span ("15s", "1min 30s", "2500ms", "90" = seconds, "infinity") in microseconds. */
export function parseTimespan(text: string): bigint {
  const t = text.trim();
  if (t === 'infinity') return UINT64_MAX;
  if (/^\d+(\.\d+)?$/.test(t)) return BigInt(Math.round(Number(t) * 1_000_000));
  const re = /(\d+(?:\.\d+)?)\s*([a-z]+)\s*/gy;
  let total = 0;
  let m: RegExpExecArray | null;
  let consumed = 0;
  while ((m = re.exec(t))) {
    const unit = USEC_UNITS[m[2]!];
    if (unit === undefined) throw new Error(`unknown time unit "${m[2]}" in "${text}"`);
    total += Number(m[1]) * unit;
    consumed = re.lastIndex;
  }
  if (consumed !== t.length || !t) throw new Error(`not a time span: "${text}"`);
  return BigInt(Math.round(total));
}

const SIGNALS: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGABRT: 6, SIGKILL: 9, SIGUSR1: 10, SIGUSR2: 12, SIGPIPE: 13, SIGTERM: 15 };

function parseExitStatus(text: string): [number[], number[]] {
  const codes: number[] = [];
  const signals: number[] = [];
  for (const w of text.split(/\s+/).filter(Boolean)) {
    if (/^\d+$/.test(w) && Number(w) <= 255) codes.push(Number(w));
    else if (SIGNALS[w] !== undefined) signals.push(SIGNALS[w]);
    else throw new Error(`not an exit status or signal: "${w}"`);
  }
  return [codes, signals];
}

function parseBool(text: string): boolean {
  const t = text.trim().toLowerCase();
  if (['1', 'yes', 'true', 'on'].includes(t)) return true;
  if (['0', 'no', 'false', 'off'].includes(t)) return false;
  throw new Error(`not a boolean: "${text}"`);
}

/** Finds a program in $PATH (plus the usual system directories) the way a shell would. */
export function findExecutable(name: string): string {
  const found = whichExecutable(name);
  if (!found) throw new Error(`${name} not found in PATH`);
  return found;
}

/** One property of StartTransientUnit's a(sv), as plain data (for tests) and as the D-Bus value. */
export interface UnitProperty {
  name: string;
  signature: string;
  value: unknown;
}

/**
 * The unit properties for one machine: the template's keys with the placeholders
 * filled in, converted to what StartTransientUnit takes. ExecStart= becomes the
 * a(sasb) form: one program, its argument array, no shell.
 */
export function unitProperties(entries: TemplateEntry[], vars: UnitVars, resolveExe: (name: string) => string = findExecutable): UnitProperty[] {
  const out: UnitProperty[] = [];
  const devices: [string, string][] = [];
  const set = (p: UnitProperty) => {
    const i = out.findIndex((o) => o.name === p.name);
    if (i >= 0) out[i] = p;
    else out.push(p);
  };
  for (const e of entries) {
    const known = KNOWN_PROPERTIES[e.key]!;
    const name = known.dbus ?? e.key;
    try {
      switch (known.kind) {
        case 'string':
          set({ name, signature: 's', value: fill(e.value, vars) });
          break;
        case 'bool':
          set({ name, signature: 'b', value: parseBool(fill(e.value, vars)) });
          break;
        case 'usec':
          set({ name, signature: 't', value: parseTimespan(fill(e.value, vars)) });
          break;
        case 'count': {
          const v = fill(e.value, vars).trim();
          if (v !== 'infinity' && !/^\d+$/.test(v)) throw new Error(`not a number: "${v}"`);
          set({ name, signature: 't', value: v === 'infinity' ? UINT64_MAX : BigInt(v) });
          break;
        }
        case 'exit-status':
          set({ name, signature: '(aiai)', value: parseExitStatus(fill(e.value, vars)) });
          break;
        case 'device-allow': {
          const [path, perms = 'rwm', ...rest] = e.value.split(/\s+/);
          if (!path || rest.length || !/^[rwm]+$/.test(perms)) throw new Error(`expected "DEVICE [rwm]", got "${e.value}"`);
          devices.push([path, perms]);
          set({ name, signature: 'a(ss)', value: devices });
          break;
        }
        case 'exec': {
          const words = e.value.split(/\s+/).filter(Boolean).map((w) => fill(w, vars));
          const program = resolveExe(words[0]!);
          set({ name, signature: 'a(sasb)', value: [[program, [program, ...words.slice(1)], false]] });
          break;
        }
      }
    } catch (err) {
      throw new UnitTemplateError(UNIT_PROPERTIES_FILE, [`line ${e.line}: ${e.key}=: ${(err as Error).message}`]);
    }
  }
  return out;
}

const toVariants = (props: UnitProperty[]) => props.map((p) => [p.name, new Variant(p.signature, p.value)]);

// ---------------------------------------------------------------------------------
// Bus helpers
// ---------------------------------------------------------------------------------

const jobSubscriptions = new WeakMap<SystemBus, Promise<void>>();

/** Match rule for JobRemoved plus Manager.Subscribe(), once per connection; resolves when both are in place. */
function subscribeJobs(bus: SystemBus): Promise<void> {
  let p = jobSubscriptions.get(bus);
  if (!p) {
    p = (async () => {
      await bus.addMatch(`type='signal',sender='${SYSTEMD}',path='${SYSTEMD_PATH}',interface='${MANAGER}',member='JobRemoved'`);
      await bus.call(SYSTEMD, SYSTEMD_PATH, MANAGER, 'Subscribe');
    })();
    p.catch(() => jobSubscriptions.delete(bus));
    jobSubscriptions.set(bus, p);
  }
  return p;
}

interface MachineProps {
  path: string;
  name: string;
  state: string;
  leader: number;
  unit: string;
  timestamp?: bigint;
}

async function getMachine(bus: SystemBus, name: string): Promise<MachineProps | undefined> {
  let path: string;
  try {
    [path] = (await bus.call(MACHINED, MACHINED_PATH, MACHINE_MANAGER, 'GetMachine', 's', [name])) as [string];
  } catch (e) {
    if (isBusError(e, 'NoSuchMachine')) return undefined;
    throw e;
  }
  let p: Record<string, unknown>;
  try {
    p = await bus.getAllProperties(MACHINED, path, MACHINE_IFACE);
  } catch (e) {
    // Removed between the two calls.
    if (isBusError(e, 'UnknownObject') || isBusError(e, 'UnknownMethod') || isBusError(e, 'NoSuchMachine')) return undefined;
    throw e;
  }
  return {
    path,
    name: String(p.Name ?? name),
    state: String(p.State ?? ''),
    leader: Number(p.Leader ?? 0),
    unit: String(p.Unit ?? ''),
    ...(typeof p.Timestamp === 'bigint' ? { timestamp: p.Timestamp } : {}),
  };
}

/** The unit's ActiveState, or undefined when systemd has no such unit loaded. */
async function unitActiveState(bus: SystemBus, unit: string): Promise<string | undefined> {
  let path: string;
  try {
    [path] = (await bus.call(SYSTEMD, SYSTEMD_PATH, MANAGER, 'GetUnit', 's', [unit])) as [string];
  } catch (e) {
    if (isBusError(e, 'NoSuchUnit')) return undefined;
    throw e;
  }
  try {
    return String(await bus.getProperty(SYSTEMD, path, UNIT_IFACE, 'ActiveState'));
  } catch (e) {
    if (isBusError(e, 'UnknownObject') || isBusError(e, 'NoSuchUnit')) return undefined;
    throw e;
  }
}

/** A service's Result ("timeout", "exit-code", ...), or undefined when the unit is gone. */
async function serviceResult(bus: SystemBus, unit: string): Promise<string | undefined> {
  try {
    const [path] = (await bus.call(SYSTEMD, SYSTEMD_PATH, MANAGER, 'GetUnit', 's', [unit])) as [string];
    return String(await bus.getProperty(SYSTEMD, path, 'org.freedesktop.systemd1.Service', 'Result'));
  } catch {
    return undefined;
  }
}

async function ignoring(names: string[], fn: () => Promise<unknown>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    if (!names.some((n) => isBusError(e, n))) throw e;
  }
}

export function formatAddress(family: number, bytes: Buffer | number[]): string {
  const b = Buffer.from(bytes);
  if (family === 2 && b.length === 4) return [...b].join('.');
  if (family === 10 && b.length === 16) return formatIpv6(b);
  return b.toString('hex');
}

/**
 * The ephemeral snapshot a machine runs in, if it is one of `directory`'s. Read from the
 * leader's mountinfo (the subvolume its / is), not /proc/PID/root: that link does not
 * resolve across mount namespaces.
 */
export function snapshotOf(leader: number | undefined, directory: string): string | undefined {
  if (!leader) return undefined;
  let text: string;
  try {
    text = readFileSync(`/proc/${leader}/mountinfo`, 'utf8');
  } catch {
    return undefined;
  }
  return snapshotFromMountinfo(text, directory);
}

/** The `.#machine.*` snapshot beside `directory` that the mountinfo's / is mounted from. */
export function snapshotFromMountinfo(mountinfo: string, directory: string): string | undefined {
  for (const line of mountinfo.split('\n')) {
    const f = line.split(' ');
    if (f[4] !== '/') continue;
    const name = (f[3] ?? '').replace(/\\040/g, ' ').split('/').pop() ?? '';
    if (name.startsWith('.#machine.')) return join(dirname(directory), name);
  }
  return undefined;
}

/**
 * The snapshot of the nspawn that is the unit's main process: nspawn takes the lock file
 * `.#.#machine.X.lck` before it makes the snapshot `.#machine.X` and holds it open, so
 * this works even while the machine is still being set up (no leader mount yet).
 */
async function snapshotOfUnit(bus: SystemBus, unit: string, directory: string): Promise<string | undefined> {
  let pid: number;
  try {
    const [path] = (await bus.call(SYSTEMD, SYSTEMD_PATH, MANAGER, 'GetUnit', 's', [unit])) as [string];
    pid = Number(await bus.getProperty(SYSTEMD, path, 'org.freedesktop.systemd1.Service', 'MainPID'));
  } catch {
    return undefined;
  }
  if (!pid) return undefined;
  for (const target of fdTargets(pid)) {
    const snapshot = snapshotLockedBy(target, directory);
    if (snapshot) return join(dirname(directory), snapshot);
  }
  return undefined;
}

/** The snapshot (name) of `directory` whose nspawn lock an open file `target` is, if it is one. */
function snapshotLockedBy(target: string, directory: string): string | undefined {
  const prefix = `${dirname(directory)}/.#.#machine.`;
  return target.startsWith(prefix) && target.endsWith('.lck') ? basename(target).slice(2, -'.lck'.length) : undefined;
}

const snapshotStem = (directory: string) => `.#machine.${basename(directory)}`;

/** The `.#machine.*` snapshots of `directory` there are now (names). */
function snapshotNames(directory: string): Set<string> {
  try {
    return new Set(readdirSync(dirname(directory)).filter((e) => e.startsWith(snapshotStem(directory))));
  } catch {
    return new Set();
  }
}

/**
 * Snapshots of `directory` made since `before` whose nspawn is gone: nspawn takes the
 * lock `.#.#machine.X.lck` before it makes `.#machine.X` and holds it for as long as it
 * runs, so one that no process holds open is nobody's (a sibling machine starting at
 * the same time holds its own).
 */
function orphanSnapshotsSince(directory: string, before: Set<string>): string[] {
  const parent = dirname(directory);
  const fresh = [...snapshotNames(directory)].filter((n) => !before.has(n));
  if (!fresh.length) return [];
  const held = new Set<string>();
  for (const pid of pids()) {
    for (const target of fdTargets(pid)) {
      const snapshot = snapshotLockedBy(target, directory);
      if (snapshot) held.add(snapshot);
    }
  }
  return fresh.filter((n) => !held.has(n)).map((n) => join(parent, n));
}

/**
 * Deletes a machine's leftover snapshot with the subvolumes nested in it (innermost
 * first; nspawn snapshots nested ones along, e.g. var/lib/machines). `mountDir` is where
 * the image's file system is mounted at its top (labctl's images: DATA/mnt/NAME), which
 * `btrfs subvolume list` paths are relative to.
 */
async function removeSnapshot(snapshot: string, mountDir: string, machine: string): Promise<void> {
  const step = `remove the snapshot of machine ${machine}`;
  const rel = snapshot.slice(mountDir.length + 1);
  const list = await run(['btrfs', 'subvolume', 'list', '-o', snapshot], { step, allowFailure: true });
  for (const line of list.stdout.split('\n')) {
    const nested = / path (.+)$/.exec(line.trim())?.[1];
    if (nested?.startsWith(`${rel}/`)) await removeSnapshot(join(mountDir, nested), mountDir, machine);
  }
  await run(['btrfs', 'subvolume', 'delete', snapshot], { step, allowFailure: true });
  rmSync(join(dirname(snapshot), `.#${basename(snapshot)}.lck`), { force: true });
}

// ---------------------------------------------------------------------------------
// The backend
// ---------------------------------------------------------------------------------

/** True where systemd is PID 1 (/run/systemd/system exists) and answers on the system bus. */
export async function systemdAvailable(): Promise<boolean> {
  if (!existsSync('/run/systemd/system')) return false;
  if (!process.env.DBUS_SYSTEM_BUS_ADDRESS && !existsSync(SYSTEM_BUS_SOCKET)) return false;
  try {
    await systemBus().call(SYSTEMD, SYSTEMD_PATH, 'org.freedesktop.DBus.Peer', 'Ping', '', [], 3_000);
    return true;
  } catch {
    return false;
  }
}

/** Closes the process's system bus connection (the CLI calls this before it exits). */
export function closeSystemdBus(): void {
  closeSystemBus();
}

/** Runs in the machine under machinectl shell: root's login shell, then its status to /run ($1: a token labctl chose). */
export const SHELL_WRAPPER = '/bin/bash --login; s=$?; echo "$s" >"/run/labctl-shell.$1.status"; exit "$s"';

export class SystemdBackend implements MachineBackend {
  readonly name = 'systemd' as const;

  async start(spec: MachineSpec): Promise<MachineState> {
    const unit = unitNameFor(spec.name);
    const netnsPath = `/run/netns/${spec.netns}`;
    if (!existsSync(netnsPath)) throw new MachineStartError(spec.name, `network namespace ${spec.netns} does not exist (${netnsPath})`);
    if (!existsSync(spec.directory)) throw new MachineStartError(spec.name, `image directory ${spec.directory} does not exist (is image ${spec.image} mounted?)`);
    const props = unitProperties(loadUnitTemplate(), {
      machine: spec.name,
      lab: spec.lab,
      netns: spec.netns,
      directory: spec.directory,
      image: spec.image,
      readyTimeoutMs: String(Math.max(1, Math.round(spec.readyTimeoutMs))),
    });
    const bus = systemBus();
    return bus.busy(async () => {
      await subscribeJobs(bus);
      const existing = await getMachine(bus, spec.name);
      if (existing) {
        throw new MachineStartError(spec.name, `a machine of this name is already registered with machined (unit ${existing.unit || '?'}, leader ${existing.leader}); stop it first`);
      }
      const before = await unitActiveState(bus, unit);
      if (before === 'failed' || before === 'inactive') await ignoring(['NoSuchUnit'], () => bus.call(SYSTEMD, SYSTEMD_PATH, MANAGER, 'ResetFailedUnit', 's', [unit]));
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
          for (const orphan of orphanSnapshotsSince(spec.directory, snapshotsBefore)) await removeSnapshot(orphan, dirname(spec.directory), spec.name);
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
      };
    });
  }

  async stop(m: MachineState): Promise<void> {
    const unit = m.unit ?? unitNameFor(m.name);
    const bus = systemBus();
    await bus.busy(() => this.removeUnit(bus, m.name, unit, m.directory));
  }

  /** Terminates the machine (if it is ours) and waits until machine and unit are gone; escalates if they do not go. */
  private async removeUnit(bus: SystemBus, name: string, unit: string, directory: string, options: { knownSnapshot?: string; graceMs?: number } = {}): Promise<void> {
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
    if (snapshot && existsSync(snapshot)) await removeSnapshot(snapshot, dirname(directory), name);
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
        const said = (await run(['systemctl', '--machine', m.name, 'is-system-running'], { allowFailure: true, timeoutMs: 5_000, step: `state of machine ${m.name}` })).stdout.trim();
        if (said === 'degraded') state = 'degraded';
        else if (said === 'starting' || said === 'initializing') state = 'starting';
        else if (said === 'stopping') state = 'stopping';
      }
      let addresses: string[] = [];
      if (state === 'running' || state === 'degraded') {
        try {
          const [list] = (await bus.call(MACHINED, MACHINED_PATH, MACHINE_MANAGER, 'GetMachineAddresses', 's', [m.name])) as [[number, Buffer][]];
          addresses = list.map(([family, bytes]) => formatAddress(family, bytes));
        } catch (e) {
          if (!isBusError(e, 'NoSuchMachine')) throw e;
        }
      }
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
    if (!machine || machine.unit !== unit || !machine.leader) throw new Error(`machine ${m.name} is not running (machined has no machine ${m.name} for unit ${unit})`);
    return machine.leader;
  }

  async execArgv(m: MachineState, command: string[]): Promise<string[]> {
    if (!command.length) throw new Error('execArgv: empty command');
    // As the direct backend: in root's home, where `machinectl shell` (labctl shell) starts too.
    return nsenterArgv(await this.leaderOf(m), command);
  }

  async shellCommand(m: MachineState): Promise<ShellCommand> {
    // machinectl shell gives a full terminal (its own pty in the machine) but always exits 0
    // (systemd/systemd#4215), so a small wrapper in the machine writes the login shell's
    // status to a file labctl reads afterwards through the machine's root (/proc/LEADER/root).
    const leader = await this.leaderOf(m);
    const token = randomBytes(8).toString('hex');
    return {
      argv: ['machinectl', 'shell', `root@${m.name}`, '/bin/sh', '-c', SHELL_WRAPPER, 'labctl-shell', token],
      statusFile: `/proc/${leader}/root/run/labctl-shell.${token}.status`,
    };
  }

  async registered(): Promise<{ name: string; unit: string }[]> {
    const bus = systemBus();
    return bus.busy(async () => {
      const [list] = (await bus.call(MACHINED, MACHINED_PATH, MACHINE_MANAGER, 'ListMachines')) as [[string, string, string, string][]];
      const machines = await Promise.all(list.map(async ([name]) => getMachine(bus, name)));
      return machines.filter((x): x is MachineProps => x !== undefined).map((x) => ({ name: x.name, unit: x.unit }));
    });
  }
}

/**
 * The unit's last journal lines since `since` (its nspawn's messages and the machine's
 * console), plus systemd's own lines about the unit ("start operation timed out",
 * "Failed with result ...") even when the console went on printing after them.
 */
export async function journalTail(unit: string, since: Date, lines = JOURNAL_LINES): Promise<string> {
  let journalctl: string;
  try {
    journalctl = findExecutable('journalctl');
    await access(journalctl, fsConstants.X_OK);
  } catch {
    return '';
  }
  // journald may still be writing the last lines a failing nspawn printed.
  await sleep(300);
  const r = await run([journalctl, '--unit', unit, '--since', `@${Math.floor(since.getTime() / 1000)}`, '--no-pager', '--output', 'json'], {
    allowFailure: true,
    timeoutMs: 10_000,
    step: `read the journal of ${unit}`,
  });
  if (r.exitCode !== 0) return '';
  return tailOfJournal(r.stdout, lines);
}

/** From `journalctl -o json` output: the last `lines` messages, then the manager's (PID 1's) that those left out. */
export function tailOfJournal(jsonLines: string, lines = JOURNAL_LINES): string {
  const entries: { message: string; manager: boolean }[] = [];
  for (const line of jsonLines.split('\n')) {
    if (!line.trim()) continue;
    try {
      const e = JSON.parse(line) as { MESSAGE?: string | number[] | null; _PID?: string };
      const m = e.MESSAGE;
      const message = typeof m === 'string' ? m : Array.isArray(m) ? Buffer.from(m).toString('utf8') : '';
      entries.push({ message: message.replace(/\r/g, '').trimEnd(), manager: e._PID === '1' });
    } catch {
      /* not a journal entry */
    }
  }
  const tail = entries.slice(-lines);
  const missed = entries.slice(0, -lines).filter((e) => e.manager);
  return [...tail.map((e) => e.message), ...missed.slice(-5).map((e) => `(systemd) ${e.message}`)].join('\n').trim();
}

export { BusError };
