// Parses what `conntrack -L -o extended,id` and `conntrack -E -o timestamp,extended,id`
// print (conntrack-tools 1.4.x, libnetfilter_conntrack's default text format), one line
// per entry or event. Pure: no I/O.
//
// Why the text format rather than `-o xml`: the text carries the event time with
// microseconds (`-o timestamp`), xml only a local wall-clock time to the second; both
// name every field, and the text's grammar is small and regular:
//
//   [1795929212.528524]\t    [NEW] ipv4     2 udp      17 3 src=10.0.2.1 dst=100.64.1.100 sport=59335 dport=54321 [UNREPLIED] src=100.64.1.100 dst=100.64.2.100 sport=54321 dport=54321 id=676527568
//   ^ -o timestamp           ^ -E  ^ -o extended  ^ proto ^ timeout (not in DESTROY)  ^ original tuple        ^ status flag ^ reply tuple                                     ^ -o id
//
// then, depending on the protocol and the entry: a protocol state after the timeout
// (tcp: SYN_SENT ... TIME_WAIT), ICMP type/code/id instead of ports, per-tuple counters
// (packets= bytes=, with nf_conntrack_acct), [ASSURED] and other status flags, mark=,
// secctx=, zone=, use=, labels=, and for events caused by a program `[USERSPACE]
// portid=N progname=NAME`.

type ConntrackEventType = 'NEW' | 'UPDATE' | 'DESTROY';

export interface Tuple {
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
  /** ICMP type, code and identifier. */
  type?: number;
  code?: number;
  icmpId?: number;
  /** Counters (only when nf_conntrack_acct is on). */
  packets?: number;
  bytes?: number;
  /** Per-direction zone (zone-orig= / zone-reply=). */
  zone?: number;
}

export interface ConntrackEntry {
  /** Set for events (conntrack -E), absent for a listing. */
  event?: ConntrackEventType;
  /** Seconds since the epoch, when conntrack received the event (-o timestamp). */
  timestamp?: number;
  /** ipv4 or ipv6 (with -o extended). */
  family?: string;
  protocol: string;
  protonum: number;
  /** Seconds left; DESTROY events carry none. */
  timeout?: number;
  /** The protocol's state: TCP SYN_SENT, ESTABLISHED, TIME_WAIT ...; SCTP, DCCP likewise. */
  state?: string;
  /** Status flags: UNREPLIED, ASSURED, OFFLOAD, HW_OFFLOAD ... */
  flags: string[];
  original: Tuple;
  reply: Tuple;
  mark?: number;
  use?: number;
  zone?: number;
  /** The kernel's id of the entry (-o id): the same across one flow's events. */
  id?: number;
  /** The event was caused by a program (conntrack -I/-U/-D ...). */
  userspace?: { portid?: number; progname?: string };
  /** Any other key=value the parser does not know (secctx, labels, helper ...). */
  extra?: Record<string, string>;
}

export class ConntrackParseError extends Error {
  constructor(
    readonly line: string,
    reason: string,
  ) {
    super(`cannot parse conntrack output (${reason}): ${line}`);
    this.name = 'ConntrackParseError';
  }
}

const EVENTS = new Set<string>(['NEW', 'UPDATE', 'DESTROY']);
const ICMP = new Set(['icmp', 'icmpv6']);
const NUMERIC_TUPLE_KEYS = new Set(['sport', 'dport', 'type', 'code', 'packets', 'bytes']);

const PROTO_NAME = /^[a-z][a-z0-9_-]*$/;
const isInt = (s: string | undefined): s is string => s !== undefined && /^\d+$/.test(s);

/**
 * One line of conntrack's output → an entry; undefined for lines that carry none (blank
 * lines, conntrack's "N flow entries have been shown." summary). Throws
 * ConntrackParseError for a line that is neither.
 */
export function parseConntrackLine(line: string): ConntrackEntry | undefined {
  const text = line.trim();
  if (text === '' || text.startsWith('conntrack v')) return undefined;
  const tokens = text.split(/\s+/);
  let i = 0;
  const fail = (reason: string): never => {
    throw new ConntrackParseError(line, reason);
  };

  let timestamp: number | undefined;
  const ts = /^\[(\d+(?:\.\d+)?)\]$/.exec(tokens[i] ?? '');
  if (ts) {
    timestamp = Number(ts[1]);
    i++;
  }
  let event: ConntrackEventType | undefined;
  const ev = /^\[([A-Z]+)\]$/.exec(tokens[i] ?? '');
  if (ev && EVENTS.has(ev[1]!)) {
    event = ev[1] as ConntrackEventType;
    i++;
  }
  let family: string | undefined;
  if (/^(ipv4|ipv6|unknown)$/.test(tokens[i] ?? '') && isInt(tokens[i + 1]) && PROTO_NAME.test(tokens[i + 2] ?? '')) {
    family = tokens[i];
    i += 2;
  }
  const protocol = tokens[i];
  const protonum = tokens[i + 1];
  if (!protocol || !PROTO_NAME.test(protocol) || !isInt(protonum)) fail('no protocol name and number');
  i += 2;
  let timeout: number | undefined;
  if (isInt(tokens[i])) timeout = Number(tokens[i++]);
  let state: string | undefined;
  if (/^[A-Z][A-Z0-9_]*$/.test(tokens[i] ?? '')) state = tokens[i++];

  const tuples: Partial<Tuple>[] = [];
  let inTuple = false;
  const flags: string[] = [];
  const meta: Pick<ConntrackEntry, 'mark' | 'use' | 'zone' | 'id'> = {};
  let userspace: ConntrackEntry['userspace'];
  const extra: Record<string, string> = {};

  for (; i < tokens.length; i++) {
    const tok = tokens[i]!;
    const flag = /^\[([A-Z_]+)\]$/.exec(tok);
    if (flag) {
      if (flag[1] === 'USERSPACE') {
        userspace = {};
        inTuple = false;
      } else flags.push(flag[1]!);
      continue;
    }
    const eq = tok.indexOf('=');
    if (eq <= 0) fail(`unexpected "${tok}"`);
    const key = tok.slice(0, eq);
    const value = tok.slice(eq + 1);
    const current = inTuple ? tuples[tuples.length - 1] : undefined;
    if (key === 'src') {
      if (tuples.length === 2) fail('a third address tuple');
      tuples.push({ src: value });
      inTuple = true;
    } else if (current && key === 'dst') {
      current.dst = value;
    } else if (current && NUMERIC_TUPLE_KEYS.has(key)) {
      if (!isInt(value)) fail(`${key} is not a number`);
      (current as Record<string, number>)[key] = Number(value);
    } else if (current && key === 'id' && current.icmpId === undefined && (ICMP.has(protocol!) || current.type !== undefined)) {
      // ICMP's identifier belongs to the tuple; the entry's own id comes after the tuples.
      if (!isInt(value)) fail('id is not a number');
      current.icmpId = Number(value);
    } else if (current && (key === 'zone-orig' || key === 'zone-reply')) {
      if (!isInt(value)) fail(`${key} is not a number`);
      current.zone = Number(value);
    } else {
      inTuple = false;
      if (userspace && (key === 'portid' || key === 'progname')) {
        if (key === 'portid' && isInt(value)) userspace.portid = Number(value);
        else userspace.progname = value;
      } else if ((key === 'mark' || key === 'use' || key === 'zone' || key === 'id') && isInt(value)) {
        meta[key] = Number(value);
      } else {
        extra[key] = value;
      }
    }
  }
  if (tuples.length !== 2) fail(`${tuples.length} address tuple${tuples.length === 1 ? '' : 's'}, expected 2`);
  for (const t of tuples) if (!t.dst) fail('a tuple without dst=');

  return {
    ...(event ? { event } : {}),
    ...(timestamp !== undefined ? { timestamp } : {}),
    ...(family ? { family } : {}),
    protocol: protocol!,
    protonum: Number(protonum),
    ...(timeout !== undefined ? { timeout } : {}),
    ...(state ? { state } : {}),
    flags,
    original: tuples[0] as Tuple,
    reply: tuples[1] as Tuple,
    ...meta,
    ...(userspace ? { userspace } : {}),
    ...(Object.keys(extra).length ? { extra } : {}),
  };
}

/** Every entry of a listing (conntrack -L); throws on a line it cannot parse. */
export function parseConntrackListing(text: string): ConntrackEntry[] {
  const out: ConntrackEntry[] = [];
  for (const line of text.split('\n')) {
    const e = parseConntrackLine(line);
    if (e) out.push(e);
  }
  return out;
}
