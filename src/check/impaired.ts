// `labctl check` over delayed and lossy links. Pure: from what a probe namespace measured of
// its path to the STUN server (a few single-shot Binding requests), the timings its probes
// use, and how many transmissions make a dropped answer mean "filtered" rather than "lost".
//
// Lab links are ideal by default (round trips well under a millisecond, no loss), and
// LAB_RETRANSMIT is tuned for that; a link with `delay:` or `loss:` (labctl link set) needs
// timeouts that follow the round trip, and tests where a drop IS the answer (filtering)
// need enough tries that loss cannot pass for filtering.
import type { Dependency } from '../lab/behaviour.js';
import { LAB_RETRANSMIT, type RetransmitOptions } from '../stun/client.js';
import type { FilteringResult } from '../stun/probes.js';
import { describeType } from './classify.js';
import type { TargetReport, Verdict } from './model.js';

/** What the `rtt` probe reports: one entry per request, the round trip in ms or null when no answer came. */
export interface RttSamples {
  samples: (number | null)[];
}

export interface PathTiming {
  /**
   * Shortest round trip of the answered requests, ms (0 when none was answered): the path's
   * own, as ping's minimum is; a busy host only adds to it (under software emulation the
   * median of a burst was 5 times the minimum).
   */
  rttMs: number;
  /** Median round trip, ms: what the retransmission timeout is based on, a loaded host included. */
  medianMs: number;
  sent: number;
  lost: number;
  /** Retransmission timing for every transaction on this path. */
  retransmit: RetransmitOptions;
  /** After a sentinel's answer: how long answers sent before it may still take, ms. */
  sentinelGraceMs: number;
  /** Transmissions of a request whose answer a NAT may drop (filtering), before no answer counts. */
  filteringTries: number;
}

/** Chance of losing one round trip above which the filtering tests count as unsure when nothing got in. */
export const UNSURE_CHANCE = 1e-3;

/** Upper bound (about 95%) of a path's loss per round trip: the rule of three when none was lost. */
export function lossUpperBound(lost: number, sent: number): number {
  if (sent <= 0) return 1;
  if (lost === 0) return Math.min(1, 3 / sent);
  const p = lost / sent;
  return Math.min(1, p + 2 * Math.sqrt((p * (1 - p)) / sent) + 1 / sent);
}

/**
 * From the samples, the timings: RTO = max(the lab default, 3 x the median RTT) (RFC 5389's RTO is for
 * a path it knows nothing of; this one is measured), the sentinel grace a lab round trip
 * more than the ideal-link one, and as many filtering tries as make a miss by loss alone
 * (estimated, upper bound) rarer than UNSURE_CHANCE over `runs` runs, at least 2.
 */
export function pathTiming(m: RttSamples, runs: number): PathTiming {
  const answered = m.samples.filter((s): s is number => s !== null).sort((a, b) => a - b);
  const rttMs = answered[0] ?? 0;
  const medianMs = answered.length ? answered[Math.floor((answered.length - 1) / 2)]! : 0;
  const lost = m.samples.length - answered.length;
  const q = lossUpperBound(lost, m.samples.length);
  const rto = Math.max(LAB_RETRANSMIT.rto, Math.ceil(3 * medianMs));
  let tries = 2;
  while (tries < 6 && missChance(q, tries * runs) > UNSURE_CHANCE) tries++;
  return {
    rttMs,
    medianMs,
    sent: m.samples.length,
    lost,
    retransmit: { ...LAB_RETRANSMIT, rto },
    sentinelGraceMs: 150 + Math.ceil(rttMs),
    filteringTries: tries,
  };
}

/** Chance that every one of n transmissions of a request that is let in loses its round trip, at loss q per round trip. */
export function missChance(q: number, n: number): number {
  return q ** n;
}

/** When the i-th transmission (0-based) of a transaction leaves, ms after the first. */
export function sendTime(rt: RetransmitOptions, i: number): number {
  let t = 0;
  let rto = rt.rto;
  for (let k = 0; k < i; k++) {
    t += rto;
    rto *= 2;
  }
  return t;
}

/**
 * One answer that a NAT may drop (a filtering test), over all runs: in when any run got it
 * (a NAT lets an answer in or drops it, the same each time; loss only takes some away);
 * dropped when none did and loss alone would explain that less often than UNSURE_CHANCE;
 * else unsure, with the numbers.
 */
export function droppedOrLost(
  gotIn: boolean[],
  triesPerRun: number,
  timing: Pick<PathTiming, 'sent' | 'lost'>,
): { value: 'in' | 'dropped' | 'unsure'; detail: string } {
  const got = gotIn.filter(Boolean).length;
  if (got > 0) return { value: 'in', detail: `${got} of ${gotIn.length} runs got it in` };
  const q = lossUpperBound(timing.lost, timing.sent);
  const chance = missChance(q, triesPerRun * gotIn.length);
  const evidence = `none of ${gotIn.length} runs x ${triesPerRun} transmissions got in; the path lost ${timing.lost} of ${timing.sent} round trips (loss up to ${(q * 100).toFixed(1)}%), so loss alone explains this with chance ${chance.toExponential(1)}`;
  return chance > UNSURE_CHANCE ? { value: 'unsure', detail: evidence } : { value: 'dropped', detail: evidence };
}

/**
 * The NAT's idle time when a lifetime check's answer reached it, seconds, from the client's
 * clock: idleness counts from the arrival of the answer that made the mapping, which passed
 * the NAT `inside` ms earlier; the check's answer reaches the NAT `inside` + 2 x `outside`
 * after the check leaves. Together one round trip, wherever on the path the delay is.
 */
export function natIdleSeconds(clientIdleMs: number, rttMs: number): number {
  return (clientIdleMs + rttMs) / 1000;
}

/** Whether a path's filtering runs are judged with loss in mind: it lost a round trip, or a filtering run's own request needed a retransmission. */
export function pathIsLossy(timing: Pick<PathTiming, 'lost'>, runs: FilteringResult[]): boolean {
  return timing.lost > 0 || runs.some((r) => (r.same.transmissions ?? 1) > 1);
}

/**
 * Filtering over a lossy path, from all runs together (see droppedOrLost): the other port,
 * the other address and both, each in, dropped or unsure. Unsure anywhere: unknown, with
 * the evidence; otherwise the RFC 4787 filtering those three give (or inconsistent).
 */
export function filteringUnderLoss(
  runs: FilteringResult[],
  triesPerRun: number,
  timing: Pick<PathTiming, 'sent' | 'lost' | 'rttMs'>,
): { value: Verdict<Dependency>; detail: string } {
  const usable = runs.filter((r) => !!r.same.from);
  if (usable.length === 0) return { value: 'unknown', detail: 'no run got even the answer from the endpoint it sent to' };
  const tests = [
    ['other port', (r: FilteringResult) => r.changePort],
    ['other address', (r: FilteringResult) => r.changeAddress],
    ['both', (r: FilteringResult) => r.changeBoth],
  ] as const;
  const verdicts = tests.map(([name, pick]) => ({
    name,
    ...droppedOrLost(
      usable.map((r) => !!pick(r).from),
      triesPerRun,
      timing,
    ),
  }));
  const detail = `round trip ${timing.rttMs} ms; ${verdicts.map((v) => `${v.name}: ${v.value} (${v.detail})`).join('; ')}`;
  if (verdicts.some((v) => v.value === 'unsure')) return { value: 'unknown', detail: `loss leaves it unsure: ${detail}` };
  const [p, a, b] = verdicts.map((v) => v.value === 'in');
  if (p && a && b) return { value: 'endpoint-independent', detail };
  if (p && !a && !b) return { value: 'address-dependent', detail };
  if (!p && !a && !b) return { value: 'address-and-port-dependent', detail };
  return { value: 'inconsistent', detail: `${detail} (fits no RFC 4787 filtering)` };
}

/** A target's report with its filtering judged over the lossy path instead (rows, type, match and a note with the evidence). */
export function withFilteringUnderLoss<R extends Pick<TargetReport, 'measured' | 'rows' | 'match' | 'notes' | 'declared'>>(
  report: R,
  f: { value: Verdict<Dependency>; detail: string },
): R {
  const d = report.declared;
  const measured = { ...report.measured, filtering: f.value };
  const rows = report.rows.map((r) => {
    if (r.test === 'filtering')
      return {
        ...r,
        measured: String(f.value),
        ...(d ? { match: f.value === d.filtering } : {}),
        evidence: `over a lossy path, all runs together: ${f.detail}`,
      };
    if (r.test === 'type')
      return { ...r, measured: describeType(measured.mapping, f.value), ...(d ? { match: measured.mapping === d.mapping && f.value === d.filtering } : {}) };
    return r;
  });
  const match = d ? rows.every((r) => r.match !== false) : undefined;
  const notes = [...report.notes, `the path to the server lost round trips: filtering was judged over all runs together (${f.detail})`];
  return { ...report, measured, rows, notes, ...(match !== undefined ? { match } : {}) };
}
