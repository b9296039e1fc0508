// The NAT compiler: one NAT's declared behaviour -> the nftables ruleset text that makes
// its namespace behave that way. Pure; `labctl net rules NAT` prints its output.
//
// How each RFC 4787 behaviour is made from stock netfilter:
// - Mapping (outbound, postrouting nat):
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
//   fixed port (the article)    `snat to OUT:PORT` for every flow.
// - Filtering (inbound, prerouting nat). Conntrack alone admits only exact replies, which
//   is APDF. For EIF and ADF the NAT learns its mappings as traffic leaves, in the dynamic
//   map @mappings (outside proto . port -> inside addr . port), and the remote addresses
//   each outside port has sent to, in the dynamic set @peers; a new inbound flow to a
//   mapped port is DNATed to its inside endpoint if EIF, or if ADF and its source address
//   is in @peers for that port.
// - Lifetimes: map and set elements are refreshed by every packet of a flow, in both
//   directions, with the timeout conntrack itself gives that flow (unreplied or stream
//   for UDP), so a mapping lives exactly as long as the conntrack entries that use it.
// - Static forwards DNAT an outside port to a node and obey the filtering unless public.
import type { Nat } from '../lab/model.js';

export const NAT_TABLE = 'labctl';
/** nft input that makes a NAT labctl built forget what it learned (its conntrack entries go separately). */
export const FLUSH_LEARNED_STATE = `flush map ip ${NAT_TABLE} mappings\nflush set ip ${NAT_TABLE} owners\nflush set ip ${NAT_TABLE} peers\n`;
const EPHEMERAL_LOW = 1024;
const EPHEMERAL_COUNT = 65536 - EPHEMERAL_LOW;

function q(ifname: string): string {
  return `"${ifname}"`;
}

/** The `snat ip to ...` target of the NAT's mapping behaviour (for hashed ports: the first choice). */
export function snatTarget(nat: Nat): string {
  const b = nat.behaviour;
  const out = nat.outside.address;
  if (b.fixedPort !== undefined) return `${out}:${b.fixedPort}`;
  const key = hashKey(nat);
  if (key) return `${out}:${portHash(key, HASH_SEEDS[0]!)}`;
  // APDM: a fresh random port for every new flow.
  return b.mapping === 'address-and-port-dependent' ? `${out}:${EPHEMERAL_LOW}-65535 fully-random` : out;
}

/** What the outside port is a hash of, or undefined when the port is not hashed. */
function hashKey(nat: Nat): string | undefined {
  const b = nat.behaviour;
  if (b.fixedPort !== undefined) return undefined;
  if (b.mapping === 'endpoint-independent') return b.portPreservation ? undefined : 'ip saddr . th sport';
  if (b.mapping === 'address-dependent') return 'ip saddr . th sport . ip daddr';
  return undefined;
}

// nft 1.0.6 hands jhash's result (host byte order) to the NAT as a port (network byte order)
// without converting it, so the port the kernel uses is the hash's two low bytes swapped:
// port = (h & 0xff) << 8 | h >> 8. The hash's range cannot be chosen to keep that above
// 1023, so each rule checks the swapped port's high byte (h & 0xff) first, and a key whose
// hash would give a port below 1024 tries the next seed. Each choice depends only on the
// key, so a key always gets the same port; all three seeds fail for 1 key in ~260,000,
// which then keeps its inside port where it can (the kernel's default), still the same
// port for every destination.
const HASH_SEEDS = [0x6c6162, 0x6e6174, 0x6d6170];

function portHash(key: string, seed: number): string {
  return `jhash ${key} mod ${EPHEMERAL_COUNT} seed 0x${seed.toString(16)} offset ${EPHEMERAL_LOW}`;
}

/** Whether the NAT keeps inside ports and so must keep other inside endpoints off a port already mapped. */
function preservesPorts(nat: Nat): boolean {
  const b = nat.behaviour;
  return b.fixedPort === undefined && b.mapping === 'endpoint-independent' && b.portPreservation;
}

// A new flow whose inside port is already an outside port mapped for another inside endpoint.
const PORT_OWNED_BY_ANOTHER = 'meta l4proto . th sport @mappings meta l4proto . th sport . ip saddr . th sport != @owners';

/** The srcnat statements of the mapping behaviour, tried in order; the first whose match holds translates. */
export function snatStatements(nat: Nat): string[] {
  const out = nat.outside.address;
  const hashed = (key: string, guard = '') => HASH_SEEDS.map((seed) => `${guard}${portHash(key, seed)} & 0xff >= 4 snat ip to ${out}:${portHash(key, seed)}`);
  if (preservesPorts(nat)) return [...hashed('ip saddr . th sport', `${PORT_OWNED_BY_ANOTHER} `), `snat ip to ${out}`];
  const key = hashKey(nat);
  if (!key) return [`snat ip to ${snatTarget(nat)}`];
  return [...hashed(key), `snat ip to ${out}`];
}

/** The extra match a new inbound flow must pass under the NAT's filtering, or null when none may pass. */
function filterMatch(nat: Nat): string | null {
  switch (nat.behaviour.filtering) {
    case 'endpoint-independent':
      return '';
    case 'address-dependent':
      return 'meta l4proto . th dport . ip saddr @peers ';
    case 'address-and-port-dependent':
      return null; // only conntrack replies get in
  }
}

export function compileNatRuleset(nat: Nat): string {
  const b = nat.behaviour;
  const OUT = nat.outside.address;
  const OUTIF = q(nat.outside.ifname);
  const LANIF = q(nat.lan.ifname);
  const LAN = nat.lan.subnet;
  const udpUnreplied = `${b.udpTimeouts.unreplied}s`;
  const udpStream = `${b.udpTimeouts.stream}s`;
  const tcpTimeout = `${b.tcpMappingTimeout}s`;
  const filter = filterMatch(nat);
  const snat = snatStatements(nat);
  const owners = preservesPorts(nat);
  const L: string[] = [];
  const add = (s = '') => L.push(s);

  add(`# labctl NAT ruleset for ${nat.name} (site ${nat.site}), loaded by one "nft -f FILE" (a root-only file), one atomic transaction`);
  add(
    `# mapping ${b.mapping}, filtering ${b.filtering}, hairpinning ${b.hairpinning ? 'on' : 'off'}, port preservation ${b.portPreservation ? 'on' : 'off'}${b.fixedPort !== undefined ? `, fixed outside port ${b.fixedPort}` : ''}`,
  );
  add(`# outside ${OUT} on ${nat.outside.ifname}; inside ${LAN} on ${nat.lan.ifname}`);
  // Declaring then deleting the table makes the load replace any earlier one atomically.
  add(`table ip ${NAT_TABLE}`);
  add(`delete table ip ${NAT_TABLE}`);
  add(`table ip ${NAT_TABLE} {`);
  add(`\t# outside protocol . port -> inside address . port, learned from traffic`);
  add(`\tmap mappings {`);
  add(`\t\ttype inet_proto . inet_service : ipv4_addr . inet_service`);
  add(`\t\tflags dynamic,timeout`);
  add(`\t\ttimeout ${udpUnreplied}`);
  add(`\t}`);
  add(`\t# outside protocol . port . the inside address . port it is mapped for (who owns a preserved port)`);
  add(`\tset owners {`);
  add(`\t\ttype inet_proto . inet_service . ipv4_addr . inet_service`);
  add(`\t\tflags dynamic,timeout`);
  add(`\t\ttimeout ${udpUnreplied}`);
  add(`\t}`);
  add(`\t# outside protocol . port . remote address the inside has sent to (address-dependent filtering)`);
  add(`\tset peers {`);
  add(`\t\ttype inet_proto . inet_service . ipv4_addr`);
  add(`\t\tflags dynamic,timeout`);
  add(`\t\ttimeout ${udpUnreplied}`);
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
  add(`\t# new flows from outside to the outside address: static forwards, then learned mappings`);
  add(`\tchain inbound {`);
  for (const f of b.forwards) {
    const m = f.public ? '' : filter;
    if (m === null) continue;
    add(`\t\tmeta l4proto ${f.protocol} th dport ${f.port} ${m}dnat ip to ${f.toAddress}:${f.toPort}`);
  }
  if (filter !== null) add(`\t\tmeta l4proto { tcp, udp } ${filter}dnat ip to meta l4proto . th dport map @mappings`);
  else add(`\t\t# address-and-port-dependent filtering: no new inbound flow is admitted`);
  add(`\t}`);
  if (b.hairpinning) {
    add();
    add(`\t# inside hosts reaching each other through the outside address`);
    add(`\tchain hairpin {`);
    for (const f of b.forwards) add(`\t\tmeta l4proto ${f.protocol} th dport ${f.port} dnat ip to ${f.toAddress}:${f.toPort}`);
    add(`\t\tmeta l4proto { tcp, udp } dnat ip to meta l4proto . th dport map @mappings`);
    add(`\t}`);
  }
  add();
  add(`\tchain srcnat {`);
  add(`\t\ttype nat hook postrouting priority srcnat; policy accept;`);
  for (const st of snat) add(`\t\toifname ${OUTIF} ip saddr ${LAN} meta l4proto { tcp, udp } ${st}`);
  add(`\t\toifname ${OUTIF} ip saddr ${LAN} snat ip to ${OUT}`);
  if (b.hairpinning) {
    add(`\t\t# hairpinned packets show the sender's outside address and port`);
    for (const st of snat) add(`\t\toifname ${LANIF} ip saddr ${LAN} ct status dnat meta l4proto { tcp, udp } ${st}`);
  }
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
  const learn = (chain: string, port: 'th sport' | 'th dport', inside: string, remote: string) => {
    add();
    add(`\tchain ${chain} {`);
    const variants: [string, string][] = [
      ['meta l4proto udp ct status assured', udpStream],
      ['meta l4proto udp ct status & assured == 0', udpUnreplied],
      ['meta l4proto tcp', tcpTimeout],
    ];
    for (const [match, t] of variants) {
      add(`\t\t${match} update @mappings { meta l4proto . ${port} timeout ${t} : ${inside} }`);
      if (owners) add(`\t\t${match} update @owners { meta l4proto . ${port} . ${inside} timeout ${t} }`);
      add(`\t\t${match} update @peers { meta l4proto . ${port} . ${remote} timeout ${t} }`);
    }
    add(`\t}`);
  };
  learn('learn_sent_original', 'th sport', 'ct original ip saddr . ct original proto-src', 'ip daddr');
  learn('learn_sent_reply', 'th sport', 'ct reply ip saddr . ct reply proto-src', 'ip daddr');
  learn('learn_received_reply', 'th dport', 'ct original ip saddr . ct original proto-src', 'ip saddr');
  learn('learn_received_original', 'th dport', 'ct reply ip saddr . ct reply proto-src', 'ip saddr');
  add(`}`);
  return `${L.join('\n')}\n`;
}

/** Per-namespace sysctls of a NAT router (set inside its namespace only). */
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

export function natSysctls(nat: Nat): Record<string, string> {
  return {
    'net.ipv4.ip_forward': '1',
    'net.netfilter.nf_conntrack_udp_timeout': String(nat.behaviour.udpTimeouts.unreplied),
    'net.netfilter.nf_conntrack_udp_timeout_stream': String(nat.behaviour.udpTimeouts.stream),
  };
}
