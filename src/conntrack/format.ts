// Human and JSON output of annotated conntrack entries and events. Pure.
import { table } from '../report/table.js';
import type { AnnotatedEntry } from './annotate.js';

/** The protocol state and status flags: `ESTABLISHED ASSURED`, `UNREPLIED`, or `-`. */
export function stateText(e: AnnotatedEntry): string {
  return [...(e.state ? [e.state] : []), ...e.flags].join(' ') || '-';
}

const timeoutText = (e: AnnotatedEntry) => (e.timeout === undefined ? '-' : `${e.timeout}s`);

function extraText(e: AnnotatedEntry): string {
  const parts: string[] = [];
  if (e.mark) parts.push(`mark=${e.mark}`);
  if (e.zone !== undefined) parts.push(`zone=${e.zone}`);
  if (e.userspace?.progname) parts.push(`by ${e.userspace.progname}`);
  return parts.join(' ');
}

/** The listing: one row per entry (proto, state flags, timeout, translation). */
export function formatEntries(entries: AnnotatedEntry[]): string {
  const withExtra = entries.some((e) => extraText(e) !== '');
  const header = ['PROTO', 'STATE', 'TIMEOUT', 'TRANSLATION', ...(withExtra ? ['MARK/ZONE'] : [])];
  const rows = entries.map((e) => [e.protocol, stateText(e), timeoutText(e), e.translation.text, ...(withExtra ? [extraText(e)] : [])]);
  return table(header, rows);
}

const pad2 = (n: number) => String(n).padStart(2, '0');

/** Local time of day to the millisecond: 14:03:07.528 */
function timeOfDay(epochSeconds: number): string {
  const d = new Date(epochSeconds * 1000);
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, '0')}`;
}

/** One event: `14:03:07.528 NEW     udp   3s UNREPLIED   c1 10.0.2.1:44432 -> ... c0-nat` */
export function formatEvent(e: AnnotatedEntry, receivedAt = Date.now() / 1000): string {
  const extra = extraText(e);
  return [
    timeOfDay(e.timestamp ?? receivedAt),
    (e.event ?? '-').padEnd(7),
    e.protocol.padEnd(4),
    timeoutText(e).padStart(7),
    stateText(e).padEnd(21),
    e.translation.text,
    ...(extra ? [`(${extra})`] : []),
  ].join(' ');
}

/** The JSON object of one entry or event (printed one per line). */
export function entryJson(e: AnnotatedEntry): Record<string, unknown> {
  const { event, timestamp, ...rest } = e;
  return {
    ...(event ? { event } : {}),
    ...(timestamp !== undefined ? { time: new Date(timestamp * 1000).toISOString(), timestamp } : {}),
    ...rest,
  };
}
