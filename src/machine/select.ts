// Choosing the machine backend: systemd where systemd is PID 1 and its bus answers,
// direct everywhere else. `--backend` forces one.
import { existsSync } from 'node:fs';
import type { BackendName, MachineBackend } from './backend.js';
import { DirectBackend } from './direct.js';

function systemdIsPid1(): boolean {
  return existsSync('/run/systemd/system');
}

/** The systemd backend, where systemd answers on the system bus (loaded only then: it brings the D-Bus client). */
async function systemdBackend(): Promise<MachineBackend | undefined> {
  const { systemdAvailable } = await import('./systemd-bus.js');
  if (!(await systemdAvailable())) return undefined;
  const { SystemdBackend } = await import('./systemd.js');
  return new SystemdBackend();
}

export async function backendFor(name: BackendName): Promise<MachineBackend> {
  if (name === 'direct') return new DirectBackend();
  const backend = await systemdBackend();
  if (!backend) throw new Error('the systemd backend needs systemd as PID 1 with a system bus and systemd-machined; this host has none (use --backend direct)');
  return backend;
}

export async function chooseBackend(forced?: BackendName): Promise<MachineBackend> {
  if (forced) return backendFor(forced);
  return (systemdIsPid1() && (await systemdBackend())) || new DirectBackend();
}

/** Closes what a backend keeps open (the system bus connection) so the process can exit. */
export async function closeBackends(): Promise<void> {
  if (!systemdIsPid1()) return;
  try {
    const { closeSystemBus } = await import('./dbus.js');
    closeSystemBus();
  } catch {
    /* never opened */
  }
}
