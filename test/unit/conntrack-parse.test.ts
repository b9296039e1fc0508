// The conntrack output parser, on lines captured from conntrack-tools 1.4.7 (Debian 12,
// kernel 6.x) in a lab like the article's with udp-timeouts { unreplied: 3, stream: 5 }.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConntrackParseError, parseConntrackLine, parseConntrackListing, type ConntrackEntry } from '../../src/conntrack/parse.js';

const parse = (line: string): ConntrackEntry => parseConntrackLine(line) ?? assert.fail(`no entry in ${line}`);

// `conntrack -E -o timestamp,extended,id` in c1-nat during the article's experiment 3.
const EXPERIMENT_3 = [
  '[1795929329.908333]\t    [NEW] ipv4     2 udp      17 3 src=10.0.2.1 dst=100.64.1.100 sport=47619 dport=54321 [UNREPLIED] src=100.64.1.100 dst=100.64.2.100 sport=54321 dport=54321 id=1294440207',
  '[1795929330.585418]\t [UPDATE] ipv4     2 udp      17 3 src=10.0.2.1 dst=100.64.1.100 sport=47619 dport=54321 src=100.64.1.100 dst=100.64.2.100 sport=54321 dport=54321 id=1294440207',
  '[1795929332.853485]\t [UPDATE] ipv4     2 udp      17 5 src=10.0.2.1 dst=100.64.1.100 sport=47619 dport=54321 src=100.64.1.100 dst=100.64.2.100 sport=54321 dport=54321 [ASSURED] id=1294440207',
  '[1795929352.024835]\t[DESTROY] ipv4     2 udp      17 src=10.0.2.1 dst=100.64.1.100 sport=47619 dport=54321 src=100.64.1.100 dst=100.64.2.100 sport=54321 dport=54321 [ASSURED] id=1294440207',
];

// A TCP connection c1 -> 100.64.1.100:54321 (c0-nat forwards it to c0:12345), seen in c1-nat and c0-nat.
const TCP_C1_NAT = [
  '[1795929304.722828]\t    [NEW] ipv4     2 tcp      6 120 SYN_SENT src=10.0.2.1 dst=100.64.1.100 sport=39488 dport=54321 [UNREPLIED] src=100.64.1.100 dst=100.64.2.100 sport=54321 dport=54321 id=2385375923',
  '[1795929304.723010]\t [UPDATE] ipv4     2 tcp      6 60 SYN_RECV src=10.0.2.1 dst=100.64.1.100 sport=39488 dport=54321 src=100.64.1.100 dst=100.64.2.100 sport=54321 dport=54321 id=2385375923',
  '[1795929304.723018]\t [UPDATE] ipv4     2 tcp      6 432000 ESTABLISHED src=10.0.2.1 dst=100.64.1.100 sport=39488 dport=54321 src=100.64.1.100 dst=100.64.2.100 sport=54321 dport=54321 [ASSURED] id=2385375923',
  '[1795929306.705672]\t [UPDATE] ipv4     2 tcp      6 120 FIN_WAIT src=10.0.2.1 dst=100.64.1.100 sport=39488 dport=54321 src=100.64.1.100 dst=100.64.2.100 sport=54321 dport=54321 [ASSURED] id=2385375923',
  '[1795929306.709085]\t [UPDATE] ipv4     2 tcp      6 30 LAST_ACK src=10.0.2.1 dst=100.64.1.100 sport=39488 dport=54321 src=100.64.1.100 dst=100.64.2.100 sport=54321 dport=54321 [ASSURED] id=2385375923',
  '[1795929306.709100]\t [UPDATE] ipv4     2 tcp      6 120 TIME_WAIT src=10.0.2.1 dst=100.64.1.100 sport=39488 dport=54321 src=100.64.1.100 dst=100.64.2.100 sport=54321 dport=54321 [ASSURED] id=2385375923',
];
const TCP_C0_NAT_NEW =
  '[1795929304.723299]\t    [NEW] ipv4     2 tcp      6 120 SYN_SENT src=100.64.2.100 dst=100.64.1.100 sport=54321 dport=54321 [UNREPLIED] src=10.0.1.1 dst=100.64.2.100 sport=12345 dport=54321 id=4199948491';

// `conntrack -L -o extended,id`, conntrack's summary line included (it goes to stderr, but a listing may hold it).
const LISTING = `conntrack v1.4.7 (conntrack-tools): 4 flow entries have been shown.
ipv4     2 udp      17 48 src=10.0.2.1 dst=100.64.1.254 sport=7000 dport=7001 src=100.64.1.254 dst=10.0.2.1 sport=7001 dport=7000 mark=42 zone=7 use=1 id=2845337091
ipv4     2 icmp     1 29 src=10.0.2.1 dst=100.64.2.254 type=8 code=0 id=4660 src=100.64.2.254 dst=100.64.2.100 type=0 code=0 id=4660 mark=0 use=1 id=2168540686
ipv4     2 tcp      6 104 TIME_WAIT src=10.0.2.1 dst=100.64.1.100 sport=39488 dport=54321 src=100.64.1.100 dst=100.64.2.100 sport=54321 dport=54321 [ASSURED] mark=0 use=1 id=2385375923
ipv4     2 icmp     1 27 src=10.0.2.1 dst=100.64.1.100 type=8 code=0 id=4660 [UNREPLIED] src=100.64.1.100 dst=100.64.2.100 type=0 code=0 id=4660 mark=0 use=1 id=959569925
`;

describe('conntrack -E events', () => {
  test('experiment 3: NEW UNREPLIED, UPDATE, UPDATE ASSURED, DESTROY', () => {
    const [created, update, assured, destroyed] = EXPERIMENT_3.map(parse);
    assert.deepEqual(created, {
      event: 'NEW',
      timestamp: 1795929329.908333,
      family: 'ipv4',
      protocol: 'udp',
      protonum: 17,
      timeout: 3,
      flags: ['UNREPLIED'],
      original: { src: '10.0.2.1', dst: '100.64.1.100', sport: 47619, dport: 54321 },
      reply: { src: '100.64.1.100', dst: '100.64.2.100', sport: 54321, dport: 54321 },
      id: 1294440207,
    });
    assert.equal(update!.event, 'UPDATE');
    assert.equal(update!.timeout, 3);
    assert.deepEqual(update!.flags, []);
    assert.equal(assured!.timeout, 5);
    assert.deepEqual(assured!.flags, ['ASSURED']);
    assert.equal(destroyed!.event, 'DESTROY');
    assert.equal(destroyed!.timeout, undefined, 'DESTROY carries no timeout');
    assert.deepEqual(destroyed!.flags, ['ASSURED']);
    assert.deepEqual(destroyed!.reply, created!.reply);
    assert.ok(new Set([created, update, assured, destroyed].map((e) => e!.id)).size === 1, 'one flow, one id');
  });

  test("plain `conntrack -E` (the article's command): no family, no timestamp, no id", () => {
    const e = parse(
      '    [NEW] udp      17 30 src=100.64.2.100 dst=100.64.1.100 sport=54321 dport=54321 [UNREPLIED] src=10.0.1.1 dst=100.64.2.100 sport=12345 dport=54321',
    );
    assert.equal(e.event, 'NEW');
    assert.equal(e.family, undefined);
    assert.equal(e.timestamp, undefined);
    assert.equal(e.id, undefined);
    assert.equal(e.timeout, 30);
    assert.deepEqual(e.reply, { src: '10.0.1.1', dst: '100.64.2.100', sport: 12345, dport: 54321 });
    const d = parse(
      '[DESTROY] udp      17 src=10.0.2.1 dst=100.64.1.100 sport=36332 dport=54321 [UNREPLIED] src=100.64.1.100 dst=100.64.2.100 sport=54321 dport=54321',
    );
    assert.equal(d.event, 'DESTROY');
    assert.equal(d.protocol, 'udp');
    assert.deepEqual(d.flags, ['UNREPLIED']);
  });

  test('TCP: the state after the timeout, SYN_SENT to TIME_WAIT', () => {
    const events = TCP_C1_NAT.map(parse);
    assert.deepEqual(
      events.map((e) => [e.event, e.timeout, e.state, e.flags.join(' ')]),
      [
        ['NEW', 120, 'SYN_SENT', 'UNREPLIED'],
        ['UPDATE', 60, 'SYN_RECV', ''],
        ['UPDATE', 432000, 'ESTABLISHED', 'ASSURED'],
        ['UPDATE', 120, 'FIN_WAIT', 'ASSURED'],
        ['UPDATE', 30, 'LAST_ACK', 'ASSURED'],
        ['UPDATE', 120, 'TIME_WAIT', 'ASSURED'],
      ],
    );
    const inbound = parse(TCP_C0_NAT_NEW);
    assert.deepEqual(inbound.original, { src: '100.64.2.100', dst: '100.64.1.100', sport: 54321, dport: 54321 });
    assert.deepEqual(inbound.reply, { src: '10.0.1.1', dst: '100.64.2.100', sport: 12345, dport: 54321 });
  });

  test('ICMP: type, code and the ICMP id in the tuples, the entry id after them', () => {
    const e = parse(
      '[1795929321.920210]\t [UPDATE] ipv4     2 icmp     1 30 src=10.0.2.1 dst=100.64.2.254 type=8 code=0 id=4660 src=100.64.2.254 dst=100.64.2.100 type=0 code=0 id=4660 id=2168540686',
    );
    assert.equal(e.protocol, 'icmp');
    assert.equal(e.protonum, 1);
    assert.deepEqual(e.original, { src: '10.0.2.1', dst: '100.64.2.254', type: 8, code: 0, icmpId: 4660 });
    assert.deepEqual(e.reply, { src: '100.64.2.254', dst: '100.64.2.100', type: 0, code: 0, icmpId: 4660 });
    assert.equal(e.id, 2168540686);
  });

  test('an entry made by a program: mark, zone, [USERSPACE] portid progname', () => {
    const e = parse(
      '[1795929311.059446]\t    [NEW] ipv4     2 udp      17 60 src=10.0.2.1 dst=100.64.1.254 sport=7000 dport=7001 src=100.64.1.254 dst=10.0.2.1 sport=7001 dport=7000 mark=42 zone=7 id=2845337091 [USERSPACE] portid=17358 progname=conntrack',
    );
    assert.equal(e.mark, 42);
    assert.equal(e.zone, 7);
    assert.equal(e.id, 2845337091);
    assert.deepEqual(e.userspace, { portid: 17358, progname: 'conntrack' });
    assert.deepEqual(e.flags, []);
    assert.equal(e.extra, undefined);
  });

  test('counters (nf_conntrack_acct=1): packets and bytes per direction', () => {
    const e = parse(
      '[1795929366.333214]\t[DESTROY] ipv4     2 udp      17 src=10.0.2.1 dst=100.64.1.100 sport=59229 dport=54321 packets=1 bytes=32 src=100.64.1.100 dst=100.64.2.100 sport=54321 dport=54321 packets=1 bytes=36 id=1120166992',
    );
    assert.deepEqual(e.original, { src: '10.0.2.1', dst: '100.64.1.100', sport: 59229, dport: 54321, packets: 1, bytes: 32 });
    assert.deepEqual(e.reply, { src: '100.64.1.100', dst: '100.64.2.100', sport: 54321, dport: 54321, packets: 1, bytes: 36 });
  });

  test('a hairpinned flow (DNAT and SNAT at once) and an unknown protocol (IGMP)', () => {
    const hp = parse(
      'ipv4     2 udp      17 28 src=10.0.1.2 dst=100.64.1.100 sport=7777 dport=5000 [UNREPLIED] src=10.0.1.1 dst=100.64.1.100 sport=6000 dport=7777 mark=0 use=1 id=3947364899',
    );
    assert.deepEqual(hp.reply, { src: '10.0.1.1', dst: '100.64.1.100', sport: 6000, dport: 7777 });
    const igmp = parse('ipv4     2 unknown  2 596 src=10.0.1.100 dst=224.0.0.22 [UNREPLIED] src=224.0.0.22 dst=10.0.1.100 mark=0 use=1 id=539639875');
    assert.equal(igmp.protocol, 'unknown');
    assert.equal(igmp.protonum, 2);
    assert.equal(igmp.timeout, 596);
    assert.deepEqual(igmp.original, { src: '10.0.1.100', dst: '224.0.0.22' });
    // Without -o extended an unknown protocol's DESTROY starts "unknown 2 src=": not a family.
    const d = parse('[DESTROY] unknown  2 src=10.0.1.100 dst=224.0.0.22 [UNREPLIED] src=224.0.0.22 dst=10.0.1.100');
    assert.equal(d.protocol, 'unknown');
    assert.equal(d.family, undefined);
  });
});

describe('conntrack -L listings', () => {
  test('every entry, the summary line skipped: mark, use, zone, ids', () => {
    const entries = parseConntrackListing(LISTING);
    assert.equal(entries.length, 4);
    assert.deepEqual(
      entries.map((e) => [e.protocol, e.timeout, e.state ?? '', e.flags.join(' '), e.mark, e.use, e.zone, e.id]),
      [
        ['udp', 48, '', '', 42, 1, 7, 2845337091],
        ['icmp', 29, '', '', 0, 1, undefined, 2168540686],
        ['tcp', 104, 'TIME_WAIT', 'ASSURED', 0, 1, undefined, 2385375923],
        ['icmp', 27, '', 'UNREPLIED', 0, 1, undefined, 959569925],
      ],
    );
    assert.ok(entries.every((e) => e.event === undefined && e.timestamp === undefined));
  });

  test('the plain format (no -o) parses too', () => {
    const e = parse(
      'tcp      6 115 TIME_WAIT src=10.0.2.1 dst=100.64.1.100 sport=39488 dport=54321 src=100.64.1.100 dst=100.64.2.100 sport=54321 dport=54321 [ASSURED] mark=0 use=1',
    );
    assert.equal(e.state, 'TIME_WAIT');
    assert.equal(e.use, 1);
  });

  test('unknown keys are kept in extra', () => {
    const e = parse(
      'ipv4     2 tcp      6 10 ESTABLISHED src=1.1.1.1 dst=2.2.2.2 sport=1 dport=2 src=2.2.2.2 dst=1.1.1.1 sport=2 dport=1 [ASSURED] mark=0 secctx=system_u:object_r:unlabeled_t:s0 helper=ftp use=1',
    );
    assert.deepEqual(e.extra, { secctx: 'system_u:object_r:unlabeled_t:s0', helper: 'ftp' });
  });
});

describe('what is not an entry', () => {
  test("blank lines and conntrack's summaries give nothing", () => {
    assert.equal(parseConntrackLine(''), undefined);
    assert.equal(parseConntrackLine('conntrack v1.4.7 (conntrack-tools): 3 flow events have been shown.'), undefined);
  });

  test('anything else is an error that quotes the line', () => {
    for (const line of [
      '<flow type="new"><meta direction="original"></meta></flow>',
      'ipv4     2 udp      17 3 src=10.0.2.1 dst=100.64.1.100 sport=1 dport=2',
      'ipv4     2 udp      17 3 src=10.0.2.1 sport=1 dport=2 src=1.1.1.1 dst=2.2.2.2',
      'ipv4     2 udp      17 3 src=a dst=b sport=x dport=2 src=c dst=d',
      'conntrack: Operation not permitted',
    ]) {
      assert.throws(
        () => parseConntrackLine(line),
        (e: unknown) => e instanceof ConntrackParseError && e.message.includes(line),
        line,
      );
    }
  });
});
