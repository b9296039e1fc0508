// What a lab declares for the view from a node: its NAT and every NAT above it (a home
// NAT behind a carrier-grade NAT is seen from the internet through both). Pure.
import type { Dependency } from '../lab/behaviour.js';
import { SHORT } from '../lab/behaviour.js';
import type { Lab, Nat, Node } from '../lab/model.js';
import type { Declared, PathHop, PortBehaviour, Target } from './model.js';

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

/**
 * Composes the behaviours of a path of NATs, innermost first:
 * - mapping: the most dependent one, except that a fixed-port NAT sends every flow from
 *   one port, which hides what the NATs inside it do (endpoint-independent from outside);
 * - filtering: the most dependent one (a packet must pass every NAT);
 * - hairpinning to the outermost address: the outermost NAT must hairpin, and every inner
 *   NAT must let in the hairpinned packet, which comes from an address it never sent to
 *   (endpoint-independent filtering);
 * - ports: each NAT keeps (preservation), replaces (fixed port) or changes the port;
 * - timeouts: the shortest.
 */
export function composeDeclared(path: Nat[]): Declared {
  if (path.length === 0) throw new Error('composeDeclared: empty path');
  let mapping: Dependency = 'endpoint-independent';
  let filtering: Dependency = 'endpoint-independent';
  let port: PortBehaviour = { kind: 'preserved' };
  for (const nat of path) {
    const b = nat.behaviour;
    if (b.fixedPort !== undefined) {
      mapping = 'endpoint-independent';
      port = { kind: 'fixed', port: b.fixedPort };
    } else {
      mapping = maxDep(mapping, b.mapping);
      if (!(b.mapping === 'endpoint-independent' && b.portPreservation)) port = { kind: 'not-preserved' };
    }
    filtering = maxDep(filtering, b.filtering);
  }
  const outer = path[path.length - 1]!;
  const hairpinning = outer.behaviour.hairpinning && path.slice(0, -1).every((n) => n.behaviour.filtering === 'endpoint-independent');
  const timeouts = {
    unreplied: Math.min(...path.map((n) => n.behaviour.udpTimeouts.unreplied)),
    stream: Math.min(...path.map((n) => n.behaviour.udpTimeouts.stream)),
  };
  const d: Declared = { mapping, filtering, hairpinning, port, timeouts };
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
      declared: composeDeclared(path),
      notes,
    });
  }
  return targets;
}
