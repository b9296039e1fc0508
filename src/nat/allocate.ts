// How the NAT compiler (compile.ts) chooses a new mapping's outside address and port: the
// rules of the `allocate` chain, which srcnat jumps to for every new TCP or UDP flow that
// leaves through the uplink or is hairpinned, so that both share one allocator (one
// sequence counter, one set of learned ports). Pure.
//
// Outside address (several with `nat.outside`):
//   one address          `snat ip to OUT`
//   paired pooling       the lab's inside addresses are dealt to the outside addresses by the
//                        resolver (model's assignments): one rule per outside address matching
//                        its inside addresses; any other inside address by
//                        `jhash ip saddr mod N map { 0 : A0, ... }`, paired all the same
//   arbitrary pooling    `numgen random mod N map { ... }`: an outside address per new mapping
//                        (a flow of an endpoint already mapped reuses its mapping, below)
//   port blocks          one rule per inside address: its outside address and its block's ports;
//                        TCP and UDP from any other inside address are dropped (it has no block)
// Outside port:
//   preserve             the kernel keeps the inside port when the 5-tuple is free (without a
//                        port range) or when it lies in the range; otherwise it reuses the port
//                        of a live mapping of the same inside endpoint, or picks a random free
//                        one in the range. A port another endpoint already holds gets a hashed
//                        port instead (PORT_OWNED_BY_ANOTHER below: no port overloading)
//   random               in the default range, a hash of the mapping's key (inside address .
//                        port, and the remote address under address-dependent mapping):
//                        random-looking, and the same for every flow of the mapping; in a range
//                        or block of its own, the kernel's `fully-random` choice of a free port,
//                        learned in @endpoints; under address-and-port-dependent mapping the
//                        kernel's `fully-random`, a fresh port per flow
//   sequential           `numgen inc`: each new mapping takes the next port of the range
// Mappings the kernel cannot remake on its own (sequential ports, random ones in a range of
// their own, arbitrary pooling) are learned
// in @endpoints (inside endpoint -> outside address . port) and reused by the first rule.
//
// Measured on Linux 6.x with nft 1.0.6 (so not done otherwise):
// - `snat to ADDR:LOW-HIGH` without flags does not allocate sequentially: it keeps an in-range
//   inside port, and otherwise starts at a random offset in the range (nf_nat_core.c); there is
//   no sequential mode, so sequential ports come from a counter. A range map turns the
//   counter (or a hash) into a port, because nft 1.0.6 hands a computed value to the NAT
//   without byte-order conversion (see compile.ts): `numgen inc mod N offset LOW` gave ports
//   256 apart. The map holds one element per port of the range (64512 for the default range,
//   ~1 MB of ruleset text, loaded in ~0.35 s).
// - The kernel does not look further once a rule names one port: when the counter comes
//   round to a port still in use towards the same remote endpoint, that flow is dropped
//   (a clash). A real sequential NAT would skip the port; here it takes a range's worth of
//   new mappings to come round.
// - In a range of its own, once the range is nearly full, the first packet of a new flow is
//   now and then dropped when conntrack confirms it (insert_failed: the port the kernel's
//   `fully-random` pick gave clashes; why, while free ports remain, was not pinned down, as
//   the kernel searches 248 ports in all from random places). Under APDM the flow's next packet
//   is picked a port anew; under EIM and ADM the mapping was already learned in @endpoints
//   from the dropped packet, so the flow's packets keep that port and are dropped until the
//   entry expires. `labctl check --quota` measured such a NAT refusing new flows from 94% of
//   a 1024-port range on (957 to 1019 flows); check allows 90%.
// - nftables cannot look up a constant in a concatenation (`100.64.1.100 . th sport @set`
//   does not parse), so the guard against port overloading checks a port's use on any
//   outside address (@taken), not on the one the rule would choose: with several outside
//   addresses it may hash a port that was free on its own address.
import type { Nat, PortRange } from '../lab/model.js';
import { DEFAULT_PORTS, isDefaultRange, rangeSize } from '../lab/resolve-nat-ports.js';

const EPHEMERAL_LOW = DEFAULT_PORTS.low;
const EPHEMERAL_COUNT = rangeSize(DEFAULT_PORTS);

// nft 1.0.6 hands jhash's result (host byte order) to the NAT as a port (network byte order)
// without converting it, so the port the kernel uses is the hash's two low bytes swapped:
// port = (h & 0xff) << 8 | h >> 8. The hash's range cannot be chosen to keep that above
// 1023, so each rule checks the swapped port's high byte (h & 0xff) first, and a key whose
// hash would give a port below 1024 tries the next seed. Each choice depends only on the
// key, so a key always gets the same port; all three seeds fail for 1 key in ~260,000,
// which then keeps its inside port where it can (the kernel's default), still the same
// port for every destination. (Only for the default range: other ranges go through a map.)
export const HASH_SEEDS = [0x6c6162, 0x6e6174, 0x6d6170];

/** The seed of the address hash under paired pooling (any fixed value). */
const POOL_SEED = 0x706f6f;

export function portHash(key: string, seed: number): string {
  return `jhash ${key} mod ${EPHEMERAL_COUNT} seed 0x${seed.toString(16)} offset ${EPHEMERAL_LOW}`;
}

/** A new flow whose inside port is already an outside port mapped for another inside endpoint. */
export const PORT_OWNED_BY_ANOTHER = 'meta l4proto . th sport @taken meta l4proto . th sport . ip saddr . th sport != @owners';

/** What a mapping is per: the key of its hashed port and of @endpoints; undefined for one per flow (APDM) or a fixed port. */
export function mappingKey(nat: Nat): string | undefined {
  const b = nat.behaviour;
  if (b.fixedPort !== undefined) return undefined;
  if (b.mapping === 'endpoint-independent') return 'ip saddr . th sport';
  if (b.mapping === 'address-dependent') return 'ip saddr . th sport . ip daddr';
  return undefined;
}

/** Whether the NAT keeps inside ports and so must keep other inside endpoints off a port already mapped. */
export function preservesPorts(nat: Nat): boolean {
  const b = nat.behaviour;
  return b.fixedPort === undefined && b.mapping === 'endpoint-independent' && b.portAllocation === 'preserve';
}

/** Whether the NAT learns @endpoints: to remake mappings the kernel cannot, or to count only new mappings against a quota. */
export function learnsEndpoints(nat: Nat): boolean {
  return mappingKey(nat) !== undefined && (reusesEndpoints(nat) || nat.behaviour.quota !== undefined);
}

/** Whether a flow of an endpoint already mapped must be given that mapping by the ruleset (the kernel would choose anew). */
function reusesEndpoints(nat: Nat): boolean {
  const b = nat.behaviour;
  if (mappingKey(nat) === undefined) return false;
  return b.portAllocation === 'sequential' || randomInOwnRange(nat) || (nat.outside.pool.length > 1 && b.pooling === 'arbitrary' && !b.portBlock);
}

/** Random ports (EIM or ADM) from a range other than the default, or from port blocks: the kernel picks them (groupRules). */
function randomInOwnRange(nat: Nat): boolean {
  const b = nat.behaviour;
  return b.portAllocation === 'random' && mappingKey(nat) !== undefined && (b.portBlock !== undefined || !isDefaultRange(b.ports));
}

/** The name of the map from index to port of a range. */
export const rangeMapName = (r: PortRange) => `ports_${r.low}_${r.high}`;

interface Group {
  /** The match that selects the group's inside addresses ('' for any). */
  match: string;
  /** The outside address: an address, or an expression that picks one. */
  address: string;
  range: PortRange;
}

export interface Allocation {
  /** Rules of the allocate chain, in order. */
  rules: string[];
  /** Rules for other protocols (ICMP ...), in srcnat: the outside address alone. */
  otherRules: string[];
  /** The index -> port maps the rules use. */
  rangeMaps: PortRange[];
}

const poolMap = (pool: string[]) => `{ ${pool.map((a, i) => `${i} : ${a}`).join(', ')} }`;

function groups(nat: Nat): { groups: Group[]; otherRules: string[]; dropOthers: boolean } {
  const b = nat.behaviour;
  const pool = nat.outside.pool;
  const OUT = nat.outside.address;
  if (b.portBlock) {
    return {
      groups: b.assignments.map((a) => ({ match: `ip saddr ${a.inside} `, address: a.outside, range: a.ports! })),
      otherRules: [...b.assignments.map((a) => `ip saddr ${a.inside} snat ip to ${a.outside}`), `snat ip to ${OUT}`],
      dropOthers: true,
    };
  }
  if (pool.length > 1 && b.pooling === 'paired') {
    const byOutside = pool
      .map((out) => ({ out, inside: b.assignments.filter((a) => a.outside === out).map((a) => a.inside) }))
      .filter((g) => g.inside.length > 0);
    const hashed = `jhash ip saddr mod ${pool.length} seed 0x${POOL_SEED.toString(16)} map ${poolMap(pool)}`;
    return {
      groups: [
        ...byOutside.map((g) => ({ match: `ip saddr { ${g.inside.join(', ')} } `, address: g.out, range: b.ports })),
        { match: '', address: hashed, range: b.ports },
      ],
      otherRules: [...byOutside.map((g) => `ip saddr { ${g.inside.join(', ')} } snat ip to ${g.out}`), `snat ip to ${hashed}`],
      dropOthers: false,
    };
  }
  if (pool.length > 1) {
    const random = `numgen random mod ${pool.length} map ${poolMap(pool)}`;
    return { groups: [{ match: '', address: random, range: b.ports }], otherRules: [`snat ip to ${random}`], dropOthers: false };
  }
  return { groups: [{ match: '', address: OUT, range: b.ports }], otherRules: [`snat ip to ${OUT}`], dropOthers: false };
}

const IPV4 = /^\d+\.\d+\.\d+\.\d+$/;

/** `snat ip to ADDR:PORT`; around an address expression (a map) the colon takes spaces, so that nft reads it apart. */
const to = (address: string, port: string) => `snat ip to ${IPV4.test(address) ? `${address}:${port}` : `${address} : ${port}`}`;

/** One group's rules (without its match). */
function groupRules(nat: Nat, g: Group, useMap: (r: PortRange) => string): string[] {
  const b = nat.behaviour;
  const key = mappingKey(nat);
  const range = `${g.range.low}-${g.range.high}`;
  const n = rangeSize(g.range);
  if (b.portAllocation === 'sequential') return [to(g.address, `numgen inc mod ${n} map @${useMap(g.range)}`)];
  if (!key) return [`${to(g.address, range)} fully-random`]; // APDM random (preserve is refused for it)
  if (isDefaultRange(g.range)) {
    const hashed = (guard: string) => HASH_SEEDS.map((seed) => `${guard}${portHash(key, seed)} & 0xff >= 4 ${to(g.address, portHash(key, seed))}`);
    if (preservesPorts(nat)) return [...hashed(`${PORT_OWNED_BY_ANOTHER} `), `snat ip to ${g.address}`];
    return [...hashed(''), `snat ip to ${g.address}`];
  }
  const hashed = to(g.address, `jhash ${key} mod ${n} seed 0x${HASH_SEEDS[0]!.toString(16)} map @${useMap(g.range)}`);
  if (preservesPorts(nat)) return [`${PORT_OWNED_BY_ANOTHER} ${hashed}`, to(g.address, range)];
  // Random in a range of its own (a port range, a port block): the kernel's random choice of a
  // free port, kept for the mapping's later flows by @endpoints. A hash into a small range
  // would give two inside endpoints one port (1 in 3 for 12 flows in 64 ports), and their
  // flows to one destination would clash and be dropped, long before the block is full.
  return [`${to(g.address, range)} fully-random`];
}

/** The allocate chain's rules, the other protocols' srcnat rules and the range maps they need. */
export function allocation(nat: Nat): Allocation {
  const b = nat.behaviour;
  if (b.fixedPort !== undefined)
    return { rules: [`snat ip to ${nat.outside.address}:${b.fixedPort}`], otherRules: [`snat ip to ${nat.outside.address}`], rangeMaps: [] };
  const rangeMaps: PortRange[] = [];
  const useMap = (r: PortRange) => {
    if (!rangeMaps.some((m) => m.low === r.low && m.high === r.high)) rangeMaps.push(r);
    return rangeMapName(r);
  };
  const { groups: gs, otherRules, dropOthers } = groups(nat);
  const key = mappingKey(nat);
  const rules: string[] = [];
  if (reusesEndpoints(nat)) rules.push(`meta l4proto . ${key} @endpoints snat ip to meta l4proto . ${key} map @endpoints`);
  for (const g of gs) for (const r of groupRules(nat, g, useMap)) rules.push(`${g.match}${r}`);
  if (dropOthers) rules.push('drop');
  return { rules, otherRules, rangeMaps };
}

/** The text of a range map: index -> port, one element per port. */
export function rangeMapElements(r: PortRange): string {
  const out: string[] = [];
  for (let p = r.low; p <= r.high; p++) out.push(`${p - r.low} : ${p}`);
  return out.join(', ');
}
