// Resolution stage "interface names": the resolved Lab's members and the veth links between
// them, and a check that every interface name fits Linux's limit and is unique within its
// namespace (names are shortened to fit, see ifnames.ts, and two shortened names can clash).
import { type Cidr, formatCidr, formatIpv4 } from '../util/ipv4.js';
import { IFNAME_MAX_BYTES, LAN_BRIDGE, internetIfname, natLanPortIfname, natSoleLanIfname, natUplinkIfname, nodeIfname } from './ifnames.js';
import type { Attachment, Internet, Lab, Link, Nat, NatBehaviour, Node } from './model.js';
import type { Addresses } from './resolve-addresses.js';
import type { SiteTree } from './resolve-names.js';
import type { Subnets } from './resolve-subnets.js';
import type { Report } from './resolve.js';
import type { LabFile } from './schema.js';

export function wireLab(
  file: LabFile,
  source: string,
  tree: SiteTree,
  subnets: Subnets,
  addresses: Addresses,
  behaviours: NatBehaviour[],
  report: Report,
): Lab {
  const { prefix, internetName, sites, internetNodes, parent, natNames } = tree;
  const nsName = (n: string) => `ns-${prefix}${n}`;
  const att = (ifname: string, addr: number, c: Cidr): Attachment => ({ ifname, address: formatIpv4(addr), prefix: c.prefix, subnet: formatCidr(c) });
  const links: Link[] = [];
  const internet: Internet = {
    kind: 'internet',
    name: internetName,
    netns: nsName(internetName),
    machine: file.internet?.machine ?? false,
    links: [],
  };
  const nats: Nat[] = [];
  const nodes: Node[] = [];

  sites.forEach((s, i) => {
    const natName = natNames[i]!;
    const p = parent[i];
    const lanMembers = [...(s.nodes ?? []).map((n) => n.name), ...natNames.filter((_, c) => parent[c] === i)];
    const bridged = lanMembers.length > 1;
    const toInternet = p === undefined;
    const upC = toInternet ? subnets.uplink[i]! : subnets.lan[p]!;
    const up = addresses.siteUplink[i]!;
    nats.push({
      kind: 'nat',
      name: natName,
      site: s.name,
      netns: nsName(natName),
      machine: s.nat?.machine ?? true,
      behaviour: behaviours[i]!,
      outside: {
        ...att(natUplinkIfname(natName, toInternet), up.address, upC),
        gateway: formatIpv4(up.gateway),
        upstream: toInternet ? internetName : natNames[p]!,
        pool: addresses.sitePool[i]!.map(formatIpv4),
      },
      lan: { ...att(bridged ? LAN_BRIDGE : natSoleLanIfname(natName), addresses.lanGateway[i]!, subnets.lan[i]!), members: lanMembers, bridged },
    });
    (s.nodes ?? []).forEach((n, j) => {
      nodes.push({
        kind: 'node',
        name: n.name,
        site: s.name,
        netns: nsName(n.name),
        machine: n.machine ?? true,
        link: { ...att(nodeIfname(n.name), addresses.nodeAddress[i]![j]!, subnets.lan[i]!), gateway: formatIpv4(addresses.lanGateway[i]!) },
        router: natName,
      });
    });
  });
  internetNodes.forEach((n, i) => {
    const c = subnets.internetNodeUplink[i]!;
    const up = addresses.internetNodeUplink[i]!;
    nodes.push({
      kind: 'node',
      name: n.name,
      netns: nsName(n.name),
      machine: n.machine ?? true,
      link: { ...att(nodeIfname(n.name), up.address, c), gateway: formatIpv4(up.gateway) },
      router: internetName,
    });
    internet.links.push({ ...att(internetIfname(n.name), up.gateway, c), peer: n.name });
    links.push({
      a: { netns: nsName(n.name), ifname: nodeIfname(n.name), owner: n.name },
      b: { netns: internet.netns, ifname: internetIfname(n.name), owner: internetName },
    });
  });
  // LAN links: each member's own interface to its NAT's LAN side; then the NAT's uplink to the internet.
  nats.forEach((nat, i) => {
    for (const m of nat.lan.members) {
      const memberNode = nodes.find((n) => n.name === m);
      const memberNat = nats.find((n) => n.name === m);
      links.push({
        a: { netns: memberNode ? memberNode.netns : memberNat!.netns, ifname: memberNode ? memberNode.link.ifname : memberNat!.outside.ifname, owner: m },
        b: { netns: nat.netns, ifname: nat.lan.bridged ? natLanPortIfname(m) : nat.lan.ifname, owner: nat.name },
        ...(nat.lan.bridged ? { bBridge: LAN_BRIDGE } : {}),
      });
    }
    if (parent[i] === undefined) {
      const site = sites[i]!.name;
      internet.links.push({ ...att(internetIfname(site), addresses.siteUplink[i]!.gateway, subnets.uplink[i]!), peer: nat.name });
      links.push({
        a: { netns: nat.netns, ifname: nat.outside.ifname, owner: nat.name },
        b: { netns: internet.netns, ifname: internetIfname(site), owner: internetName },
      });
    }
  });
  checkIfnames(links, tree.declaredAt, report);
  return { name: file.name, source, prefix, ...(file.image ? { image: file.image } : {}), internet, nats, nodes, links };
}

/**
 * Interface names must fit and be unique within each namespace (after shortening). A clash
 * is reported at the field that declared the far end of the link (what the interface is
 * for), naming the other link's far end and its field too.
 */
function checkIfnames(links: Link[], declaredAtMap: ReadonlyMap<string, string>, report: Report): void {
  const declaredAt = (owner: string) => declaredAtMap.get(owner) ?? owner;
  const perNs = new Map<string, Map<string, string>>(); // netns -> ifname -> far end's owner
  for (const l of links) {
    for (const [end, far] of [
      [l.a, l.b],
      [l.b, l.a],
    ] as const) {
      const m = perNs.get(end.netns) ?? new Map<string, string>();
      perNs.set(end.netns, m);
      if (Buffer.byteLength(end.ifname) > IFNAME_MAX_BYTES)
        report(declaredAt(far.owner), `interface name "${end.ifname}" is longer than ${IFNAME_MAX_BYTES} bytes`);
      const other = m.get(end.ifname);
      if (other !== undefined) {
        report(
          declaredAt(far.owner),
          `the interface of ${end.owner} towards ${far.owner} would be named "${end.ifname}" in namespace ${end.netns}, the same as the one towards ${other} (${declaredAt(other)}); interface names are cut to ${IFNAME_MAX_BYTES} bytes, so rename one of them`,
        );
      } else m.set(end.ifname, far.owner);
    }
  }
}
