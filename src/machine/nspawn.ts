// The systemd-nspawn command line the direct backend runs as a child process. The systemd
// backend's is the ExecStart= of systemd/labctl-machine.unit-properties; a unit test
// (test/unit/machine-nspawn.test.ts) holds the two to the same options, apart from how
// each registers the machine. What differs per machine beyond its name, namespace and
// image (the lab file's binds, labctl's generated directory: machineArgs) is made here for
// both: the direct backend appends it, the template's {machineArgs} stands for it.
import type { MachineSpec } from './backend.js';
import { NETNS_DIR } from '../host/netns.js';
import { MACHINE_FILES_DIR, MACHINE_UNITS_DIR, needsSoftwareDir } from './software.js';

export function nspawnArgs(spec: Pick<MachineSpec, 'name' | 'netns' | 'directory' | 'software' | 'softwareDir'>): string[] {
  return [
    'systemd-nspawn',
    '--quiet',
    // Without machined nspawn must neither register nor make its own scope: --register=no,
    // and --keep-unit (it stays in labctl's cgroup). The systemd backend's unit keeps only
    // --keep-unit: nspawn registers with machined under that unit.
    '--register=no',
    '--keep-unit',
    '--boot',
    '--ephemeral',
    '--notify-ready=yes',
    '--settings=no',
    // On stop: an immediate power-off, not an orderly halt (see systemd/labctl-machine.unit-properties).
    '--kill-signal=SIGRTMIN+14',
    `--directory=${spec.directory}`,
    `--network-namespace-path=${NETNS_DIR}/${spec.netns}`,
    '--capability=CAP_NET_ADMIN',
    `--machine=${spec.name}`,
    ...machineArgs(spec),
  ];
}

/** nspawn reads SOURCE:DEST of --bind with backslash escapes: a ":" in a path must be "\:". */
export const bindPath = (path: string) => path.replace(/\\/g, '\\\\').replace(/:/g, '\\:');

/**
 * The machine's own nspawn options: the lab file's binds (--bind, or --bind-ro when
 * read-only), then labctl's generated directory for its files and units (software.ts says
 * why there). No options for a machine without any.
 */
export function machineArgs(spec: Pick<MachineSpec, 'software' | 'softwareDir'>): string[] {
  const binds = (spec.software?.binds ?? []).map((b) => `--bind${b.readonly ? '-ro' : ''}=${bindPath(b.from)}:${bindPath(b.to)}`);
  if (!needsSoftwareDir(spec.software) || !spec.softwareDir) return binds;
  return [...binds, `--bind-ro=${bindPath(spec.softwareDir)}:${MACHINE_FILES_DIR}`, `--bind-ro=${bindPath(`${spec.softwareDir}/units`)}:${MACHINE_UNITS_DIR}`];
}
