// The systemd-nspawn command line the direct backend runs as a child process. The systemd
// backend's is the ExecStart= of systemd/labctl-machine.unit-properties; a unit test
// (test/unit/machine-nspawn.test.ts) holds the two to the same options, apart from how
// each registers the machine.
import type { MachineSpec } from './backend.js';
import { NETNS_DIR } from '../host/netns.js';

export function nspawnArgs(spec: Pick<MachineSpec, 'name' | 'netns' | 'directory'>): string[] {
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
  ];
}
