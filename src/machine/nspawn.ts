// The systemd-nspawn command line that boots one lab machine. Both backends use it; the
// systemd backend runs it as a transient service, the direct backend as a child process.
import type { MachineSpec } from './backend.js';
import { NETNS_DIR } from '../apply/netns.js';

export function nspawnArgs(spec: Pick<MachineSpec, 'name' | 'netns' | 'directory'>, options: { register: boolean }): string[] {
  return [
    'systemd-nspawn',
    '--quiet',
    // Without machined (direct backend) nspawn must neither register nor make its own scope.
    ...(options.register ? [] : ['--register=no']),
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
