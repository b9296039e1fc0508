// `labctl net status`: what each lab's namespaces hold right now, read from the host.
import { run } from '../exec/run.js';
import { listNetns } from '../host/netns.js';
import { allStates, type LabState } from '../host/state.js';
import { describeBehaviour, type Dependency } from '../lab/behaviour.js';
import { table } from './table.js';

interface InterfaceStatus {
  name: string;
  state: string;
  addresses: string[];
}

interface NamespaceStatus {
  netns: string;
  owner: string;
  role: string;
  present: boolean;
  interfaces: InterfaceStatus[];
  nat?: string;
}

export interface LabStatus {
  lab: string;
  source: string;
  status: string;
  createdAt: string;
  namespaces: NamespaceStatus[];
}

interface IpAddrJson {
  ifname: string;
  operstate: string;
  addr_info?: { family: string; local: string; prefixlen: number }[];
}

async function interfacesOf(netns: string): Promise<InterfaceStatus[]> {
  const r = await run(['ip', '-n', netns, '-j', 'addr', 'show'], { allowFailure: true });
  if (r.exitCode !== 0) return [];
  const parsed = JSON.parse(r.stdout || '[]') as IpAddrJson[];
  return parsed
    .filter((i) => i.ifname !== 'lo')
    .map((i) => ({
      name: i.ifname,
      state: i.operstate,
      addresses: (i.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`),
    }));
}

export async function labStatus(state: LabState): Promise<LabStatus> {
  const present = new Set(listNetns());
  const namespaces = await Promise.all(
    state.namespaces.map(async (n): Promise<NamespaceStatus> => {
      const nat = state.nats.find((x) => x.netns === n.netns);
      return {
        netns: n.netns,
        owner: n.owner,
        role: n.role,
        present: present.has(n.netns),
        interfaces: present.has(n.netns) ? await interfacesOf(n.netns) : [],
        ...(nat ? { nat: describeBehaviour(nat.mapping as Dependency, nat.filtering as Dependency) } : {}),
      };
    }),
  );
  return { lab: state.lab, source: state.source, status: state.status, createdAt: state.createdAt, namespaces };
}

export async function netStatus(labName?: string): Promise<LabStatus[]> {
  const states = allStates().filter((s) => !labName || s.lab === labName);
  return Promise.all(states.map(labStatus));
}

export function formatNetStatus(labs: LabStatus[]): string {
  if (labs.length === 0) return "no lab is up; start its network with `sudo labctl net up` (the article's lab) or `sudo labctl net up FILE`\n";
  return labs
    .map((l) => {
      const rows: string[][] = [];
      for (const n of l.namespaces) {
        const ifs = n.interfaces.length ? n.interfaces : [{ name: n.present ? '-' : '(missing)', state: '', addresses: [] }];
        ifs.forEach((i, k) => {
          rows.push([
            k === 0 ? n.owner : '',
            k === 0 ? n.netns : '',
            k === 0 ? n.role : '',
            i.name,
            i.state,
            i.addresses.join(' '),
            k === 0 ? (n.nat ?? '') : '',
          ]);
        });
      }
      return (
        `lab ${l.lab} (${l.status}, since ${l.createdAt}) from ${l.source}\n` +
        table(['NAME', 'NAMESPACE', 'ROLE', 'INTERFACE', 'STATE', 'ADDRESSES', 'NAT'], rows)
      );
    })
    .join('\n');
}
