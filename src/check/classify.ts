// From what the probes saw to RFC 4787 verdicts, and from verdicts and declarations to the
// rows `labctl check` prints. Pure: no host access, so every rule is unit-tested.
import type { Dependency } from '../lab/behaviour.js';
import { classicName, SHORT } from '../lab/behaviour.js';
import type { FilteringResult, HairpinResult, MappingResult, Observation } from '../stun/probes.js';
import { formatEndpoint, type TransportAddress } from '../stun/message.js';
import type { Declared, Measured, Row, TargetReport, Verdict } from './model.js';
import {
  allocationMatches,
  classifyAllocation,
  classifyBlock,
  classifyPooling,
  describeAllocation,
  describeBlocks,
  describeQuota,
  measuredLimit,
  type PoolingSample,
  type PortSample,
  type QuotaResult,
  quotaEvidence,
} from './ports.js';

const same = (a?: TransportAddress, b?: TransportAddress) => !!a && !!b && a.address === b.address && a.port === b.port;

interface RepVerdict<T> {
  value: T | 'unknown' | 'inconsistent';
  detail: string;
}

// ------------------------------------------------------------------ mapping

/**
 * One mapping run: the mapped endpoints towards A1:P1, A1:P2, A2:P1, A2:P2 from one inside port.
 * The same everywhere: endpoint-independent. The same per server address but not across
 * addresses: address-dependent. Another one for another port of the same address:
 * address-and-port-dependent. Anything else (e.g. port-dependent for one address only)
 * fits no RFC 4787 class and is reported as inconsistent.
 */
export function classifyMappingRun(r: MappingResult): RepVerdict<Dependency> {
  const [o11, o12, o21, o22] = r.observations;
  const m = [o11, o12, o21, o22].map((o) => o?.mapped);
  // The outside address once when every answer shows the same one (a NAT with one outside
  // address), else each full endpoint (a NAT that maps onto a pool of addresses).
  const addresses = new Set(m.filter((x) => x).map((x) => x!.address));
  const shown =
    addresses.size === 1
      ? `${[...addresses][0]}: ${m.map((x) => (x ? String(x.port) : 'none')).join(' ')}`
      : m.map((x) => (x ? formatEndpoint(x) : 'none')).join(' ');
  const detail = `:${r.local} -> ${shown}`;
  if (m.some((x) => !x))
    return {
      value: 'unknown',
      detail: `${detail} (no response from ${m
        .map((x, i) => (x ? '' : ['A1:P1', 'A1:P2', 'A2:P1', 'A2:P2'][i]))
        .filter(Boolean)
        .join(', ')})`,
    };
  const [m11, m12, m21, m22] = m as TransportAddress[];
  const portsSame = same(m11, m12) && same(m21, m22);
  const portsDiffer = !same(m11, m12) && !same(m21, m22);
  const addrSame = same(m11, m21) && same(m12, m22);
  if (portsSame && addrSame) return { value: 'endpoint-independent', detail };
  if (portsSame) return { value: 'address-dependent', detail };
  if (portsDiffer) return { value: 'address-and-port-dependent', detail };
  return { value: 'inconsistent', detail: `${detail} (port-dependent towards one server address only)` };
}

// ------------------------------------------------------------------ filtering

const yn = (o: Observation) => (o.mapped || o.from ? 'yes' : 'no');
/** Whose answer got in: the server endpoint it came from (what filtering judges by), or no. */
const inFrom = (o: Observation) => (o.from ? `${formatEndpoint(o.from)} yes` : 'no');

/**
 * One filtering run (RFC 5780 4.4): with a mapping towards A1:P1, which of the answers from
 * A1:P2 (other port), A2:P1 (other address) and A2:P2 (both) got in.
 */
export function classifyFilteringRun(r: FilteringResult): RepVerdict<Dependency> {
  const got = (o: Observation) => !!o.from;
  const detail = `:${r.local} same ${yn(r.same)}, other port ${inFrom(r.changePort)}, other address ${inFrom(r.changeAddress)}, both ${inFrom(r.changeBoth)}`;
  if (!got(r.same)) return { value: 'unknown', detail: `${detail} (no answer even from the endpoint it sent to)` };
  // A server that did not answer from where it was asked spoils the test.
  for (const o of [r.changePort, r.changeAddress, r.changeBoth]) {
    if (o.from && same(o.from, r.same.from))
      return { value: 'unknown', detail: `${detail} (the server answered a CHANGE-REQUEST from the unchanged endpoint ${formatEndpoint(o.from)})` };
  }
  const p = got(r.changePort);
  const a = got(r.changeAddress);
  const b = got(r.changeBoth);
  if (p && a && b) return { value: 'endpoint-independent', detail };
  if (p && !a && !b) return { value: 'address-dependent', detail };
  if (!p && !a && !b) return { value: 'address-and-port-dependent', detail };
  return { value: 'inconsistent', detail: `${detail} (fits no RFC 4787 filtering)` };
}

// ------------------------------------------------------------------ hairpinning

export function classifyHairpinRun(r: HairpinResult): RepVerdict<boolean> & { source?: 'outside' | 'inside' | 'other' } {
  // B's own mapping only shows whose the hairpinned packet's source is; a run that did not ask for it (b.unasked) still tells.
  if (!r.a.mapped || (!r.b.mapped && !r.b.unasked))
    return { value: 'unknown', detail: `no mapping learned (a ${formatEndpoint(r.a.mapped)}, b ${formatEndpoint(r.b.mapped)})` };
  if (!r.delivered) return { value: false, detail: `:${r.b.local} -> ${formatEndpoint(r.a.mapped)} did not come back` };
  const src = r.shownSource!;
  const source = src.address === r.b.mapped?.address ? 'outside' : src.address === r.a.mapped.address ? 'outside' : isPrivate(src.address) ? 'inside' : 'other';
  const where = r.receivedOn === r.a.local ? '' : ` (arrived at inside port ${r.receivedOn}, not ${r.a.local})`;
  return {
    value: true,
    source,
    detail: `:${r.b.local} -> ${formatEndpoint(r.a.mapped)} came back from ${formatEndpoint(src)}${same(src, r.b.mapped) ? " (the sender's mapping)" : ''}${where}`,
  };
}

function isPrivate(a: string): boolean {
  return /^(10\.|192\.168\.|172\.(1[6-9]|2\d|3[01])\.)/.test(a);
}

// ------------------------------------------------------------------ aggregation over runs

/** The common verdict of all runs, or 'inconsistent' when they disagree, or 'unknown' when none could tell. */
export function aggregate<T>(runs: RepVerdict<T>[], key: (v: T) => string = (v) => String(v)): Verdict<T> {
  const known = runs.filter((r) => r.value !== 'unknown');
  if (known.length === 0) return 'unknown';
  if (known.some((r) => r.value === 'inconsistent')) return 'inconsistent';
  const first = known[0]!.value as T;
  if (known.every((r) => key(r.value as T) === key(first))) {
    // A run that could not tell next to runs that agree: still inconsistent, honestly.
    return known.length === runs.length ? first : 'inconsistent';
  }
  return 'inconsistent';
}

const depShort = (d: Verdict<Dependency>) => (d === 'unknown' || d === 'inconsistent' ? d : SHORT[d]);

export function describeType(mapping: Verdict<Dependency>, filtering: Verdict<Dependency>): string {
  if (typeof mapping !== 'string' || typeof filtering !== 'string') return 'unknown';
  if (mapping === 'unknown' || mapping === 'inconsistent' || filtering === 'unknown' || filtering === 'inconsistent')
    return `${depShort(mapping)}M+${depShort(filtering)}F`;
  const c = classicName(mapping, filtering);
  return `${c ?? 'no classic name'} (${SHORT[mapping]}M+${SHORT[filtering]}F)`;
}

export interface TargetRuns {
  mapping: MappingResult[];
  filtering: FilteringResult[];
  hairpin: HairpinResult[];
  /** New mappings to the server's first address, one after another (how ports are handed out). */
  sequence?: (Observation & { local: number })[];
  /** `--quota`: flows opened until one was refused. */
  quota?: QuotaResult;
}

/** The first mapping of each fresh inside port, in the order the tests ran. */
export function firstMappings(runs: TargetRuns): PortSample[] {
  const out: PortSample[] = [];
  const add = (local: number, mapped: TransportAddress | undefined) => {
    if (mapped && !out.some((s) => s.local === local)) out.push({ local, mapped: mapped.port });
  };
  for (const f of runs.filtering) add(f.local, f.same.mapped);
  for (const h of runs.hairpin) for (const x of [h.a, h.b]) add(x.local, x.mapped);
  for (const m of runs.mapping) add(m.local, m.observations[0]?.mapped);
  for (const o of runs.sequence ?? []) add(o.local, o.mapped);
  return out;
}

/** Every outside endpoint the node's flows left from, with the server address each went to. */
export function outsideEndpoints(runs: TargetRuns): (PoolingSample & { port: number })[] {
  const out: (PoolingSample & { port: number })[] = [];
  const add = (to: 'A1' | 'A2', mapped: TransportAddress | undefined) => {
    if (mapped) out.push({ to, outside: mapped.address, port: mapped.port });
  };
  for (const f of runs.filtering) add('A1', f.same.mapped);
  for (const h of runs.hairpin) for (const x of [h.a, h.b]) add('A1', x.mapped);
  for (const m of runs.mapping) for (const [i, x] of m.observations.entries()) add(i < 2 ? 'A1' : 'A2', x.mapped);
  for (const o of runs.sequence ?? []) add('A1', o.mapped);
  return out;
}

function runsEvidence<T>(runs: RepVerdict<T>[]): string {
  return runs.map((r, i) => `run ${i + 1}: ${r.detail}`).join('; ');
}

/** Measured behaviour and the rows of the report for one target. */
export function analyse(runs: TargetRuns, declared: Declared | undefined): Pick<TargetReport, 'measured' | 'rows' | 'match' | 'notes'> {
  const mapRuns = runs.mapping.map(classifyMappingRun);
  const filRuns = runs.filtering.map(classifyFilteringRun);
  const hairRuns = runs.hairpin.map(classifyHairpinRun);
  const mapping = aggregate(mapRuns);
  const filtering = aggregate(filRuns);
  const hairpinning = aggregate(hairRuns);
  const sources = [...new Set(hairRuns.map((h) => h.source).filter((s): s is NonNullable<typeof s> => !!s))];
  const firsts = firstMappings(runs);
  const handedOut = runs.sequence?.length
    ? runs.sequence.flatMap((o) => (o.mapped ? [o.mapped.port] : []))
    : runs.mapping.flatMap((m) => m.observations.flatMap((o) => (o.mapped ? [o.mapped.port] : [])));
  const ports = classifyAllocation(firsts, handedOut);
  const endpoints = outsideEndpoints(runs);
  const pooling = classifyPooling(endpoints);
  const keepRuns: RepVerdict<boolean>[] = runs.mapping.map((m) => {
    const ps = m.observations.map((o) => o.mapped?.port);
    if (ps.some((p) => p === undefined)) return { value: 'unknown', detail: `:${m.local} -> ${ps.map((p) => p ?? 'none').join(' ')}` };
    return { value: ps.every((p) => p === ps[0]), detail: `:${m.local} -> ${ps.join(' ')}` };
  });
  const keepsPort = aggregate(keepRuns);
  const outsideAddress = runs.mapping.flatMap((m) => m.observations.map((o) => o.mapped?.address)).find((a) => a);
  const measured: Measured = {
    mapping,
    filtering,
    hairpinning,
    ...(sources.length === 1 ? { hairpinSource: sources[0]! } : {}),
    port: ports.value.kind === 'unknown' ? 'unknown' : ports.value,
    keepsPort,
    ...(outsideAddress ? { outsideAddress } : {}),
    pooling: pooling.value,
    outsideAddresses: pooling.addresses,
    ...(runs.quota ? { quota: runs.quota } : {}),
  };

  const rows: Row[] = [];
  const row = (test: string, decl: string | undefined, meas: string, match: boolean | undefined, evidence: string) =>
    rows.push({ test, ...(decl !== undefined ? { declared: decl } : {}), measured: meas, ...(match !== undefined ? { match } : {}), evidence });
  const d = declared;
  const depText = (v: Verdict<Dependency>) => (typeof v === 'string' ? v : String(v));
  row(
    'mapping',
    d?.mapping,
    depText(mapping),
    d ? mapping === d.mapping : undefined,
    `outside address and ports towards A1:P1 A1:P2 A2:P1 A2:P2 from each inside port: ${runsEvidence(mapRuns)}`,
  );
  row(
    'filtering',
    d?.filtering,
    depText(filtering),
    d ? filtering === d.filtering : undefined,
    `answers let in after sending to A1:P1: ${runsEvidence(filRuns)}`,
  );
  row(
    'type',
    d ? describeType(d.mapping, d.filtering) : undefined,
    describeType(mapping, filtering),
    d ? mapping === d.mapping && filtering === d.filtering : undefined,
    d?.composition ? `declared: ${d.composition}` : 'classic name of the mapping and filtering above (RFC 4787 terms)',
  );
  const hp = (v: Verdict<boolean>) => (v === true ? 'yes' : v === false ? 'no' : v);
  const dh = d?.hairpinning;
  row('hairpinning', dh !== undefined ? hp(dh) : undefined, hp(hairpinning), dh !== undefined ? hairpinning === dh : undefined, runsEvidence(hairRuns));
  if (hairpinning === true || (d?.hairpinning && hairpinning !== false)) {
    const shown = sources.length === 1 ? `${sources[0]} address` : sources.length ? `mixed (${sources.join(', ')})` : 'unknown';
    row(
      'hairpin source',
      d?.hairpinning ? 'outside address' : undefined,
      shown,
      d?.hairpinning ? sources.length === 1 && sources[0] === 'outside' : undefined,
      "the source address and port a hairpinned packet shows (RFC 4787 REQ-9: the sender's outside mapping)",
    );
  }
  row(
    'port allocation',
    d?.port ? describeAllocation(d.port) : undefined,
    describeAllocation(ports.value),
    d?.port ? allocationMatches(d.port, ports.value) : undefined,
    ports.detail,
  );
  const dp = d?.pooling;
  if (!d || dp?.shown || pooling.value === 'arbitrary') {
    const declaredPooling = dp ? `${dp.value} (${dp.addresses.join(', ')})` : undefined;
    // Paired: the one address the lab deals this node; arbitrary: addresses of its pool only.
    const poolMatch = dp
      ? pooling.value === dp.value &&
        pooling.addresses.every((a) => dp.addresses.includes(a)) &&
        (dp.value === 'arbitrary' || pooling.addresses[0] === dp.addresses[0])
      : undefined;
    row('pooling', declaredPooling, pooling.value, poolMatch, pooling.detail);
  }
  if (d?.blocks) {
    const b = classifyBlock(
      endpoints.map((e) => ({ address: e.outside, port: e.port })),
      d.blocks,
    );
    row('port block', describeBlocks(d.blocks), b.measured, b.match, b.detail);
  }
  if (runs.quota) {
    const limit = measuredLimit(runs.quota);
    const declaredLimit = d ? (d.limit ? `${d.limit.flows} flows (${d.limit.why})` : 'none') : undefined;
    const dl = d?.limit;
    const quotaMatch = d ? (dl && limit !== undefined ? limit <= dl.flows && limit >= (dl.atLeast ?? dl.flows) : limit === dl?.flows) : undefined;
    row('quota', declaredLimit, describeQuota(runs.quota), quotaMatch, quotaEvidence(runs.quota));
  }
  row(
    'one outside port for all destinations',
    d ? hp(d.mapping === 'endpoint-independent') : undefined,
    hp(keepsPort),
    d ? keepsPort === (d.mapping === 'endpoint-independent') : undefined,
    `same inside port to all four server endpoints: ${runsEvidence(keepRuns)}`,
  );
  const notes: string[] = [];
  if (d?.filtering === 'address-dependent' && filtering === 'address-and-port-dependent') {
    notes.push(
      'declared address-dependent ("restricted cone"), but answers from the same server address and another port were dropped: that is address-and-port-dependent filtering ("port-restricted cone"). A conntrack state match (iptables --ctstate ESTABLISHED, nft ct state established) checks the port too.',
    );
  }
  const match = d ? rows.every((r) => r.match !== false) : undefined;
  return { measured, rows, notes, ...(match !== undefined ? { match } : {}) };
}
