// Link impairments in a lab file's and tc's units: parsing (`40ms`, `1%`, `5mbit`), the
// per-direction impairment a link ends up with (a profile, then the fields beside it), the
// checks that need the whole of it (jitter over delay, reorder without delay), and the text
// that shows it. Pure.
//
// Directions: every link joins a member to the router it routes through (model.ts's Link:
// `a` is the member farther from the internet, `b` the router's end). `upstream` is the
// traffic towards the internet, sent by `a`: the egress of a's interface; `downstream` is
// the other way, the egress of b's interface.
import { LINK_PROFILES, type LinkImpairment, type LinkProfile } from './link-profiles.js';

export type { LinkImpairment };

export const DIRECTIONS = ['both', 'upstream', 'downstream'] as const;
export type Direction = (typeof DIRECTIONS)[number];

/** What a link does to packets in each direction ({} for none). */
export interface LinkShaping {
  /** Sent by the member farther from the internet (Link.a). */
  upstream: LinkImpairment;
  /** Sent by the router's end (Link.b). */
  downstream: LinkImpairment;
}

/** The fields of a lab file's `links:` entry (and of `labctl link set`'s options) that take units. */
export const IMPAIRMENT_FIELDS = ['delay', 'jitter', 'loss', 'rate', 'corrupt', 'duplicate', 'reorder'] as const;
export type ImpairmentField = (typeof IMPAIRMENT_FIELDS)[number];

/** Each field's key in LinkImpairment and its kind of unit. */
export const FIELD_KEYS: Record<ImpairmentField, { key: keyof LinkImpairment; unit: Unit }> = {
  delay: { key: 'delayMs', unit: 'time' },
  jitter: { key: 'jitterMs', unit: 'time' },
  loss: { key: 'lossPercent', unit: 'percent' },
  rate: { key: 'rateKbit', unit: 'rate' },
  corrupt: { key: 'corruptPercent', unit: 'percent' },
  duplicate: { key: 'duplicatePercent', unit: 'percent' },
  reorder: { key: 'reorderPercent', unit: 'percent' },
};

// The formats, as tc writes them. The JSON Schema (lab/json-schema.ts) uses these very
// patterns, so editors accept exactly what labctl's schema stage accepts.
export const TIME_PATTERN = '^[0-9]+(\\.[0-9]+)?(us|ms|s)$';
export const PERCENT_PATTERN = '^[0-9]+(\\.[0-9]+)?%$';
/** bit, kbit, mbit, gbit per second; any case ("5Mbit", as tc prints it). */
export const RATE_PATTERN = '^[0-9]+(\\.[0-9]+)?([kKmMgG])?[bB][iI][tT]$';

export const TIME_FORMAT = 'a time such as 40ms, 1.5s or 500us';
export const PERCENT_FORMAT = 'a percentage such as 1% or 0.1%';
export const RATE_FORMAT = 'a rate such as 5mbit, 512kbit or 1gbit (bits per second)';

/** The longest delay or jitter labctl sets: a minute is far beyond any real link's. */
export const MAX_TIME_MS = 60_000;

const TIME_UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000 };
const RATE_UNIT_KBIT: Record<string, number> = { '': 0.001, k: 1, m: 1000, g: 1_000_000 };

/** Milliseconds, or undefined when the text is not a time. */
export function parseTime(text: string): number | undefined {
  const m = new RegExp(TIME_PATTERN).exec(text);
  return m ? Number(text.slice(0, text.length - m[2]!.length)) * TIME_UNIT_MS[m[2]!]! : undefined;
}

export function parsePercent(text: string): number | undefined {
  return new RegExp(PERCENT_PATTERN).test(text) ? Number(text.slice(0, -1)) : undefined;
}

/** Kilobits per second (1 kbit = 1000 bit, as tc counts), or undefined. */
export function parseRate(text: string): number | undefined {
  const m = new RegExp(RATE_PATTERN).exec(text);
  if (!m) return undefined;
  const prefix = (m[2] ?? '').toLowerCase();
  return Number(text.slice(0, text.length - prefix.length - 3)) * RATE_UNIT_KBIT[prefix]!;
}

export type Unit = 'time' | 'percent' | 'rate';

/** What is wrong with a value of that unit, in words; undefined when it is well-formed. */
export function unitProblem(unit: Unit, value: unknown): string | undefined {
  // A bare number (YAML's 40, or the command line's "40"): say which unit it needs.
  if (typeof value === 'number' || (typeof value === 'string' && /^[0-9]+(\.[0-9]+)?$/.test(value))) {
    const example = unit === 'time' ? `${value}ms` : unit === 'percent' ? `${value}%` : `${value}mbit`;
    return `needs a unit: ${example}, say (${unit === 'time' ? TIME_FORMAT : unit === 'percent' ? PERCENT_FORMAT : RATE_FORMAT})`;
  }
  if (typeof value !== 'string') return undefined; // the schema's type check says so
  if (unit === 'time') return parseTime(value) === undefined ? `must be ${TIME_FORMAT}` : undefined;
  if (unit === 'percent') return parsePercent(value) === undefined ? `must be ${PERCENT_FORMAT}` : undefined;
  if (parseRate(value) !== undefined) return undefined;
  // tc's own "kbps"/"mbps" mean bytes per second: a classic slip; say so.
  if (/^[0-9.]+[kmg]?bps$/i.test(value))
    return `must be ${RATE_FORMAT}; tc's "bps" units are bytes per second, which labctl does not take: write mbit for megabits`;
  return `must be ${RATE_FORMAT}`;
}

/** A field's value in canonical units (ms, %, kbit), from text unitProblem() accepted. */
export function fieldValue(field: ImpairmentField, text: string): number {
  const unit = FIELD_KEYS[field].unit;
  const v = unit === 'time' ? parseTime(text) : unit === 'percent' ? parsePercent(text) : parseRate(text);
  if (v === undefined) throw new Error(`${field}: ${text} is not well-formed`);
  return v;
}

/** Range problems of one field's value (after units): percentages to 100, a positive rate, times to a minute. */
export function rangeProblem(field: ImpairmentField, value: number): string | undefined {
  const unit = FIELD_KEYS[field].unit;
  if (unit === 'percent' && value > 100) return `(${formatPercent(value)}) must be at most 100%`;
  if (unit === 'rate' && value <= 0) return 'must be more than 0 (to cut a link, use `labctl link down`)';
  if (unit === 'time' && value > MAX_TIME_MS) return `(${formatTime(value)}) must be at most ${MAX_TIME_MS / 1000}s`;
  return undefined;
}

/** The profile's impairment in one direction: its common values, then that direction's own. */
export function profileDirection(profile: LinkProfile, direction: 'upstream' | 'downstream'): LinkImpairment {
  return { ...profile.values, ...(profile[direction] ?? {}) };
}

/** The names of the profiles labctl knows, for messages. */
export function profileNames(): string[] {
  return Object.keys(LINK_PROFILES).sort();
}

/** Drops fields whose value is 0 (no impairment of that kind): `loss: 0%` beside a profile takes its loss away. */
export function withoutZeros(i: LinkImpairment): LinkImpairment {
  const out: LinkImpairment = {};
  for (const [k, v] of Object.entries(i) as [keyof LinkImpairment, number | undefined][]) if (v !== undefined && v !== 0) out[k] = v;
  return out;
}

/** Problems that need the whole impairment of one direction: [field, message]. */
export function consistencyProblems(i: LinkImpairment): [ImpairmentField, string][] {
  const out: [ImpairmentField, string][] = [];
  if (i.jitterMs !== undefined && (i.delayMs === undefined || i.jitterMs > i.delayMs)) {
    out.push([
      'jitter',
      `(${formatTime(i.jitterMs)}) must not be more than the delay (${i.delayMs === undefined ? 'none' : formatTime(i.delayMs)}): netem varies the delay by up to the jitter either way`,
    ]);
  }
  if (i.reorderPercent !== undefined && i.delayMs === undefined) {
    out.push(['reorder', 'needs a delay: netem reorders by sending some packets at once while the others wait out the delay']);
  }
  return out;
}

export const isEmpty = (i: LinkImpairment) => Object.values(i).every((v) => v === undefined);
export const NO_SHAPING: LinkShaping = { upstream: {}, downstream: {} };
export const shapingIsEmpty = (s: LinkShaping) => isEmpty(s.upstream) && isEmpty(s.downstream);

/** The fields that need netem (everything but rate, which tbf does). */
export function netemFields(i: LinkImpairment): ImpairmentField[] {
  return IMPAIRMENT_FIELDS.filter((f) => f !== 'rate' && i[FIELD_KEYS[f].key] !== undefined);
}

/** Two impairments with the same values. */
export function sameImpairment(x: LinkImpairment, y: LinkImpairment): boolean {
  return IMPAIRMENT_FIELDS.every((f) => x[FIELD_KEYS[f].key] === y[FIELD_KEYS[f].key]);
}

export const sameShaping = (x: LinkShaping, y: LinkShaping) => sameImpairment(x.upstream, y.upstream) && sameImpairment(x.downstream, y.downstream);

// --- text ---

/** Up to 6 decimals, never an exponent. */
const plain = (n: number) => n.toFixed(6).replace(/\.?0+$/, '');

export function formatTime(ms: number): string {
  if (ms >= 1000 && Number.isInteger(ms / 1000)) return `${ms / 1000}s`;
  if (Number.isInteger(ms)) return `${ms}ms`;
  return `${plain(ms * 1000)}us`;
}

export const formatPercent = (p: number) => `${plain(p)}%`;

export function formatRate(kbit: number): string {
  if (kbit >= 1_000_000 && Number.isInteger(kbit / 1_000_000)) return `${kbit / 1_000_000}gbit`;
  if (kbit >= 1000 && Number.isInteger(kbit / 1000)) return `${kbit / 1000}mbit`;
  if (Number.isInteger(kbit)) return `${kbit}kbit`;
  return `${plain(kbit * 1000)}bit`;
}

/** The impairment as the lab file would say it: "delay 40ms jitter 10ms loss 1% rate 5mbit". */
export function describeImpairment(i: LinkImpairment): string {
  const parts: string[] = [];
  for (const f of IMPAIRMENT_FIELDS) {
    const v = i[FIELD_KEYS[f].key];
    if (v === undefined) continue;
    const unit = FIELD_KEYS[f].unit;
    parts.push(`${f} ${unit === 'time' ? formatTime(v) : unit === 'percent' ? formatPercent(v) : formatRate(v)}`);
  }
  return parts.join(' ');
}

/** Both directions in one line: the same both ways, or "up: ...; down: ...". */
export function describeShaping(s: LinkShaping): string {
  if (shapingIsEmpty(s)) return 'none';
  if (sameImpairment(s.upstream, s.downstream)) return describeImpairment(s.upstream);
  return [
    `upstream: ${isEmpty(s.upstream) ? 'none' : describeImpairment(s.upstream)}`,
    `downstream: ${isEmpty(s.downstream) ? 'none' : describeImpairment(s.downstream)}`,
  ].join('; ');
}
