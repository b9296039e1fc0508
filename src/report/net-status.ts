// `labctl net status`: what each lab's namespaces hold right now, read from the host; for a
// NAT, also how many outside ports each inside address holds, counted from its conntrack
// table (a port quota or a port block is about that number).
import type { ConntrackEntry } from '../conntrack/parse.js';
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
  /** A NAT's inside addresses and how many outside ports each holds now (absent when conntrack could not be read). */
  portsHeld?: Record<string, number>;
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

/**
 * Outside ports per inside address, from a NAT's conntrack entries: a translated outbound
 * flow's inside source holds the reply's destination address and port; an inbound flow
 * DNATed to an inside endpoint holds the original destination. A port counts once however
 * many flows share it (under endpoint-independent mapping, a port serves every destination).
 */
export function portsHeld(entries: ConntrackEntry[]): Record<string, number> {
  const held = new Map<string, Set<string>>();
  const hold = (inside: string, port: string) => held.set(inside, (held.get(inside) ?? new Set()).add(port));
  for (const e of entries) {
    if (e.protocol !== 'tcp' && e.protocol !== 'udp') continue;
    const { original: o, reply: r } = e;
    if (r.dst !== o.src && r.dport !== undefined) hold(o.src, `${e.protocol} ${r.dst}:${r.dport}`);
    else if (o.dst !== r.src && o.dport !== undefined) hold(r.src, `${e.protocol} ${o.dst}:${o.dport}`);
  }
  const sorted = [...held.entries()].sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true }));
  return Object.fromEntries(sorted.map(([inside, ports]) => [inside, ports.size]));
}

async function portsHeldIn(netns: string): Promise<Record<string, number> | undefined> {
  const { listEntries } = await import('../conntrack/watch.js');
  try {
    return portsHeld(await listEntries(netns));
  } catch {
    return undefined; // not root, or no conntrack tool: the rest of the status stands
  }
}

export async function labStatus(state: LabState): Promise<LabStatus> {
  const present = new Set(listNetns());
  const namespaces = await Promise.all(
    state.namespaces.map(async (n): Promise<NamespaceStatus> => {
      const nat = state.nats.find((x) => x.netns === n.netns);
      const ports = nat && present.has(n.netns) ? await portsHeldIn(n.netns) : undefined;
      return {
        netns: n.netns,
        owner: n.owner,
        role: n.role,
        present: present.has(n.netns),
        interfaces: present.has(n.netns) ? await interfacesOf(n.netns) : [],
        ...(nat ? { nat: describeBehaviour(nat.mapping as Dependency, nat.filtering as Dependency) } : {}),
        ...(ports ? { portsHeld: ports } : {}),
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
      const held = l.namespaces
        .filter((n) => n.portsHeld && Object.keys(n.portsHeld).length)
        .map(
          (n) =>
            `  ${n.owner}: ${Object.entries(n.portsHeld!)
              .map(([inside, count]) => `${inside} ${count}`)
              .join(', ')}\n`,
        );
      return (
        `lab ${l.lab} (${l.status}, since ${l.createdAt}) from ${l.source}\n` +
        table(['NAME', 'NAMESPACE', 'ROLE', 'INTERFACE', 'STATE', 'ADDRESSES', 'NAT'], rows) +
        (held.length ? `outside ports held per inside address:\n${held.join('')}` : '')
      );
    })
    .join('\n');
}
