// The systemd backend's unit per machine, in its own module: `labctl up` needs the name
// (to tell its own leftovers from other machines) without loading the D-Bus client.

/** labctl-MACHINE.service; the machine name must be one machined accepts (a host name of at most 64 bytes). */
export function unitNameFor(machine: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(machine)) throw new Error(`invalid machine name ${JSON.stringify(machine)}`);
  return `labctl-${machine}.service`;
}
