// What a lab declares for the view from a node: its NAT and every NAT above it (a home
// NAT behind a carrier-grade NAT is seen from the internet through both). Pure.
import type { Dependency } from '../lab/behaviour.js';
import { SHORT } from '../lab/behaviour.js';
import type { Lab, Nat, Node } from '../lab/model.js';
import { formatRange, isDefaultRange, rangeSize } from '../lab/resolve-nat-ports.js';
import type { Declared, PathHop, PortBehaviour, Target } from './model.js';
import type { PortBlock } from './ports.js';

const ORDER: Dependency[] = ['endpoint-independent', 'address-dependent', 'address-and-port-dependent'];
const maxDep = (a: Dependency, b: Dependency): Dependency => (ORDER.indexOf(a) >= ORDER.indexOf(b) ? a : b);

/** NATs from a node's own NAT up to the one on the internet. */
export function natPath(lab: Lab, first: Nat): Nat[] {
  const out: Nat[] = [];
  let cur: Nat | undefined = first;
  while (cur && !out.includes(cur)) {
    out.push(cur);
    const up: string = cur.outside.upstream;
    cur = lab.nats.find((n) => n.name === up);
  }
  return out;
}

/** How many ports Linux's NAT tries in one round when it picks a port of a range (NF_NAT_MAX_ATTEMPTS). */
const KERNEL_PORT_SEARCH = 128;

/**
 * The new flows one inside address can open towards one server endpoint, as far as ports
 * go: its port blocks, else a port range of its own (on each outside address an arbitrary pool may
 * pick). Where the kernel picks a random port of a range over KERNEL_PORT_SEARCH ports
 * (it searches at most that many at a time from a random place), new flows were measured
 * refused a little before the range is full: 998 of 1000 under APDM, whose next packet
 * tries again; under EIM and ADM, where the mapping learned from the refused packet keeps
 * failing, from 94% of a range on (see nat/allocate.ts). `atLeast` says how far short.
 */
function portCapacity(nat: Nat): Declared['limit'] {
  const b = nat.behaviour;
  // The whole range (1024-65535) is no limit a check reaches: left out.
  if (!b.portBlock && isDefaultRange(b.ports)) return undefined;
  const pool = nat.outside.pool.length;
  const flows = b.portBlock ? b.portBlock.size * b.portBlock.maxBlocks : rangeSize(b.ports) * (b.pooling === 'arbitrary' && pool > 1 ? pool : 1);
  const what = b.portBlock
    ? `${nat.name}'s port blocks (${b.portBlock.maxBlocks} x ${b.portBlock.size} ports)`
    : `${nat.name}'s port range ${formatRange(b.ports)}`;
  const kernelPicks = b.portAllocation !== 'sequential' && flows > KERNEL_PORT_SEARCH;
  if (!kernelPicks) return { flows, why: what };
  return { flows, why: `${what}; new flows may be refused from about 90% full on`, atLeast: Math.floor(flows * 0.9) };
}

/** The inside ports the probes use (Linux's default ephemeral range, ip_local_port_range). */
const EPHEMERAL = { low: 32768, high: 60999 };

/**
 * Composes the behaviours of a path of NATs, innermost first, as seen by a node at
 * `insideAddress` behind the first:
 * - mapping: the most dependent one, except that a fixed-port NAT sends every flow from
 *   one port, which hides what the NATs inside it do (endpoint-independent from outside);
 * - filtering: the most dependent one (a packet must pass every NAT);
 * - hairpinning to the outermost address: the outermost NAT must hairpin, and every inner
 *   NAT must let in the hairpinned packet, which comes from an address it never sent to
 *   (endpoint-independent filtering);
 * - ports: each NAT keeps them (preservation, when its range holds them), replaces them (a
 *   fixed port, or its own sequential or random allocation);
 * - outside addresses: each NAT's pool, its pairing or its port blocks, applied to the
 *   addresses the NAT before it sends from; the blocks are the outermost NAT's that has them;
 * - timeouts: the shortest; the flow limit: the smallest quota or block capacity.
 */
export function composeDeclared(path: Nat[], insideAddress?: string): Declared {
  if (path.length === 0) throw new Error('composeDeclared: empty path');
  let mapping: Dependency = 'endpoint-independent';
  let filtering: Dependency = 'endpoint-independent';
  let port: PortBehaviour = { kind: 'preserved' };
  let range = EPHEMERAL;
  let from: string[] | undefined = insideAddress ? [insideAddress] : undefined;
  let blocks: PortBlock[] | undefined;
  let limit: Declared['limit'];
  for (const nat of path) {
    const b = nat.behaviour;
    if (b.fixedPort !== undefined) {
      mapping = 'endpoint-independent';
      port = { kind: 'fixed', port: b.fixedPort };
    } else {
      mapping = maxDep(mapping, b.mapping);
      if (b.portAllocation !== 'preserve')
        port = port.kind === 'fixed' && b.mapping === 'endpoint-independent' ? { kind: 'fixed' } : { kind: b.portAllocation };
      // A kept port stays kept only where the NAT's range holds it; elsewhere the kernel picks one of the range.
      else if (port.kind !== 'fixed' && (range.low < b.ports.low || range.high > b.ports.high)) port = { kind: 'random' };
      range = port.kind === 'preserved' ? range : b.ports;
    }
    filtering = maxDep(filtering, b.filtering);
    const pool = nat.outside.pool;
    const assigned = (inside: string[]) => b.assignments.filter((a) => inside.includes(a.inside));
    if (b.portBlock && from) {
      blocks = assigned(from).map((a) => ({ outside: a.outside, ports: a.ports! }));
      from = [...new Set(blocks.map((x) => x.outside))];
    } else if (b.fixedPort !== undefined || pool.length === 1) from = [nat.outside.address];
    else if (b.pooling === 'arbitrary') from = [...pool];
    else if (from) {
      const out = assigned(from).map((a) => a.outside);
      // An inside address the lab did not deal (none here) is paired all the same, by hash: unknown which.
      from = out.length === from.length ? [...new Set(out)] : undefined;
    }
    if (b.quota !== undefined && (!limit || b.quota < limit.flows)) limit = { flows: b.quota, why: `${nat.name}'s quota` };
    const capacity = b.fixedPort === undefined ? portCapacity(nat) : undefined;
    if (capacity && (!limit || capacity.flows < limit.flows)) limit = capacity;
  }
  const outer = path[path.length - 1]!;
  const hairpinning = outer.behaviour.hairpinning && path.slice(0, -1).every((n) => n.behaviour.filtering === 'endpoint-independent');
  const timeouts = {
    unreplied: Math.min(...path.map((n) => n.behaviour.udpTimeouts.unreplied)),
    stream: Math.min(...path.map((n) => n.behaviour.udpTimeouts.stream)),
  };
  const d: Declared = { mapping, filtering, hairpinning, port, timeouts };
  if (from?.length) d.pooling = { value: from.length === 1 ? 'paired' : 'arbitrary', addresses: from, shown: path.some((n) => n.outside.pool.length > 1) };
  if (blocks?.length) d.blocks = blocks;
  if (limit) d.limit = limit;
  if (path.length > 1) {
    d.composition = path
      .map(
        (n) =>
          `${n.name} ${SHORT[n.behaviour.mapping]}M+${SHORT[n.behaviour.filtering]}F${n.behaviour.hairpinning ? '+hairpin' : ''}${n.behaviour.fixedPort !== undefined ? ` fixed ${n.behaviour.fixedPort}` : ''}`,
      )
      .join(' behind ');
  }
  return d;
}

/** The node a NAT is probed through: one on its own LAN, else one in a site behind it. */
function probeNodeFor(lab: Lab, nat: Nat): Node | undefined {
  const own = lab.nodes.find((n) => n.router === nat.name);
  if (own) return own;
  // Breadth first through the NATs whose uplink is this NAT's LAN.
  const queue = lab.nats.filter((n) => n.outside.upstream === nat.name);
  const seen = new Set<string>();
  while (queue.length) {
    const n = queue.shift()!;
    if (seen.has(n.name)) continue;
    seen.add(n.name);
    const node = lab.nodes.find((x) => x.router === n.name);
    if (node) return node;
    queue.push(...lab.nats.filter((c) => c.outside.upstream === n.name));
  }
  return undefined;
}

/** The inside port a fixed-port NAT forwards its outside port to, when that is this node's. */
export function forwardedPort(nat: Nat, node: Node): number | undefined {
  const b = nat.behaviour;
  if (b.fixedPort === undefined) return undefined;
  const f = b.forwards.find((x) => x.protocol === 'udp' && x.port === b.fixedPort && x.to === node.name);
  return f?.toPort;
}

/** One target per NAT of the lab (or only `only`): probed through a node behind it, seen from the internet. */
export function labTargets(lab: Lab, only?: string): Target[] {
  const nats = lab.nats.filter((n) => !only || n.name === only);
  const targets: Target[] = [];
  for (const nat of nats) {
    const node = probeNodeFor(lab, nat);
    if (!node) continue; // validation makes every site hold a node or another site
    const first = lab.nats.find((n) => n.name === node.router)!;
    const path = natPath(lab, first);
    const hops: PathHop[] = path.map((n) => ({ name: n.name, netns: n.netns, labctl: true }));
    const notes: string[] = [];
    if (first !== nat) notes.push(`${nat.name} has no node of its own: probed through ${node.name} behind ${first.name}`);
    if (path.length > 1) notes.push(`seen from the internet through ${path.map((n) => n.name).join(' and ')}: the declared column composes them`);
    const localPort = forwardedPort(first, node);
    if (localPort !== undefined)
      notes.push(
        `${first.name} sends every flow from port ${first.behaviour.fixedPort} and forwards it to ${node.name}:${localPort}: the filtering and hairpinning probes use inside port ${localPort}`,
      );
    targets.push({
      name: nat.name,
      probe: { node: node.name, netns: node.netns },
      path: hops,
      group: path[path.length - 1]!.name,
      ...(localPort !== undefined ? { localPort } : {}),
      declared: composeDeclared(path, node.link.address),
      notes,
    });
  }
  return targets;
}
