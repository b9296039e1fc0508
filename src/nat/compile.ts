// The NAT compiler: one NAT's declared behaviour -> the nftables ruleset text that makes
// its namespace behave that way. Pure; `labctl net rules NAT` prints its output.
//
// How each RFC 4787 behaviour is made from stock netfilter:
// - Mapping (outbound, postrouting nat; the outside address and port: allocate.ts):
//   EIM with port preservation  `snat to OUT`: the kernel keeps the inside port when free
//                               and reuses it for every destination. The kernel keeps only
//                               whole 5-tuples unique, so a second inside endpoint with the
//                               same port would share that outside port towards the
//                               destinations the first has not used (port overloading),
//                               and its mapping would change with the destination: the
//                               owner of each learned outside port is kept in @owners, and
//                               an endpoint whose port is owned by another gets a hashed
//                               port instead (as without preservation);
//   EIM without preservation    outside port = jhash(inside addr . inside port): one
//                               outside port per inside endpoint, whatever the destination;
//   ADM                         jhash(inside addr . inside port . remote addr);
//   APDM                        `fully-random`: a fresh random port for every new flow;
//   sequential allocation       `numgen inc`: the next port of the range per new mapping;
//   fixed port (the article)    `snat to OUT:PORT` for every flow.
// - Filtering (inbound, prerouting nat). Conntrack alone admits only exact replies, which
//   is APDF. For EIF and ADF the NAT learns its mappings as traffic leaves, in the dynamic
//   map @mappings (outside addr . proto . port -> inside addr . port), and the remote
//   addresses each outside port has sent to, in the dynamic set @peers; a new inbound flow
//   to a mapped port is DNATed to its inside endpoint if EIF, or if ADF and its source
//   address is in @peers for that port.
// - Lifetimes: map and set elements are refreshed by every packet of a flow, in both
//   directions, with the timeout conntrack itself gives that flow (unreplied or stream
//   for UDP), so a mapping lives exactly as long as the conntrack entries that use it.
//   Conntrack's own timers are the NAT's: `ct timeout` objects (nft >= 0.9.1, kernel
//   nf_conntrack_timeout) attached to every new flow, for TCP's established and transitory
//   states and UDP's unreplied and replied ones; they are per NAT and per flow, where the
//   nf_conntrack_*_timeout sysctls (still set, for the namespace's own traffic) are per
//   namespace. TCP's close state (after a reset) keeps the kernel's 10 s.
// - Quota (RFC 6888 REQ-4): `ct count` over a set keyed by inside address counts the flows
//   that open a new mapping (under EIM and ADM a flow of a mapping already in @endpoints
//   opens none); a new flow past the quota is dropped before it is translated, and the
//   flows already mapped go on. A mapping used by several flows stops counting once the flow
//   that opened it ends, though the others may still hold its port.
// - Static forwards DNAT an outside port to a node and obey the filtering unless public.
import type { Nat } from '../lab/model.js';
import { allocation, learnsEndpoints, mappingKey, preservesPorts, rangeMapElements, rangeMapName } from './allocate.js';

export const NAT_TABLE = 'labctl';
/** nft input that makes a NAT labctl built forget what it learned (its conntrack entries go separately). */
export const FLUSH_LEARNED_STATE = ['map mappings', 'set owners', 'set taken', 'set peers', 'map endpoints', 'set address_quota']
  .map((what) => `flush ${what.replace(' ', ` ip ${NAT_TABLE} `)}\n`)
  .join('');

/** The TCP states RFC 5382's transitory timer covers (all but established and close, the state after a reset). */
const TRANSITORY_STATES = ['syn_sent', 'syn_recv', 'fin_wait', 'close_wait', 'last_ack', 'time_wait'];

function q(ifname: string): string {
  return `"${ifname}"`;
}

/** The allocate chain's rules: how a new TCP or UDP mapping gets its outside address and port, tried in order. */
export function snatStatements(nat: Nat): string[] {
  return allocation(nat).rules;
}

/** The extra match a new inbound flow must pass under the NAT's filtering, or null when none may pass. */
function filterMatch(nat: Nat): string | null {
  switch (nat.behaviour.filtering) {
    case 'endpoint-independent':
      return '';
    case 'address-dependent':
      return 'ip daddr . meta l4proto . th dport . ip saddr @peers ';
    case 'address-and-port-dependent':
      return null; // only conntrack replies get in
  }
}

/** The NAT's outside addresses as an nft match value: one address, or an anonymous set. */
function outsideSet(nat: Nat): string {
  const pool = nat.outside.pool;
  return pool.length === 1 ? pool[0]! : `{ ${pool.join(', ')} }`;
}

function describe(nat: Nat): string {
  const b = nat.behaviour;
  const parts = [
    `mapping ${b.mapping}`,
    `filtering ${b.filtering}`,
    `hairpinning ${b.hairpinning ? 'on' : 'off'}`,
    b.fixedPort !== undefined ? `fixed outside port ${b.fixedPort}` : `port allocation ${b.portAllocation} in ${b.ports.low}-${b.ports.high}`,
    ...(nat.outside.pool.length > 1 ? [`${nat.outside.pool.length} outside addresses, ${b.pooling} pooling`] : []),
    ...(b.portBlock ? [`port blocks of ${b.portBlock.size} (at most ${b.portBlock.maxBlocks} per inside address)`] : []),
    ...(b.quota !== undefined ? [`quota ${b.quota} ports per inside address`] : []),
  ];
  return parts.join(', ');
}

export function compileNatRuleset(nat: Nat): string {
  const b = nat.behaviour;
  const OUT = outsideSet(nat);
  const OUTIF = q(nat.outside.ifname);
  const LANIF = q(nat.lan.ifname);
  const LAN = nat.lan.subnet;
  const udpUnreplied = `${b.udpTimeouts.unreplied}s`;
  const udpStream = `${b.udpTimeouts.stream}s`;
  const tcpTimeout = `${b.tcpMappingTimeout}s`;
  const filter = filterMatch(nat);
  const alloc = allocation(nat);
  const owners = preservesPorts(nat);
  const endpoints = learnsEndpoints(nat);
  const key = mappingKey(nat);
  const L: string[] = [];
  const add = (s = '') => L.push(s);

  add(`# labctl NAT ruleset for ${nat.name} (site ${nat.site}), loaded by one "nft -f FILE" (a root-only file), one atomic transaction`);
  add(`# ${describe(nat)}${b.profile ? ` (profile ${b.profile})` : ''}`);
  add(`# outside ${nat.outside.pool.join(', ')} on ${nat.outside.ifname}; inside ${LAN} on ${nat.lan.ifname}`);
  // Declaring then deleting the table makes the load replace any earlier one atomically.
  add(`table ip ${NAT_TABLE}`);
  add(`delete table ip ${NAT_TABLE}`);
  add(`table ip ${NAT_TABLE} {`);
  const dynamic = (
    kind: 'map' | 'set',
    name: string,
    type: string,
    comment: string,
    extra: string[] = ['flags dynamic,timeout', `timeout ${udpUnreplied}`],
  ) => {
    add(`\t# ${comment}`);
    add(`\t${kind} ${name} {`);
    add(`\t\ttype ${type}`);
    for (const e of extra) add(`\t\t${e}`);
    add(`\t}`);
  };
  dynamic(
    'map',
    'mappings',
    'ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service',
    'outside address . protocol . port -> inside address . port, learned from traffic',
  );
  dynamic(
    'set',
    'owners',
    'inet_proto . inet_service . ipv4_addr . inet_service',
    'outside protocol . port . the inside address . port it is mapped for (who owns a preserved port)',
  );
  dynamic('set', 'taken', 'inet_proto . inet_service', 'outside protocol . port mapped on any outside address (a preserved port another endpoint holds)');
  dynamic(
    'set',
    'peers',
    'ipv4_addr . inet_proto . inet_service . ipv4_addr',
    'outside address . protocol . port . remote address the inside has sent to (address-dependent filtering)',
  );
  const endpointType = `inet_proto . ipv4_addr . inet_service${b.mapping === 'address-dependent' ? ' . ipv4_addr' : ''} : ipv4_addr . inet_service`;
  dynamic('map', 'endpoints', endpointType, 'protocol . inside endpoint (. remote address under ADM) -> outside address . port: mappings the ruleset remakes');
  dynamic('set', 'address_quota', 'ipv4_addr', 'inside addresses and the mappings each holds (ct count: the quota)', ['size 65535', 'flags dynamic']);
  for (const r of alloc.rangeMaps) {
    add(`\t# index -> port of ${r.low}-${r.high}, for sequential and hashed ports (nft gives a computed port to the NAT unconverted)`);
    add(`\tmap ${rangeMapName(r)} {`);
    add(`\t\ttypeof numgen inc mod ${r.high - r.low + 1} : udp sport`);
    add(`\t\telements = { ${rangeMapElements(r)} }`);
    add(`\t}`);
  }
  add();
  add(`\t# conntrack's timers in this NAT (RFC 5382: established and transitory TCP states)`);
  add(`\tct timeout tcp_timeouts {`);
  add(`\t\tprotocol tcp; l3proto ip`);
  add(`\t\tpolicy = { established: ${b.tcpMappingTimeout}, ${TRANSITORY_STATES.map((s) => `${s}: ${b.tcpTransitoryTimeout}`).join(', ')} }`);
  add(`\t}`);
  add(`\tct timeout udp_timeouts {`);
  add(`\t\tprotocol udp; l3proto ip`);
  add(`\t\tpolicy = { unreplied: ${b.udpTimeouts.unreplied}, replied: ${b.udpTimeouts.stream} }`);
  add(`\t}`);
  add();
  add(`\tchain timeouts {`);
  add(`\t\ttype filter hook prerouting priority filter; policy accept;`);
  add(`\t\tct state new meta l4proto tcp ct timeout set "tcp_timeouts"`);
  add(`\t\tct state new meta l4proto udp ct timeout set "udp_timeouts"`);
  add(`\t}`);
  add();
  add(`\tchain input_filter {`);
  add(`\t\ttype filter hook input priority filter; policy drop;`);
  add(`\t\tiif "lo" accept`);
  add(`\t\tct state established,related accept`);
  add(`\t}`);
  add();
  add(`\tchain forward_filter {`);
  add(`\t\ttype filter hook forward priority filter; policy drop;`);
  add(`\t\tct state established,related accept`);
  if (b.quota !== undefined) {
    add(`\t\t# a new mapping past the inside address's quota is dropped`);
    const known = endpoints && key ? `meta l4proto . ${key} != @endpoints ` : '';
    add(`\t\tiifname ${LANIF} oifname ${OUTIF} ct state new meta l4proto { tcp, udp } ${known}add @address_quota { ip saddr ct count over ${b.quota} } drop`);
  }
  add(`\t\tiifname ${LANIF} oifname ${OUTIF} accept`);
  add(`\t\t# admitted by the inbound chain's filtering (or hairpinned)`);
  add(`\t\tct status dnat accept`);
  add(`\t\t# traffic that never touches the uplink (between LAN members)`);
  add(`\t\tiifname != ${OUTIF} oifname != ${OUTIF} accept`);
  add(`\t}`);
  add();
  add(`\tchain dstnat {`);
  add(`\t\ttype nat hook prerouting priority dstnat; policy accept;`);
  add(`\t\tiifname ${OUTIF} ip daddr ${OUT} jump inbound`);
  if (b.hairpinning) add(`\t\tiifname ${LANIF} ip saddr ${LAN} ip daddr ${OUT} jump hairpin`);
  add(`\t}`);
  add();
  const MAPPED = 'dnat ip to ip daddr . meta l4proto . th dport map @mappings';
  add(`\t# new flows from outside to an outside address: static forwards, then learned mappings`);
  add(`\tchain inbound {`);
  for (const f of b.forwards) {
    const m = f.public ? '' : filter;
    if (m === null) continue;
    add(`\t\tmeta l4proto ${f.protocol} th dport ${f.port} ${m}dnat ip to ${f.toAddress}:${f.toPort}`);
  }
  if (filter !== null) add(`\t\tmeta l4proto { tcp, udp } ${filter}${MAPPED}`);
  else add(`\t\t# address-and-port-dependent filtering: no new inbound flow is admitted`);
  add(`\t}`);
  if (b.hairpinning) {
    add();
    add(`\t# inside hosts reaching each other through an outside address`);
    add(`\tchain hairpin {`);
    for (const f of b.forwards) add(`\t\tmeta l4proto ${f.protocol} th dport ${f.port} dnat ip to ${f.toAddress}:${f.toPort}`);
    add(`\t\tmeta l4proto { tcp, udp } ${MAPPED}`);
    add(`\t}`);
  }
  add();
  add(`\tchain srcnat {`);
  add(`\t\ttype nat hook postrouting priority srcnat; policy accept;`);
  add(`\t\toifname ${OUTIF} ip saddr ${LAN} meta l4proto { tcp, udp } jump allocate`);
  for (const r of alloc.otherRules) add(`\t\toifname ${OUTIF} ip saddr ${LAN} ${r}`);
  if (b.hairpinning) {
    add(`\t\t# hairpinned packets show the sender's outside address and port`);
    add(`\t\toifname ${LANIF} ip saddr ${LAN} ct status dnat meta l4proto { tcp, udp } jump allocate`);
  }
  add(`\t}`);
  add();
  add(`\t# a new mapping's outside address and port (allocate.ts), for outbound and hairpinned flows alike`);
  add(`\tchain allocate {`);
  // (each rule repeats the protocol match: a port translation needs one in its own rule)
  for (const r of alloc.rules) add(`\t\tmeta l4proto { tcp, udp } ${r}`);
  add(`\t}`);
  add();
  add(`\t# learn and refresh mappings from packets leaving through the uplink (after SNAT)`);
  add(`\tchain learn_outbound {`);
  add(`\t\ttype filter hook postrouting priority srcnat + 10; policy accept;`);
  add(`\t\toifname ${OUTIF} ip saddr ${OUT} ct direction original ct original ip saddr ${LAN} jump learn_sent_original`);
  add(`\t\toifname ${OUTIF} ip saddr ${OUT} ct direction reply ct status dnat jump learn_sent_reply`);
  add(`\t}`);
  add();
  add(`\t# refresh them from packets of known flows arriving on the uplink (before DNAT)`);
  add(`\tchain learn_inbound {`);
  add(`\t\ttype filter hook prerouting priority dstnat - 10; policy accept;`);
  add(`\t\tiifname ${OUTIF} ip daddr ${OUT} ct state established ct direction reply jump learn_received_reply`);
  add(`\t\tiifname ${OUTIF} ip daddr ${OUT} ct state established ct direction original ct status dnat jump learn_received_original`);
  add(`\t}`);
  const learn = (chain: string, outside: 'ip saddr' | 'ip daddr', port: 'th sport' | 'th dport', inside: string, remote: string) => {
    add();
    add(`\tchain ${chain} {`);
    const variants: [string, string][] = [
      ['meta l4proto udp ct status assured', udpStream],
      ['meta l4proto udp ct status & assured == 0', udpUnreplied],
      ['meta l4proto tcp', tcpTimeout],
    ];
    const endpoint = `meta l4proto . ${inside}${b.mapping === 'address-dependent' ? ` . ${remote}` : ''}`;
    for (const [match, t] of variants) {
      add(`\t\t${match} update @mappings { ${outside} . meta l4proto . ${port} timeout ${t} : ${inside} }`);
      if (owners) {
        add(`\t\t${match} update @owners { meta l4proto . ${port} . ${inside} timeout ${t} }`);
        add(`\t\t${match} update @taken { meta l4proto . ${port} timeout ${t} }`);
      }
      add(`\t\t${match} update @peers { ${outside} . meta l4proto . ${port} . ${remote} timeout ${t} }`);
      if (endpoints) add(`\t\t${match} update @endpoints { ${endpoint} timeout ${t} : ${outside} . ${port} }`);
    }
    add(`\t}`);
  };
  learn('learn_sent_original', 'ip saddr', 'th sport', 'ct original ip saddr . ct original proto-src', 'ip daddr');
  learn('learn_sent_reply', 'ip saddr', 'th sport', 'ct reply ip saddr . ct reply proto-src', 'ip daddr');
  learn('learn_received_reply', 'ip daddr', 'th dport', 'ct original ip saddr . ct original proto-src', 'ip saddr');
  learn('learn_received_original', 'ip daddr', 'th dport', 'ct reply ip saddr . ct reply proto-src', 'ip saddr');
  add(`}`);
  return `${L.join('\n')}\n`;
}

/**
 * Sysctls a NAT namespace gets only where the kernel has them. With br_netfilter loaded (as
 * on this kind of host, and wherever Docker runs) frames crossing a bridged LAN also pass
 * the NAT's nftables hooks and conntrack as if routed, which breaks hairpinning back to the
 * sender over br-lan; the switches are per namespace, so turning them off here touches only
 * the lab.
 */
export function natOptionalSysctls(nat: Nat): Record<string, string> {
  if (!nat.lan.bridged) return {};
  return {
    'net.bridge.bridge-nf-call-iptables': '0',
    'net.bridge.bridge-nf-call-ip6tables': '0',
    'net.bridge.bridge-nf-call-arptables': '0',
  };
}

/** Per-namespace sysctls of a NAT router (set inside its namespace only). */
export function natSysctls(nat: Nat): Record<string, string> {
  return {
    'net.ipv4.ip_forward': '1',
    'net.netfilter.nf_conntrack_udp_timeout': String(nat.behaviour.udpTimeouts.unreplied),
    'net.netfilter.nf_conntrack_udp_timeout_stream': String(nat.behaviour.udpTimeouts.stream),
  };
}
