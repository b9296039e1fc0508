// Names a conntrack entry's addresses after the lab members that hold them, and derives
// the translation the NAT applied from the original and reply tuples. Pure.
//
// conntrack records a flow as its original tuple (what the first packet carried when it
// arrived: src → dst) and the reply tuple (what a reply must carry to match). A NAT shows
// up as a reply tuple that is not the original one reversed:
//   - source NAT (outbound): the reply goes to the translated source, so reply.dst:dport
//     differs from original.src:sport;
//   - destination NAT (inbound, a port forward): the reply comes from the real
//     destination, so reply.src:sport differs from original.dst:dport.
// The translation reads left to right as the packet travels: source, [source as
// translated], destination as addressed, [destination as translated], e.g.
//   c1 10.0.2.1:44432 -> 100.64.2.100:54321 -> 100.64.1.100:54321 c0-nat          (SNAT)
//   c1-nat 100.64.2.100:54321 -> 100.64.1.100:54321 -> 10.0.1.1:12345 c0          (DNAT)
import type { Lab } from '../lab/model.js';
import type { ConntrackEntry, Tuple } from './parse.js';

/** Address → the name of the lab member that holds it. */
export type AddressNames = ReadonlyMap<string, string>;

export function addressNames(lab: Lab): Map<string, string> {
  const names = new Map<string, string>();
  const add = (address: string, name: string) => {
    if (!names.has(address)) names.set(address, name);
  };
  for (const n of lab.nodes) add(n.link.address, n.name);
  for (const n of lab.nats) {
    add(n.outside.address, n.name);
    add(n.lan.address, n.name);
  }
  for (const l of lab.internet.links) add(l.address, lab.internet.name);
  return names;
}

export interface Endpoint {
  address: string;
  port?: number;
  /** The lab member holding the address, when it is one of the lab's. */
  name?: string;
}

type NatKind = 'none' | 'snat' | 'dnat' | 'snat+dnat';

interface Translation {
  kind: NatKind;
  source: Endpoint;
  /** What the source became (SNAT). */
  sourceAs?: Endpoint;
  destination: Endpoint;
  /** Where the destination was translated to (DNAT). */
  destinationAs?: Endpoint;
  /** `c1 10.0.2.1:44432 -> 100.64.2.100:54321 -> 100.64.1.100:54321 c0-nat` */
  text: string;
}

interface NamedTuple extends Tuple {
  srcName?: string;
  dstName?: string;
}

export interface AnnotatedEntry extends ConntrackEntry {
  original: NamedTuple;
  reply: NamedTuple;
  translation: Translation;
}

const endpoint = (address: string, port: number | undefined, names: AddressNames): Endpoint => {
  const name = names.get(address);
  return { address, ...(port !== undefined ? { port } : {}), ...(name ? { name } : {}) };
};

const same = (a: Endpoint, b: Endpoint) => a.address === b.address && a.port === b.port;

function endpointText(e: Endpoint): string {
  if (e.port === undefined) return e.address;
  return e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
}

export function translation(entry: ConntrackEntry, names: AddressNames): Translation {
  const { original: o, reply: r } = entry;
  const source = endpoint(o.src, o.sport, names);
  const destination = endpoint(o.dst, o.dport, names);
  const replyTo = endpoint(r.dst, r.dport, names); // the source as the far side sees it
  const replyFrom = endpoint(r.src, r.sport, names); // the destination the packet really reached
  const snat = !same(replyTo, source);
  const dnat = !same(replyFrom, destination);
  const kind: NatKind = snat && dnat ? 'snat+dnat' : snat ? 'snat' : dnat ? 'dnat' : 'none';
  const path = [source, ...(snat ? [replyTo] : []), destination, ...(dnat ? [replyFrom] : [])];
  const last = path[path.length - 1]!;
  const text = [source.name, path.map(endpointText).join(' -> '), last.name].filter(Boolean).join(' ');
  return { kind, source, ...(snat ? { sourceAs: replyTo } : {}), destination, ...(dnat ? { destinationAs: replyFrom } : {}), text };
}

const named = (t: Tuple, names: AddressNames): NamedTuple => {
  const srcName = names.get(t.src);
  const dstName = names.get(t.dst);
  return { ...t, ...(srcName ? { srcName } : {}), ...(dstName ? { dstName } : {}) };
};

export function annotate(entry: ConntrackEntry, names: AddressNames): AnnotatedEntry {
  return { ...entry, original: named(entry.original, names), reply: named(entry.reply, names), translation: translation(entry, names) };
}
