// `labctl probe`: from what the probes saw to what a lab file can say: the `nat:` block that
// behaves the same, with what was measured but a lab file cannot say. (How outside ports and
// addresses are chosen is classified in check/ports.ts, shared with `labctl check`.) Pure:
// every rule is unit-tested.
import { classicName, type ClassicNatType, type Dependency } from '../lab/behaviour.js';
import type { KindReport } from '../check/lifetime.js';
import type { Measured } from '../check/model.js';
import type { Allocation, Pooling } from '../check/ports.js';

/** A `nat:` block in lab-file syntax (README "Lab files"), keys as the file spells them. */
export interface NatBlock {
  type?: ClassicNatType;
  mapping?: Dependency;
  filtering?: Dependency;
  hairpinning?: boolean;
  'port-preservation'?: boolean;
  'fixed-port'?: number;
  'port-allocation'?: 'sequential';
  outside?: number;
  pooling?: 'arbitrary';
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
  if (a.kind === 'fixed' && a.port !== undefined) {
    nat['fixed-port'] = a.port;
    // Inbound flows to that port reached the inside port every test used: a forward, as the article's NATs have.
    if (f.localPort !== undefined) nat.forwards = [{ protocol: 'udp', port: a.port, to: node, 'to-port': f.localPort }];
  } else if (a.kind === 'preserved') {
    if (eim) nat['port-preservation'] = true;
    else notExpressible.push(`port allocation: inside ports kept under ${m.mapping} mapping (a lab NAT keeps ports only with endpoint-independent mapping)`);
  } else if (a.kind === 'unknown' || a.kind === 'fixed') {
    unmeasured.push('port allocation (too few mappings)');
  } else if (a.kind === 'sequential') {
    nat['port-allocation'] = 'sequential';
    if (a.delta !== undefined && a.delta !== 1)
      notExpressible.push(`port allocation: each new mapping +${a.delta} from the last; a lab NAT's sequential ports step by 1`);
  } else if (eim) nat['port-preservation'] = false;
  if (f.pooling === 'arbitrary') {
    // The lab's pool has as many addresses as were seen (labctl plans them): flows spread over them.
    nat.outside = f.poolAddresses.length;
    nat.pooling = 'arbitrary';
  }
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
