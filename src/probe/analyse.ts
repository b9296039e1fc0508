// `labctl probe`: from what the probes saw to what a lab file can say. How the NAT picks
// outside ports (kept, one for everything, sequential, random) and outside addresses
// (pooling), and the `nat:` block that behaves the same, with what was measured but a lab
// file cannot say yet. Pure: every rule is unit-tested.
import { classicName, type ClassicNatType, type Dependency } from '../lab/behaviour.js';
import type { KindReport } from '../check/lifetime.js';
import type { Measured } from '../check/model.js';

export interface PortSample {
  local: number;
  mapped: number;
}

export type Allocation =
  | { kind: 'preserved' }
  | { kind: 'fixed'; port: number }
  | { kind: 'sequential'; delta: number }
  | { kind: 'random' }
  | { kind: 'unknown' };

/** Gaps up to this between consecutive outside ports count as a sequential allocator (others' flows may come in between). */
const SEQUENTIAL_GAP = 16;

/**
 * How the NAT chooses outside ports, from the first mapping of each fresh inside port
 * (`firsts`) and every new outside port it handed out, in the order they were seen
 * (`allocated`: with a mapping per destination, a mapping test alone hands out four):
 * the inside port kept (preserved); one outside port for every inside port (fixed); ports
 * close together in order (sequential, with the usual step); or spread over the range (random).
 */
export function classifyAllocation(firsts: PortSample[], allocated: number[]): { value: Allocation; detail: string } {
  if (firsts.length === 0) return { value: { kind: 'unknown' }, detail: 'no mapped port seen' };
  const list = firsts.map((s) => `${s.local}->${s.mapped}`).join(', ');
  if (firsts.every((s) => s.local === s.mapped)) return { value: { kind: 'preserved' }, detail: `inside port kept: ${list}` };
  const locals = new Set(firsts.map((s) => s.local));
  const mapped = [...new Set([...firsts.map((s) => s.mapped), ...allocated])];
  if (mapped.length === 1 && locals.size > 1)
    return { value: { kind: 'fixed', port: mapped[0]! }, detail: `${locals.size} inside ports all left from ${mapped[0]}` };
  if (mapped.length < 3) return { value: { kind: 'unknown' }, detail: `too few outside ports to tell sequential from random: ${mapped.join(', ')}` };
  const sorted = [...mapped].sort((x, y) => x - y);
  const gaps = sorted.slice(1).map((x, i) => x - sorted[i]!);
  const shown = `outside ports ${mapped.join(', ')} (first mappings: ${list})`;
  if (gaps.every((g) => g > 0 && g <= SEQUENTIAL_GAP)) {
    const counts = new Map<number, number>();
    for (const g of gaps) counts.set(g, (counts.get(g) ?? 0) + 1);
    const delta = [...counts.entries()].sort((x, y) => y[1] - x[1] || x[0] - y[0])[0]![0];
    return { value: { kind: 'sequential', delta }, detail: `each new mapping near the last, mostly +${delta}: ${shown}` };
  }
  return { value: { kind: 'random' }, detail: `spread over ${sorted[0]}-${sorted[sorted.length - 1]}: ${shown}` };
}

export function describeAllocation(a: Allocation): string {
  switch (a.kind) {
    case 'fixed':
      return `fixed ${a.port}`;
    case 'sequential':
      return `sequential (+${a.delta})`;
    default:
      return a.kind;
  }
}

export interface PoolingSample {
  /** Which of the server's addresses the flow went to. */
  to: 'A1' | 'A2';
  outside: string;
}

export type Pooling = 'paired' | 'arbitrary' | 'unknown';

/**
 * RFC 4787 4.1 pooling: do the flows of one inside address leave from one outside address
 * (paired), or from several (arbitrary)? Flows to both of the server's addresses must have
 * been seen: towards one destination address, even an arbitrary pool may keep one address.
 */
export function classifyPooling(samples: PoolingSample[]): { value: Pooling; addresses: string[]; detail: string } {
  const addresses = [...new Set(samples.map((s) => s.outside))];
  const toBoth = new Set(samples.map((s) => s.to)).size === 2;
  if (!toBoth) return { value: 'unknown', addresses, detail: "no flows to both of the server's addresses" };
  if (addresses.length === 1)
    return {
      value: 'paired',
      addresses,
      detail: `all ${samples.length} flows, to both server addresses, left from ${addresses[0]} (a NAT with one outside address, or a pool paired per inside address)`,
    };
  return { value: 'arbitrary', addresses, detail: `flows of one inside address left from ${addresses.length} outside addresses: ${addresses.join(', ')}` };
}

/** A `nat:` block in lab-file syntax (README "Lab files"), keys as the file spells them. */
export interface NatBlock {
  type?: ClassicNatType;
  mapping?: Dependency;
  filtering?: Dependency;
  hairpinning?: boolean;
  'port-preservation'?: boolean;
  'fixed-port'?: number;
  forwards?: { protocol: 'udp'; port: number; to: string; 'to-port': number }[];
  'udp-timeouts'?: { unreplied?: number; stream?: number };
}

export interface ProbeFindings {
  measured: Measured;
  allocation: Allocation;
  pooling: Pooling;
  poolAddresses: string[];
  /** --lifetime: the unreplied and stream kinds. */
  lifetimes?: KindReport[];
  /** The one inside port every test used (--port), when given. */
  localPort?: number;
  /** The server saw one of this host's own addresses: nothing translated on the way. */
  untranslated?: boolean;
}

const known = <T>(v: T | 'unknown' | 'inconsistent'): v is T => v !== 'unknown' && v !== 'inconsistent';

/**
 * The `nat:` block that behaves as measured (for a node named `node` behind it), what was
 * measured that a lab file cannot say yet, and what could not be measured (no block without
 * mapping and filtering).
 */
export function natBlockFor(f: ProbeFindings, node: string): { nat?: NatBlock; notExpressible: string[]; unmeasured: string[] } {
  const m = f.measured;
  const notExpressible: string[] = [];
  const unmeasured: string[] = [];
  if (!known(m.mapping)) unmeasured.push(`mapping (${m.mapping})`);
  if (!known(m.filtering)) unmeasured.push(`filtering (${m.filtering})`);
  if (!known(m.mapping) || !known(m.filtering)) return { notExpressible, unmeasured };
  const nat: NatBlock = {};
  const classic = classicName(m.mapping, m.filtering);
  if (classic) nat.type = classic;
  else {
    nat.mapping = m.mapping;
    nat.filtering = m.filtering;
  }
  if (known(m.hairpinning)) nat.hairpinning = m.hairpinning;
  else unmeasured.push(`hairpinning (${m.hairpinning}; the lab's default, none, is written)`);
  if (m.hairpinning === true && m.hairpinSource && m.hairpinSource !== 'outside')
    notExpressible.push(
      `hairpinned packets show the sender's ${m.hairpinSource} address, not its outside mapping (labctl's hairpinning shows the outside mapping, as RFC 4787 REQ-9 asks)`,
    );
  const eim = m.mapping === 'endpoint-independent';
  const a = f.allocation;
  if (a.kind === 'fixed') {
    nat['fixed-port'] = a.port;
    // Inbound flows to that port reached the inside port every test used: a forward, as the article's NATs have.
    if (f.localPort !== undefined) nat.forwards = [{ protocol: 'udp', port: a.port, to: node, 'to-port': f.localPort }];
  } else if (a.kind === 'preserved') {
    if (eim) nat['port-preservation'] = true;
    else notExpressible.push(`port allocation: inside ports kept under ${m.mapping} mapping (a lab NAT keeps ports only with endpoint-independent mapping)`);
  } else if (a.kind === 'unknown') {
    unmeasured.push('port allocation (too few mappings)');
  } else {
    if (eim) nat['port-preservation'] = false;
    if (a.kind === 'sequential')
      notExpressible.push(
        `port allocation: sequential (each new mapping +${a.delta} from the last); a lab NAT picks hashed${m.mapping === 'address-and-port-dependent' ? ' or random' : ''} ports`,
      );
  }
  if (f.pooling === 'arbitrary')
    notExpressible.push(
      `outside address pooling: arbitrary (flows of one inside address left from ${f.poolAddresses.join(', ')}); a lab NAT has one outside address`,
    );
  if (f.lifetimes) {
    const t: { unreplied?: number; stream?: number } = {};
    for (const k of f.lifetimes) {
      const e = k.estimate;
      if (e.verdict === 'measured' && e.seconds !== undefined && e.seconds >= 1) t[k.kind] = e.seconds;
      else if (e.verdict === 'longer' && e.aliveUpTo !== undefined) {
        t[k.kind] = Math.max(1, Math.floor(e.aliveUpTo));
        notExpressible.push(`${k.kind} UDP lifetime: longer than ${Math.floor(e.aliveUpTo)} s (the checks stopped there); that lower bound is written`);
      } else unmeasured.push(`${k.kind} UDP lifetime (${e.verdict}: ${e.detail})`);
    }
    // A lab NAT's stream timeout is never shorter than its unreplied one (conntrack's too).
    if (t.unreplied !== undefined && t.stream !== undefined && t.stream < t.unreplied) {
      notExpressible.push(`stream lifetime ${t.stream} s shorter than the unreplied one (${t.unreplied} s): written as ${t.unreplied} s`);
      t.stream = t.unreplied;
    }
    // The other one falls to labctl's default (30 s unreplied, 120 s stream) unless that breaks the order.
    if (t.unreplied !== undefined && t.stream === undefined && t.unreplied > 120) t.stream = t.unreplied;
    if (t.stream !== undefined && t.unreplied === undefined && t.stream < 30) t.unreplied = t.stream;
    if (t.unreplied !== undefined || t.stream !== undefined) nat['udp-timeouts'] = t;
  }
  if (f.untranslated)
    notExpressible.push(
      "no address translation: the server saw this host's own address; the NAT in the lab stands in for whatever filters on the way (a stateful firewall)",
    );
  return { nat, notExpressible, unmeasured };
}

/** A lab name from the file's name: lower-case letters, digits and "-", starting with a letter. */
export function labNameFor(file: string): string {
  const base = file.replace(/^.*\//, '').replace(/\.ya?ml$/i, '');
  const name = base
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^[^a-z]+/, '')
    .replace(/-+$/, '')
    .slice(0, 32)
    .replace(/-+$/, '');
  return name || 'probed';
}

/** A namespace prefix from the lab's name (at most 8 characters, ending in "-"), so that the lab does not clash with others. */
export function prefixFor(name: string): string {
  return `${name.replace(/[^a-z0-9]/g, '').slice(0, 7)}-`;
}
