// The network plan: what `labctl net up` creates, as data. Pure.
// Every object lives inside a lab namespace: veths are created with both ends placed
// straight into their namespaces (`ip link add A netns X type veth peer name B netns Y`),
// so nothing ever appears in the host's namespace, and deleting a lab's namespaces
// deletes everything in them.
import { createHash } from 'node:crypto';
import { type Lab, members } from '../lab/model.js';
import { compileNatRuleset, natOptionalSysctls, natSysctls } from '../nat/compile.js';
import { LAN_BRIDGE } from '../lab/ifnames.js';
import { linkLines } from './links.js';

type Role = 'node' | 'nat' | 'internet';

export interface NamespacePlan {
  netns: string;
  /** The node, NAT or internet that lives in this namespace. */
  owner: string;
  role: Role;
  /** `ip -n NETNS -batch -` lines: loopback, bridge ports, addresses, routes. */
  ipBatch: string[][];
  /** Per-namespace sysctls, set inside the namespace. */
  sysctls: Record<string, string>;
  /** Sysctls set only where the running kernel has them (a module may provide them). */
  optionalSysctls: Record<string, string>;
  /** nftables ruleset for NAT routers. */
  nftRuleset?: string;
  /** `tc -n NETNS -batch -` lines: the declared link impairments on this namespace's veth ends (plan/links.ts). */
  tcBatch?: string[][];
}

export interface NetworkPlan {
  lab: string;
  /** Changes whenever anything the plan creates would change. */
  hash: string;
  namespaces: NamespacePlan[];
  /** Host-level `ip -batch -` lines that create the veths and bridges inside the namespaces. */
  linkBatch: string[][];
}

export function planNetwork(lab: Lab): NetworkPlan {
  const namespaces: NamespacePlan[] = [];
  const byNetns = new Map<string, NamespacePlan>();
  for (const m of members(lab)) {
    const ns: NamespacePlan = {
      netns: m.netns,
      owner: m.name,
      role: m.kind,
      ipBatch: [['link', 'set', 'lo', 'up']],
      sysctls: {},
      optionalSysctls: {},
    };
    namespaces.push(ns);
    byNetns.set(m.netns, ns);
  }
  const linkBatch: string[][] = [];
  // Bridges first, so that LAN ports can be enslaved in the namespace batches.
  for (const nat of lab.nats) {
    if (nat.lan.bridged) linkBatch.push(['link', 'add', LAN_BRIDGE, 'netns', nat.netns, 'type', 'bridge']);
  }
  for (const l of lab.links) {
    linkBatch.push(['link', 'add', l.a.ifname, 'netns', l.a.netns, 'type', 'veth', 'peer', 'name', l.b.ifname, 'netns', l.b.netns]);
    if (l.bBridge) byNetns.get(l.b.netns)!.ipBatch.push(['link', 'set', l.b.ifname, 'master', l.bBridge]);
  }
  const up = (ns: NamespacePlan, ifname: string) => ns.ipBatch.push(['link', 'set', ifname, 'up']);
  const addr = (ns: NamespacePlan, ifname: string, a: string, prefix: number) => ns.ipBatch.push(['addr', 'add', `${a}/${prefix}`, 'dev', ifname]);
  for (const l of lab.links) {
    up(byNetns.get(l.a.netns)!, l.a.ifname);
    up(byNetns.get(l.b.netns)!, l.b.ifname);
  }
  for (const node of lab.nodes) {
    const ns = byNetns.get(node.netns)!;
    addr(ns, node.link.ifname, node.link.address, node.link.prefix);
    ns.ipBatch.push(['route', 'add', 'default', 'via', node.link.gateway, 'dev', node.link.ifname]);
  }
  for (const nat of lab.nats) {
    const ns = byNetns.get(nat.netns)!;
    if (nat.lan.bridged) up(ns, LAN_BRIDGE);
    addr(ns, nat.lan.ifname, nat.lan.address, nat.lan.prefix);
    addr(ns, nat.outside.ifname, nat.outside.address, nat.outside.prefix);
    // The rest of its outside address pool (nat.outside): flows leave from them too.
    for (const extra of nat.outside.pool.slice(1)) addr(ns, nat.outside.ifname, extra, nat.outside.prefix);
    ns.ipBatch.push(['route', 'add', 'default', 'via', nat.outside.gateway, 'dev', nat.outside.ifname]);
    ns.sysctls = natSysctls(nat);
    ns.optionalSysctls = natOptionalSysctls(nat);
    ns.nftRuleset = compileNatRuleset(nat);
  }
  const inet = byNetns.get(lab.internet.netns)!;
  for (const l of lab.internet.links) addr(inet, l.ifname, l.address, l.prefix);
  // The internet forwards between its links and nothing else: it stands for every
  // router between the sites, with no filtering and no NAT.
  inet.sysctls = { 'net.ipv4.ip_forward': '1' };
  // Declared impairments, on the fresh veths (no qdisc yet), applied once the network is configured.
  for (const l of lab.links) {
    if (!l.impairment) continue;
    for (const end of linkLines(l, l.impairment)) {
      if (!end.lines.length) continue;
      const ns = byNetns.get(end.netns)!;
      ns.tcBatch = [...(ns.tcBatch ?? []), ...end.lines];
    }
  }
  const hash = createHash('sha256').update(JSON.stringify({ namespaces, linkBatch })).digest('hex').slice(0, 16);
  return { lab: lab.name, hash, namespaces, linkBatch };
}
