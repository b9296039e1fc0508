// Choosing the machine backend: systemd where systemd is PID 1 and its bus answers,
// direct everywhere else. `--backend` forces one.
import { existsSync } from 'node:fs';
import type { BackendName, MachineBackend } from './backend.js';
import { DirectBackend } from './direct.js';

export function systemdIsPid1(): boolean {
  return existsSync('/run/systemd/system');
}

export async function backendFor(name: BackendName): Promise<MachineBackend> {
  if (name === 'direct') return new DirectBackend();
  const { SystemdBackend, systemdAvailable } = await import('./systemd.js');
  if (!(await systemdAvailable())) {
    throw new Error('the systemd backend needs systemd as PID 1 with a system bus and systemd-machined; this host has none (use --backend direct)');
  }
  return new SystemdBackend();
}

export async function chooseBackend(forced?: BackendName): Promise<MachineBackend> {
  if (forced) return backendFor(forced);
  if (systemdIsPid1()) {
    const { systemdAvailable, SystemdBackend } = await import('./systemd.js');
    if (await systemdAvailable()) return new SystemdBackend();
  }
  return new DirectBackend();
}

/** Closes what a backend keeps open (the system bus connection) so the process can exit. */
export async function closeBackends(): Promise<void> {
  if (!systemdIsPid1()) return;
  try {
    const { closeSystemdBus } = await import('./systemd.js');
    closeSystemdBus();
  } catch {
    /* never opened */
  }
}
