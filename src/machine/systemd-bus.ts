// The calls the systemd backend makes on the system bus (the client itself is dbus.ts):
// systemd's manager and units, machined's machines, each answering "not there" as
// undefined rather than as an error.
import { existsSync } from 'node:fs';
import { formatIpv6 } from '../util/ipv6.js';
import { SYSTEM_BUS_SOCKET, isBusError, systemBus, type SystemBus } from './dbus.js';

export const SYSTEMD = 'org.freedesktop.systemd1';
export const SYSTEMD_PATH = '/org/freedesktop/systemd1';
export const MANAGER = 'org.freedesktop.systemd1.Manager';
const UNIT_IFACE = 'org.freedesktop.systemd1.Unit';
const SERVICE_IFACE = 'org.freedesktop.systemd1.Service';
export const MACHINED = 'org.freedesktop.machine1';
export const MACHINED_PATH = '/org/freedesktop/machine1';
export const MACHINE_MANAGER = 'org.freedesktop.machine1.Manager';
const MACHINE_IFACE = 'org.freedesktop.machine1.Machine';

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

const jobSubscriptions = new WeakMap<SystemBus, Promise<void>>();

/** Match rule for JobRemoved plus Manager.Subscribe(), once per connection; resolves when both are in place. */
export function subscribeJobs(bus: SystemBus): Promise<void> {
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

/** What machined says of one machine. */
export interface MachineProps {
  name: string;
  state: string;
  leader: number;
  unit: string;
  timestamp?: bigint;
}

export async function getMachine(bus: SystemBus, name: string): Promise<MachineProps | undefined> {
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
    name: String(p.Name ?? name),
    state: String(p.State ?? ''),
    leader: Number(p.Leader ?? 0),
    unit: String(p.Unit ?? ''),
    ...(typeof p.Timestamp === 'bigint' ? { timestamp: p.Timestamp } : {}),
  };
}

/** Every machine machined has registered, whoever started it, with its unit. */
export async function listMachines(bus: SystemBus): Promise<MachineProps[]> {
  const [list] = (await bus.call(MACHINED, MACHINED_PATH, MACHINE_MANAGER, 'ListMachines')) as [[string, string, string, string][]];
  const machines = await Promise.all(list.map(async ([name]) => getMachine(bus, name)));
  return machines.filter((m): m is MachineProps => m !== undefined);
}

/** The machine's addresses as machined sees them (empty when it has gone meanwhile). */
export async function machineAddresses(bus: SystemBus, name: string): Promise<string[]> {
  try {
    const [list] = (await bus.call(MACHINED, MACHINED_PATH, MACHINE_MANAGER, 'GetMachineAddresses', 's', [name])) as [[number, Buffer][]];
    return list.map(([family, bytes]) => formatAddress(family, bytes));
  } catch (e) {
    if (isBusError(e, 'NoSuchMachine')) return [];
    throw e;
  }
}

/** One address of GetMachineAddresses' a(iay): AF_INET or AF_INET6 and its bytes. */
export function formatAddress(family: number, bytes: Buffer | number[]): string {
  const b = Buffer.from(bytes);
  if (family === 2 && b.length === 4) return [...b].join('.');
  if (family === 10 && b.length === 16) return formatIpv6(b);
  return b.toString('hex');
}

/** The object path of a loaded unit, or undefined when systemd has no such unit loaded. */
async function unitPath(bus: SystemBus, unit: string): Promise<string | undefined> {
  try {
    return ((await bus.call(SYSTEMD, SYSTEMD_PATH, MANAGER, 'GetUnit', 's', [unit])) as [string])[0];
  } catch (e) {
    if (isBusError(e, 'NoSuchUnit')) return undefined;
    throw e;
  }
}

/** The unit's ActiveState, or undefined when systemd has no such unit loaded. */
export async function unitActiveState(bus: SystemBus, unit: string): Promise<string | undefined> {
  const path = await unitPath(bus, unit);
  if (!path) return undefined;
  try {
    return String(await bus.getProperty(SYSTEMD, path, UNIT_IFACE, 'ActiveState'));
  } catch (e) {
    if (isBusError(e, 'UnknownObject') || isBusError(e, 'NoSuchUnit')) return undefined;
    throw e;
  }
}

/** A service's Result ("timeout", "exit-code", ...), or undefined when the unit is gone. */
export async function serviceResult(bus: SystemBus, unit: string): Promise<string | undefined> {
  try {
    const path = await unitPath(bus, unit);
    return path ? String(await bus.getProperty(SYSTEMD, path, SERVICE_IFACE, 'Result')) : undefined;
  } catch {
    return undefined;
  }
}

/** A service's main process (for the systemd backend's units: their nspawn), or undefined. */
export async function serviceMainPid(bus: SystemBus, unit: string): Promise<number | undefined> {
  try {
    const path = await unitPath(bus, unit);
    const pid = path ? Number(await bus.getProperty(SYSTEMD, path, SERVICE_IFACE, 'MainPID')) : 0;
    return pid || undefined;
  } catch {
    return undefined;
  }
}

/** Runs a call whose failure with one of these D-Bus errors means there was nothing to do. */
export async function ignoring(names: string[], fn: () => Promise<unknown>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    if (!names.some((n) => isBusError(e, n))) throw e;
  }
}
