// `labctl check --lifetime`: how long an idle UDP mapping lives, through every NAT on the
// path from a node to the internet, for two kinds of flow:
//   unreplied  one request and its response, then silence (conntrack's UDP timeout,
//              nf_conntrack_udp_timeout; labctl's `udp-timeouts.unreplied`);
//   stream     traffic both ways for more than 2 s first, which makes conntrack call the
//              flow ASSURED and give it nf_conntrack_udp_timeout_stream (`stream`).
// Probes check many idle times at once, each on a fresh inside port and its own server port
// pair, so that one check never refreshes another probe's mapping: the run lasts about the
// longest lifetime, and the answer is good to about a second. Then: the keepalive interval
// that keeps a mapping through every NAT on the path.
import { run } from '../exec/run.js';
import { inNetns } from '../host/netns.js';
import type { LifetimeProbeResult, LifetimeResult, ServerInstance } from '../stun/probes.js';
import type { PathHop, ServerInfo, Target } from './model.js';
import type { RetransmitOptions } from '../stun/client.js';
import { type PathTiming, pathTiming, type RttSamples } from './impaired.js';
import { assignSlots, resolveTargets, targetsSession, type CheckOptions } from './run.js';
import { serverLine } from './report.js';
import { flushHops, trace, withSession } from './session.js';
import { table } from '../report/table.js';

type FlowKind = 'unreplied' | 'stream';
export const KINDS: FlowKind[] = ['unreplied', 'stream'];
/**
 * Checks at k + OFFSET seconds of idleness: a whole-second timeout falls between two checks,
 * not on one. Idleness counts from the answer's arrival, just after the NAT saw it, so a
 * mapping of T seconds is gone OFFSET after the check at T; conntrack's clock ticks once a
 * jiffy (4 ms at HZ=250, 10 ms at HZ=100), so 30 ms is several ticks past the expiry, and a
 * late timer only makes a check later (surer of "gone").
 */
const GRID_OFFSET = 0.03;
/** Probes per idle time (they must agree). */
const PER_POINT = 2;
const LINUX_DEFAULTS = { unreplied: 30, stream: 120 };

/**
 * How long to look for a mapping's end, seconds: maxSeconds when given (--lifetime-max),
 * else past the expected lifetime (Linux's default without one) by half or 5 s, whichever
 * is more.
 */
export function lifetimeCap(kind: FlowKind, expected: number | undefined, maxSeconds?: number): number {
  if (maxSeconds !== undefined) return maxSeconds;
  const e = expected ?? LINUX_DEFAULTS[kind];
  return Math.ceil(Math.max(e * 1.5, e + 5));
}

/** The probes' calls: lifetime ops through one agent, or in this process (`labctl probe`). */
export type ProbeCall = <T>(op: string, args: unknown, timeoutMs?: number) => Promise<T>;

/**
 * Both kinds of lifetime from one place at once: PER_POINT probes per idle time of each
 * kind's grid (up to caps[kind] seconds), every probe on the server instance nextServer()
 * gives it. Resolves when every kind has seen its mapping gone or reached its cap.
 */
export function measureLifetimes(
  call: ProbeCall,
  caps: Record<FlowKind, number>,
  nextServer: () => ServerInstance,
  // The path's round trip (src/check/impaired.ts): checks leave it early, and idle times count it.
  timing: { rttMs?: number; retransmit?: Partial<RetransmitOptions> } = {},
  // Idle times to check, when not every second up to the cap (budgetGrid).
  grids?: Record<FlowKind, number[]>,
): Promise<LifetimeResult[]> {
  return Promise.all(
    KINDS.map((kind) => {
      const idle = (grids?.[kind] ?? idleGrid(caps[kind])).flatMap((x) => Array<number>(PER_POINT).fill(x));
      const servers = idle.map(() => nextServer());
      const timeout = (Math.max(...idle) + 30) * 1000;
      return call<LifetimeResult>('lifetime', { servers, idle, kind, stopAtDead: true, ...timing }, timeout);
    }),
  );
}

export interface LifetimeEstimate {
  /** Longest idle time at which a mapping was still there, seconds (0: none checked alive). */
  aliveUpTo?: number;
  /** Shortest idle time at which it was gone. */
  goneFrom?: number;
  /** Whole seconds, when the checks bracket it consistently. */
  seconds?: number;
  verdict: 'measured' | 'longer' | 'inconsistent' | 'unknown';
  detail: string;
}

export interface KindReport {
  kind: FlowKind;
  /** Declared (labctl labs) or the kernel's setting on the path (sysctl), seconds. */
  expected?: number;
  expectedFrom?: 'declared' | 'sysctl';
  estimate: LifetimeEstimate;
  match?: boolean;
  probes: number;
}

export interface LifetimeTargetReport {
  name: string;
  probe: { node?: string; netns: string };
  path: string[];
  kinds: KindReport[];
  /** Seconds between keepalives that keep this path's mapping, or undefined when unknown. */
  keepalive?: number;
  /** What the keepalive rests on: a measured lifetime, or one only known to be longer than the checks went. */
  keepaliveBasis?: KeepaliveBasis;
  match?: boolean;
}

interface LifetimeReport {
  lab?: string;
  server: ServerInfo;
  targets: LifetimeTargetReport[];
  /** The keepalive that keeps every path's mapping. */
  keepalive?: number;
  keepaliveBasis?: KeepaliveBasis;
  explanation: string[];
  match?: boolean;
  /** Lifetimes no probe could check at all ("NAT's kind lifetime"): an error (exit 2), not a difference. */
  unmeasured: string[];
  /**
   * Declared lifetimes beyond where the checks stopped (--lifetime-max), that the mapping
   * outlived: not contradicted, not confirmed either ("NAT's kind lifetime (declared N s)").
   * Like unmeasured, no verdict (exit 2), but with its own reason.
   */
  unconfirmed: string[];
  durationMs: number;
}

type KeepaliveBasis = 'measured' | 'lower-bound';

/** From the checks of one kind: the interval the lifetime lies in. Pure. */
export function estimateLifetime(probes: LifetimeProbeResult[], maxSeconds: number): LifetimeEstimate {
  const done = probes.filter((p) => p.alive !== undefined && p.checkedAt !== undefined);
  const alive = done.filter((p) => p.alive).map((p) => p.checkedAt!);
  const gone = done.filter((p) => !p.alive).map((p) => p.checkedAt!);
  const errors = probes.filter((p) => p.error).length;
  const aliveUpTo = alive.length ? Math.max(...alive) : undefined;
  const goneFrom = gone.length ? Math.min(...gone) : undefined;
  const f = (x: number) => `${x.toFixed(1)} s`;
  const base = { ...(aliveUpTo !== undefined ? { aliveUpTo } : {}), ...(goneFrom !== undefined ? { goneFrom } : {}) };
  const errs = errors ? `; ${errors} probe(s) failed` : '';
  // Nothing to go by but why the probes failed: name the first reason.
  const firstError = probes.find((p) => p.error)?.error;
  if (done.length === 0) return { ...base, verdict: 'unknown', detail: `no check could be made${errs}${firstError ? ` (${firstError})` : ''}` };
  if (goneFrom === undefined) return { ...base, verdict: 'longer', detail: `still there after ${f(aliveUpTo!)} idle (checks stop at ${maxSeconds} s)${errs}` };
  // Checks at (nearly) the same moment may straddle the expiry; anything more is inconsistent.
  if (aliveUpTo !== undefined && aliveUpTo > goneFrom + 0.1) {
    const late = done.filter((p) => p.alive && p.checkedAt! > goneFrom).map((p) => f(p.checkedAt!));
    return { ...base, verdict: 'inconsistent', detail: `gone at ${f(goneFrom)} idle but there again at ${late.join(', ')}${errs}` };
  }
  const lo = aliveUpTo ?? 0;
  const seconds = Math.max(0, Math.round((lo + goneFrom) / 2));
  const n = done.length;
  return {
    ...base,
    seconds,
    verdict: 'measured',
    detail: `there after ${f(lo)} idle, gone after ${f(goneFrom)} (${n} checks, ${PER_POINT} per idle time)${errs}`,
  };
}

/** Does a measured lifetime agree with the expected one, to about a second? */
export function lifetimeMatches(e: LifetimeEstimate, expected: number): boolean {
  if (e.verdict !== 'measured') return false;
  return (e.aliveUpTo ?? 0) <= expected + 0.5 && (e.goneFrom ?? Infinity) >= expected - 0.5;
}

/** A keepalive under the lifetime with a sixth to spare: 30 s -> 25 s (WireGuard's advice for 30 s NATs). */
export function keepaliveFor(lifetimeSeconds: number): number {
  return Math.max(1, Math.floor((lifetimeSeconds * 5) / 6));
}

/** The lifetime a keepalive must stay under, on one path or over several (see explainLifetimes()). */
interface Governing {
  /** Seconds: measured, or the longest idle time the mapping was seen to survive. */
  seconds: number;
  kind: FlowKind;
  /** Only known to be longer than `seconds` (its checks stopped at the cap). */
  lowerBound: boolean;
  /** The target it was measured on (set by governingOver). */
  target?: LifetimeTargetReport;
}

/**
 * The shortest lifetime of a path's kinds, which a keepalive must stay under. A lifetime
 * only known to be longer than the checks went still bounds it from below: when that bound
 * is the shortest, the keepalive rests on it (safe, if perhaps more often than needed); a
 * measured lifetime at or under every bound is exact. Undefined when a kind could not be
 * measured or its checks disagree: the shortest could be anything. Pure.
 */
export function governingLifetime(kinds: Pick<KindReport, 'kind' | 'estimate'>[]): Governing | undefined {
  const known: Governing[] = [];
  for (const k of kinds) {
    const e = k.estimate;
    if (e.verdict === 'measured') known.push({ seconds: e.seconds!, kind: k.kind, lowerBound: false });
    else if (e.verdict === 'longer') known.push({ seconds: e.aliveUpTo!, kind: k.kind, lowerBound: true });
    else return undefined;
  }
  return shortest(known);
}

/** The shortest of several; on a tie a measured one (the true shortest is then exactly it). */
function shortest(gs: Governing[]): Governing | undefined {
  return [...gs].sort((a, b) => a.seconds - b.seconds || Number(a.lowerBound) - Number(b.lowerBound))[0];
}

/** The shortest lifetime over every target, undefined when one of them has none. Pure. */
export function governingOver(targets: LifetimeTargetReport[]): Governing | undefined {
  const gs = targets.map((t) => {
    const g = governingLifetime(t.kinds);
    return g && { ...g, target: t };
  });
  if (gs.length === 0 || gs.some((g) => !g)) return undefined;
  return shortest(gs as Governing[]);
}

/** A declared lifetime the checks stopped short of, that the mapping outlived as far as they went. */
function beyondChecks(estimate: LifetimeEstimate, expected: number): boolean {
  return estimate.verdict === 'longer' && (estimate.aliveUpTo ?? 0) <= expected + 0.5;
}

/**
 * One kind's report: the estimate, compared with what was declared. A kind no probe could
 * check has no verdict to compare (it is unmeasured, an error), not a mismatch; nor has one
 * declared longer than the checks went (--lifetime-max) that lived as long as they went. Pure.
 */
export function kindReport(r: LifetimeResult, cap: number, exp: { unreplied: number; stream: number; from: 'declared' | 'sysctl' } | undefined): KindReport {
  const estimate = estimateLifetime(r.probes, cap);
  const e = exp?.[r.kind];
  const compare = exp?.from === 'declared' && e !== undefined && estimate.verdict !== 'unknown' && !beyondChecks(estimate, e);
  return {
    kind: r.kind,
    ...(e !== undefined ? { expected: e, expectedFrom: exp!.from } : {}),
    estimate,
    ...(compare ? { match: lifetimeMatches(estimate, e) } : {}),
    probes: r.probes.length,
  };
}

export function idleGrid(maxSeconds: number): number[] {
  const out: number[] = [];
  for (let k = 0; k + GRID_OFFSET <= maxSeconds; k++) out.push(k + GRID_OFFSET);
  return out;
}

/**
 * At most `points` idle times up to maxSeconds, for a NAT that lets a node hold only so many
 * mappings at once (a quota, a port block): every probe is a mapping held until its check,
 * and probes past the limit would be refused and read as mappings gone. Every second within
 * 5 s of the expected lifetime (where it should end), spread evenly elsewhere; all of them
 * spread evenly when even those are too many. Pure.
 */
export function budgetGrid(maxSeconds: number, expected: number | undefined, points: number): number[] {
  const full = idleGrid(maxSeconds);
  if (full.length <= points) return full;
  const every = (xs: number[], n: number) => {
    const step = Math.ceil(xs.length / Math.max(1, n));
    return xs.filter((_, i) => i % step === 0);
  };
  const fine = full.filter((x) => expected !== undefined && x >= expected - 5 && x <= expected + 5);
  const coarse = full.filter((x) => !fine.includes(x));
  if (fine.length === 0 || fine.length >= points) return every(full, points);
  return [...every(coarse, points - fine.length), ...fine].sort((a, b) => a - b);
}

async function sysctlTimeouts(hops: PathHop[]): Promise<{ unreplied: number; stream: number } | undefined> {
  const values = await Promise.all(
    hops.map(async (h) => {
      const r = await run(inNetns(h.netns, ['sysctl', '-n', 'net.netfilter.nf_conntrack_udp_timeout', 'net.netfilter.nf_conntrack_udp_timeout_stream']), {
        allowFailure: true,
      });
      const [u, s] = r.stdout.trim().split(/\s+/).map(Number);
      return r.exitCode === 0 && u && s ? { unreplied: u, stream: s } : undefined;
    }),
  );
  const ok = values.filter((v): v is { unreplied: number; stream: number } => !!v);
  if (ok.length === 0) return undefined;
  return { unreplied: Math.min(...ok.map((v) => v.unreplied)), stream: Math.min(...ok.map((v) => v.stream)) };
}

export async function runLifetime(options: CheckOptions & { maxSeconds?: number }): Promise<LifetimeReport> {
  const started = Date.now();
  const { targets, serverNetns, lab } = await resolveTargets(options);
  const hops = targets.flatMap((t) => t.path);
  // What to expect (declared, or the kernel's settings on the path), and how far to look.
  const expected = new Map<Target, { unreplied: number; stream: number; from: 'declared' | 'sysctl' } | undefined>();
  for (const t of targets) {
    if (t.declared?.timeouts) expected.set(t, { ...t.declared.timeouts, from: 'declared' });
    else {
      const s = await sysctlTimeouts(t.path);
      expected.set(t, s ? { ...s, from: 'sysctl' } : undefined);
    }
  }
  const capFor = (t: Target, kind: FlowKind) => lifetimeCap(kind, expected.get(t)?.[kind], options.maxSeconds);
  const grids = new Map<Target, Record<FlowKind, number[]>>();
  const thinned: string[] = [];
  for (const t of targets) {
    // Within a NAT's limit of mappings held at once, fewer idle times (a few flows to spare).
    const limit = t.declared?.limit ? (t.declared.limit.atLeast ?? t.declared.limit.flows) : undefined;
    const points = limit !== undefined ? Math.floor((limit - 4) / PER_POINT / KINDS.length) : Number.POSITIVE_INFINITY;
    const grid = (kind: FlowKind) => budgetGrid(capFor(t, kind), expected.get(t)?.[kind], points);
    const g = { unreplied: grid('unreplied'), stream: grid('stream') };
    grids.set(t, g);
    const full = idleGrid(capFor(t, 'unreplied')).length + idleGrid(capFor(t, 'stream')).length;
    if (g.unreplied.length + g.stream.length < full)
      thinned.push(
        `${t.name}: ${limit} mappings at once (${t.declared!.limit!.why}) hold ${(g.unreplied.length + g.stream.length) * PER_POINT} probes, not the ${full * PER_POINT} of a check every second: every second within 5 s of the declared lifetime, further apart elsewhere`,
      );
  }
  const perTarget = Math.max(...targets.map((t) => (grids.get(t)!.unreplied.length + grids.get(t)!.stream.length) * PER_POINT));
  const slots = assignSlots(targets, perTarget);
  return withSession(targetsSession(options, serverNetns, targets, perTarget), async (session) => {
    if (session.instances.length < perTarget) {
      throw new Error(
        `--lifetime needs one server port pair per probe (${perTarget}); a third-party server has ${session.instances.length}: run it without --server`,
      );
    }
    // Each path's round trip first (a 300 ms one would otherwise shift every idle time by 0.3 s), then NATs forget that flow.
    const timings = new Map<Target, PathTiming>();
    await Promise.all(
      targets.map(async (t) => {
        const inst = session.instances[slots.get(t)!]!;
        const m = await session.agent(t.probe.netns).call<RttSamples>('rtt', { to: { address: inst.a1, port: inst.p1 } });
        timings.set(t, pathTiming(m, 1));
      }),
    );
    await flushHops(hops);
    trace('flushed; lifetime probes start');
    const results = await Promise.all(
      targets.map(async (t) => {
        const a = session.agent(t.probe.netns);
        let slot = slots.get(t)!;
        const caps = { unreplied: capFor(t, 'unreplied'), stream: capFor(t, 'stream') };
        return {
          t,
          results: await measureLifetimes(
            (op, args, ms) => a.call(op, args, ms),
            caps,
            () => session.instances[slot++]!,
            { rttMs: timings.get(t)!.rttMs, retransmit: timings.get(t)!.retransmit },
            grids.get(t)!,
          ),
        };
      }),
    );
    trace('lifetime probes done');
    session.atEnd(() => flushHops(hops));
    const reports: LifetimeTargetReport[] = results.map(({ t, results: rs }) => {
      const kinds = rs.map((r) => kindReport(r, capFor(t, r.kind), expected.get(t)));
      const g = governingLifetime(kinds);
      const ms = kinds.map((k) => k.match).filter((m): m is boolean => m !== undefined);
      return {
        name: t.name,
        probe: t.probe,
        path: t.path.map((h) => h.name),
        kinds,
        ...(g ? { keepalive: keepaliveFor(g.seconds), keepaliveBasis: basisOf(g) } : {}),
        ...(ms.length ? { match: ms.every(Boolean) } : {}),
      };
    });
    const g = governingOver(reports);
    const ms = reports.map((r) => r.match).filter((m): m is boolean => m !== undefined);
    return {
      ...(lab ? { lab } : {}),
      server: session.server,
      targets: reports,
      ...(g ? { keepalive: keepaliveFor(g.seconds), keepaliveBasis: basisOf(g) } : {}),
      explanation: [...thinned, ...explainLifetimes(reports)],
      ...(ms.length ? { match: ms.every(Boolean) } : {}),
      unmeasured: unmeasuredLifetimes(reports),
      unconfirmed: unconfirmedLifetimes(reports),
      durationMs: Date.now() - started,
    };
  });
}

/** Declared lifetimes the checks stopped short of (see LifetimeReport.unconfirmed). Pure. */
export function unconfirmedLifetimes(reports: Pick<LifetimeTargetReport, 'name' | 'kinds'>[]): string[] {
  return reports.flatMap((r) =>
    r.kinds
      .filter((k) => k.expectedFrom === 'declared' && k.expected !== undefined && beyondChecks(k.estimate, k.expected))
      .map((k) => `${r.name}'s ${k.kind} lifetime (declared ${k.expected} s)`),
  );
}

/** The lifetimes no probe could check at all, by name ("NAT's kind lifetime"). Pure. */
export function unmeasuredLifetimes(reports: Pick<LifetimeTargetReport, 'name' | 'kinds'>[]): string[] {
  return reports.flatMap((r) => r.kinds.filter((k) => k.estimate.verdict === 'unknown').map((k) => `${r.name}'s ${k.kind} lifetime`));
}

const basisOf = (g: Governing): KeepaliveBasis => (g.lowerBound ? 'lower-bound' : 'measured');

/** Why the keepalive is what it is, in words. Pure. */
export function explainLifetimes(reports: LifetimeTargetReport[]): string[] {
  const lines: string[] = [];
  const g = governingOver(reports);
  lines.push(
    'A NAT forgets an idle UDP mapping after a timeout that depends on the flow: one that has seen a single exchange (unreplied) gets the short UDP timeout; one with traffic both ways for more than 2 s gets the longer stream timeout (conntrack calls it ASSURED).',
  );
  lines.push(
    "A keepalive sent only from inside (WireGuard's PersistentKeepalive is not answered) refreshes the mapping with whichever timeout the flow has; a new flow, or one re-created after a NAT forgot it, has the short one. So the interval must stay under the shortest lifetime of every NAT on the path, with some margin.",
  );
  if (!g) {
    lines.push('No keepalive can be recommended: a lifetime could not be measured, or its checks disagree (see above).');
    return lines;
  }
  const k = keepaliveFor(g.seconds);
  const t = g.target!;
  const where = `${g.kind}, ${t.name}${t.path.length > 1 ? ` through ${t.path.join(' and ')}` : ''}`;
  if (!g.lowerBound) {
    lines.push(
      `The shortest lifetime measured is ${g.seconds} s (${where}): a keepalive every ${k} s keeps every mapping (e.g. WireGuard PersistentKeepalive = ${k}).`,
    );
    // A lifetime known only to be longer than the checks went is longer than this one too.
    if (reports.some((r) => r.kinds.some((x) => x.estimate.verdict === 'longer')))
      lines.push('Lifetimes only known to be longer than the checks went are longer than that one too: they do not change it.');
  } else {
    lines.push(
      `The shortest lifetime is only known to be longer than ${g.seconds.toFixed(0)} s (${where}: the mapping outlived every check; see --lifetime-max), and none measured is shorter: a keepalive every ${k} s keeps every mapping, if perhaps more often than needed (e.g. WireGuard PersistentKeepalive = ${k}).`,
    );
  }
  return lines;
}

export function formatLifetime(r: LifetimeReport): string {
  const out: string[] = [];
  out.push(`labctl check --lifetime${r.lab ? ` of lab "${r.lab}"` : ''}: ${serverLine(r)} (${(r.durationMs / 1000).toFixed(1)} s)`);
  out.push('');
  const rows: string[][] = [];
  for (const t of r.targets) {
    for (const k of t.kinds) {
      const e = k.estimate;
      const measured = e.verdict === 'measured' ? `${e.seconds} s` : e.verdict === 'longer' ? `> ${e.aliveUpTo?.toFixed(0)} s` : e.verdict;
      const exp = k.expected !== undefined ? `${k.expected} s${k.expectedFrom === 'sysctl' ? ' (sysctl)' : ''}` : '-';
      rows.push([t.name, t.path.join(' < ') || '-', k.kind, exp, measured, k.match === undefined ? '-' : k.match ? 'yes' : 'NO', e.detail]);
    }
    const lower = t.keepaliveBasis === 'lower-bound';
    rows.push([
      t.name,
      '',
      'keepalive',
      '',
      t.keepalive !== undefined ? `${t.keepalive} s` : '-',
      '',
      `under the shortest lifetime on this path${lower ? ' (only known to be longer than the checks went)' : ''}, a sixth to spare`,
    ]);
  }
  out.push(
    table(['NAT', 'path (inner < outer)', 'flow', 'expected', 'measured', 'match', 'evidence'], rows)
      .split('\n')
      .map((l) => (l ? `  ${l}` : l))
      .join('\n'),
  );
  out.push(...r.explanation);
  if (r.keepalive !== undefined)
    out.push(
      `keepalive for the whole lab: ${r.keepalive} s${r.keepaliveBasis === 'lower-bound' ? ' (from a lower bound of a lifetime: perhaps more often than needed)' : ''}`,
    );
  return `${out.join('\n')}\n`;
}
