// `labctl status`: machines (from their backend) and the network, per lab.
import { allStates, type LabState } from '../host/state.js';
import { backendFor } from '../machine/select.js';
import { describeShaping, shapingIsEmpty } from '../lab/impairment.js';
import { type LinkView, linksOfState } from './links.js';
import { labStatus, type LabStatus } from './net-status.js';
import { table } from './table.js';

interface MachineRow {
  name: string;
  state: string;
  netns: string;
  addresses: string[];
  image: string;
  nat: string;
  uptime: string;
  backend: string;
  leaderPid?: number;
  /** Why the backend could not say (state is then unknown). */
  error?: string;
}

interface LabOverview {
  lab: string;
  source: string;
  status: string;
  machines: MachineRow[];
  /** Namespaces without a machine (a bare internet, or a network-only lab). */
  bareNamespaces: string[];
  /** Every link with its impairment and whether it is down (live changes included: `labctl link`). */
  links: LinkView[];
}

function uptime(since: string | undefined): string {
  if (!since) return '-';
  const s = Math.max(0, Math.round((Date.now() - Date.parse(since)) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
}

/**
 * The NAT column: a NAT router's own behaviour (as `net status` shows it); for a node, the
 * NAT it sits behind and that NAT's behaviour (or that it is on the internet without one).
 */
function natColumn(s: LabState, net: LabStatus, netns: string): string {
  const own = net.namespaces.find((n) => n.netns === netns)?.nat;
  if (own) return own;
  const router = s.namespaces.find((n) => n.netns === netns)?.router;
  const nat = router ? s.nats.find((n) => n.name === router) : undefined;
  if (nat) return `behind ${nat.name}: ${net.namespaces.find((n) => n.netns === nat.netns)?.nat ?? '?'}`;
  return router ? 'none (on the internet)' : '';
}

export async function labsStatus(labName?: string): Promise<LabOverview[]> {
  const states = allStates().filter((s) => !labName || s.lab === labName);
  return Promise.all(
    states.map(async (s) => {
      const net = await labStatus(s);
      const machines = await Promise.all(
        (s.machines ?? []).map(async (m): Promise<MachineRow> => {
          let error: string | undefined;
          const info = await (await backendFor(m.backend)).info(m).catch((e: Error) => {
            error = e.message;
            return { state: 'unknown' as const, addresses: [] as string[], leaderPid: undefined, since: undefined };
          });
          const ns = net.namespaces.find((n) => n.netns === m.netns);
          return {
            name: m.name,
            state: info.state,
            netns: m.netns,
            // Plain addresses, as machined gives them (GetMachineAddresses) and machinectl shows them.
            addresses: info.addresses.length ? info.addresses : (ns?.interfaces.flatMap((i) => i.addresses.map((a) => a.replace(/\/\d+$/, ''))) ?? []),
            image: m.image,
            nat: natColumn(s, net, m.netns),
            // machined's own start time where it has one, else when labctl started it.
            uptime: info.state === 'gone' ? '-' : uptime(info.since ?? m.startedAt),
            backend: m.backend,
            ...(info.leaderPid ? { leaderPid: info.leaderPid } : {}),
            ...(error ? { error } : {}),
          };
        }),
      );
      const withMachine = new Set(machines.map((m) => m.netns));
      return {
        lab: s.lab,
        source: s.source,
        status: s.status,
        machines,
        bareNamespaces: net.namespaces.filter((n) => !withMachine.has(n.netns)).map((n) => n.netns),
        links: linksOfState(s),
      };
    }),
  );
}

export function formatLabsStatus(labs: LabOverview[]): string {
  if (labs.length === 0)
    return "no lab is up; start one with `sudo labctl up` (the article's lab; `labctl image build noble` first) or `sudo labctl up FILE`\n";
  return labs
    .map((l) => {
      const rows = l.machines.map((m) => [
        m.name,
        m.error ? `${m.state} (${m.error.split('\n')[0]})` : m.state,
        m.netns,
        m.addresses.join(' '),
        m.image,
        m.nat,
        m.uptime,
        m.backend,
      ]);
      const head = `lab ${l.lab} (${l.status}) from ${l.source}`;
      const bare = l.bareNamespaces.length ? `namespaces without a machine: ${l.bareNamespaces.join(', ')}\n` : '';
      const changed = l.links.filter((v) => v.down || !shapingIsEmpty(v.impairment));
      const links = changed.length
        ? `impaired links (\`labctl link show\`): ${changed.map((v) => `${v.link} (${[...(v.down ? ['DOWN'] : []), ...(shapingIsEmpty(v.impairment) ? [] : [describeShaping(v.impairment)])].join(', ')})`).join(', ')}\n`
        : '';
      return `${head}\n${l.machines.length ? table(['MACHINE', 'STATE', 'NAMESPACE', 'ADDRESSES', 'IMAGE', 'NAT', 'UPTIME', 'BACKEND'], rows) : 'no machines (network only; `labctl up` boots them)\n'}${bare}${links}`;
    })
    .join('\n');
}
