// How a NAT picks outside ports and addresses, from what the probes saw: the port
// allocation (the inside port kept, one port for every flow, sequential, random), the pooling
// of outside addresses (RFC 4787 4.1), the span of ports one inside address was given (its
// port block), and the flows it could open (its quota). Shared by `labctl check` (compared
// with the lab file) and `labctl probe` (turned into a lab file). Pure: unit-tested.
import type { PortRange } from '../lab/model.js';
import type { QuotaProbeResult as QuotaResult } from '../stun/probes.js';

export type { QuotaResult };

/** How a NAT picks outside ports. `port` and `delta` are left out where a declaration cannot know them. */
export type PortBehaviour = { kind: 'preserved' } | { kind: 'fixed'; port?: number } | { kind: 'sequential'; delta?: number } | { kind: 'random' };

export type Allocation = PortBehaviour | { kind: 'unknown' };

export interface PortSample {
  local: number;
  mapped: number;
}

/** New mappings opened one after another to see how ports are handed out (check and probe). */
export const ALLOCATION_FLOWS = 8;

/** Every fresh inside port so far left from one outside port: fresh ports to one server endpoint would only clash. */
export function onePortForAll(firsts: PortSample[]): boolean {
  return firsts.length > 1 && new Set(firsts.map((x) => x.mapped)).size === 1;
}

/** Steps up to this between consecutive new outside ports count as a sequential allocator (others' flows may come in between). */
const SEQUENTIAL_GAP = 16;

/**
 * How the NAT chooses outside ports, from the first mapping of each fresh inside port
 * (`firsts`) and the new outside ports it handed out, in the order they were handed out
 * (`allocated`: best from flows opened one after another):
 * the inside port kept (preserved); one outside port for every inside port (fixed); each
 * new port a small step up from the last, for at least two thirds of the steps (sequential,
 * with the usual step); or anything else (random). The order matters: random ports from a
 * small block lie close together too, but they do not climb.
 */
export function classifyAllocation(firsts: PortSample[], allocated: number[]): { value: Allocation; detail: string } {
  if (firsts.length === 0) return { value: { kind: 'unknown' }, detail: 'no mapped port seen' };
  const list = firsts.map((s) => `${s.local}->${s.mapped}`).join(', ');
  if (firsts.every((s) => s.local === s.mapped)) return { value: { kind: 'preserved' }, detail: `inside port kept: ${list}` };
  const locals = new Set(firsts.map((s) => s.local));
  const mapped = [...new Set([...allocated, ...firsts.map((s) => s.mapped)])];
  if (mapped.length === 1 && locals.size > 1)
    return { value: { kind: 'fixed', port: mapped[0]! }, detail: `${locals.size} inside ports all left from ${mapped[0]}` };
  const order = [...new Set(allocated)];
  if (order.length < 3) return { value: { kind: 'unknown' }, detail: `too few outside ports to tell sequential from random: ${mapped.join(', ')}` };
  const steps = order.slice(1).map((x, i) => x - order[i]!);
  const climbing = steps.filter((g) => g > 0 && g <= SEQUENTIAL_GAP);
  const shown = `outside ports in the order handed out ${order.join(', ')} (first mappings: ${list})`;
  if (climbing.length * 3 >= steps.length * 2) {
    const counts = new Map<number, number>();
    for (const g of climbing) counts.set(g, (counts.get(g) ?? 0) + 1);
    const delta = [...counts.entries()].sort((x, y) => y[1] - x[1] || x[0] - y[0])[0]![0];
    return { value: { kind: 'sequential', delta }, detail: `${climbing.length} of ${steps.length} steps a little up, mostly +${delta}: ${shown}` };
  }
  const sorted = [...order].sort((x, y) => x - y);
  return {
    value: { kind: 'random' },
    detail: `spread over ${sorted[0]}-${sorted[sorted.length - 1]}, ${climbing.length} of ${steps.length} steps a little up: ${shown}`,
  };
}

export function describeAllocation(a: Allocation): string {
  switch (a.kind) {
    case 'fixed':
      return a.port !== undefined ? `fixed ${a.port}` : 'fixed';
    case 'sequential':
      return a.delta !== undefined ? `sequential (+${a.delta})` : 'sequential';
    default:
      return a.kind;
  }
}

/** A declared allocation against a measured one: the kind, and the port of a fixed one when both know it. */
export function allocationMatches(declared: PortBehaviour, measured: Allocation): boolean {
  if (declared.kind !== measured.kind) return false;
  if (declared.kind === 'fixed' && measured.kind === 'fixed' && declared.port !== undefined) return declared.port === measured.port;
  return true;
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
  return {
    value: 'arbitrary',
    addresses,
    detail: `${samples.length} flows of one inside address left from ${addresses.length} outside addresses: ${addresses.join(', ')}`,
  };
}

export interface PortBlock {
  outside: string;
  ports: PortRange;
}

const blockText = (b: PortBlock) => `${b.outside}:${b.ports.low}-${b.ports.high}`;
export const describeBlocks = (blocks: PortBlock[]) => blocks.map(blockText).join(', ');

/**
 * Where one inside address's outside endpoints lay: within the port blocks declared for it
 * (on their outside addresses), or which did not. Without a declaration, the span seen.
 */
export function classifyBlock(
  seen: { address: string; port: number }[],
  declared: PortBlock[] | undefined,
): { measured: string; match?: boolean; detail: string } {
  if (seen.length === 0) return { measured: 'unknown', detail: 'no outside endpoint seen' };
  const ports = seen.map((s) => s.port);
  const low = Math.min(...ports);
  const high = Math.max(...ports);
  const addresses = [...new Set(seen.map((s) => s.address))];
  const span = `${addresses.join(', ')}:${low}-${high}`;
  const distinct = new Set(seen.map((s) => `${s.address}:${s.port}`)).size;
  if (!declared) return { measured: `${distinct} ports within ${span}`, detail: `${seen.length} flows, ${distinct} outside endpoints` };
  const outside = seen.filter((s) => !declared.some((b) => b.outside === s.address && s.port >= b.ports.low && s.port <= b.ports.high));
  if (outside.length === 0)
    return { measured: `all ${distinct} within`, match: true, detail: `${seen.length} flows from ${distinct} outside endpoints, all within ${span}` };
  const shown = [...new Set(outside.map((s) => `${s.address}:${s.port}`))];
  return {
    measured: `${shown.length} of ${distinct} outside`,
    match: false,
    detail: `outside the block${declared.length > 1 ? 's' : ''}: ${shown.slice(0, 8).join(', ')}${shown.length > 8 ? ` and ${shown.length - 8} more` : ''} (seen: ${span})`,
  };
}

/** The flows one inside address could open, from a quota run; undefined when no flow was refused up to the cap. */
export function measuredLimit(r: QuotaResult): number | undefined {
  return r.refused > 0 ? r.answered : undefined;
}

export function describeQuota(r: QuotaResult): string {
  const limit = measuredLimit(r);
  return limit !== undefined ? `${limit} flows` : `none up to ${r.cap}`;
}

export function quotaEvidence(r: QuotaResult): string {
  const parts = [
    r.refused > 0
      ? `${r.answered} new flows from fresh inside ports answered, then ${r.refused} refused (no answer, sent twice)`
      : `${r.answered} new flows answered, none refused, up to the cap of ${r.cap}`,
  ];
  if (r.lostThenAnswered) parts.push(`${r.lostThenAnswered} answered only when sent again (lost, not refused)`);
  if (r.earlier.tried) parts.push(`${r.earlier.answered} of ${r.earlier.tried} earlier flows still answered after the refusals`);
  if (r.existingMapping !== undefined)
    parts.push(
      `the first inside port to another server endpoint (a new mapping only under endpoint-dependent mapping): ${r.existingMapping ? 'answered' : 'refused'}`,
    );
  return parts.join('; ');
}
