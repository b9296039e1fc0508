// Naming conntrack entries after the lab's members, the translation line, the output
// formats, and which namespace a member name picks. Lines captured from conntrack 1.4.7.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { addressNames, annotate, translation } from '../../src/conntrack/annotate.js';
import { entryJson, formatEntries, formatEvent, stateText } from '../../src/conntrack/format.js';
import { parseConntrackLine, type ConntrackEntry } from '../../src/conntrack/parse.js';
import { choicesText, memberChoices, stateChoices, targetInLab, targetInState } from '../../src/conntrack/target.js';
import type { LabState } from '../../src/host/state.js';
import { loadLab } from '../../src/lab/load.js';
import { parseLab } from '../../src/lab/resolve.js';

const parse = (line: string): ConntrackEntry => parseConntrackLine(line) ?? assert.fail(`no entry in ${line}`);
const article = loadLab('article');
const names = addressNames(article);

// c1-nat, experiment 3 (`conntrack -E -o timestamp,extended,id`).
const NEW_C1 =
  '[1795929329.908333]\t    [NEW] ipv4     2 udp      17 3 src=10.0.2.1 dst=100.64.1.100 sport=47619 dport=54321 [UNREPLIED] src=100.64.1.100 dst=100.64.2.100 sport=54321 dport=54321 id=1294440207';
const ASSURED_C1 =
  '[1795929332.853485]\t [UPDATE] ipv4     2 udp      17 5 src=10.0.2.1 dst=100.64.1.100 sport=47619 dport=54321 src=100.64.1.100 dst=100.64.2.100 sport=54321 dport=54321 [ASSURED] id=1294440207';
const DESTROY_C1 =
  '[1795929352.024835]\t[DESTROY] ipv4     2 udp      17 src=10.0.2.1 dst=100.64.1.100 sport=47619 dport=54321 src=100.64.1.100 dst=100.64.2.100 sport=54321 dport=54321 [ASSURED] id=1294440207';
// c0-nat, experiment 1: c1's packet to c0-nat's port forward (DNAT to c0:12345).
const INBOUND_C0 =
  '    [NEW] udp      17 30 src=100.64.2.100 dst=100.64.1.100 sport=54321 dport=54321 [UNREPLIED] src=10.0.1.1 dst=100.64.2.100 sport=12345 dport=54321';
// c1-nat: ICMP echo from c1 to inet (SNAT, no ports) and an entry without translation.
const ICMP_C1 =
  'ipv4     2 icmp     1 29 src=10.0.2.1 dst=100.64.2.254 type=8 code=0 id=4660 src=100.64.2.254 dst=100.64.2.100 type=0 code=0 id=4660 mark=0 use=1 id=2168540686';
const TCP_C1 =
  'ipv4     2 tcp      6 431999 ESTABLISHED src=10.0.2.1 dst=100.64.1.100 sport=39488 dport=54321 src=100.64.1.100 dst=100.64.2.100 sport=54321 dport=54321 [ASSURED] mark=0 use=1 id=2385375923';
const ZONED_C1 =
  'ipv4     2 udp      17 59 src=10.0.2.1 dst=100.64.1.254 sport=7000 dport=7001 src=100.64.1.254 dst=10.0.2.1 sport=7001 dport=7000 mark=42 zone=7 use=1 id=2845337091';

describe('address names from the resolved lab', () => {
  test("nodes, both addresses of each NAT, the internet's link addresses", () => {
    assert.deepEqual(Object.fromEntries(names), {
      '10.0.1.1': 'c0',
      '10.0.2.1': 'c1',
      '100.64.1.100': 'c0-nat',
      '10.0.1.100': 'c0-nat',
      '100.64.2.100': 'c1-nat',
      '10.0.2.100': 'c1-nat',
      '100.64.1.254': 'inet',
      '100.64.2.254': 'inet',
    });
  });
});

describe('the translation', () => {
  test("outbound (SNAT): inside endpoint -> the NAT's outside endpoint -> the remote", () => {
    const t = translation(parse(NEW_C1), names);
    assert.equal(t.kind, 'snat');
    assert.equal(t.text, 'c1 10.0.2.1:47619 -> 100.64.2.100:54321 -> 100.64.1.100:54321 c0-nat');
    assert.deepEqual(t.source, { address: '10.0.2.1', port: 47619, name: 'c1' });
    assert.deepEqual(t.sourceAs, { address: '100.64.2.100', port: 54321, name: 'c1-nat' });
    assert.deepEqual(t.destination, { address: '100.64.1.100', port: 54321, name: 'c0-nat' });
    assert.equal(t.destinationAs, undefined);
    // The same flow's later events translate the same way.
    assert.equal(translation(parse(ASSURED_C1), names).text, t.text);
    assert.equal(translation(parse(DESTROY_C1), names).text, t.text);
  });

  test("inbound through a port forward (DNAT): the remote -> the NAT's outside endpoint -> the inside node", () => {
    const t = translation(parse(INBOUND_C0), names);
    assert.equal(t.kind, 'dnat');
    assert.equal(t.text, 'c1-nat 100.64.2.100:54321 -> 100.64.1.100:54321 -> 10.0.1.1:12345 c0');
    assert.equal(t.sourceAs, undefined);
    assert.deepEqual(t.destinationAs, { address: '10.0.1.1', port: 12345, name: 'c0' });
  });

  test('hairpinning (DNAT and SNAT): four endpoints, in the order the packet meets them', () => {
    const office = parseLab(
      `name: office\nsites:\n  - name: office\n    nat: { type: full-cone, hairpinning: true, forwards: [{ protocol: udp, port: 5000, to: desk1, to-port: 6000 }] }\n    nodes: [{ name: desk1 }, { name: desk2 }]\n`,
      'office.yaml',
    );
    const line =
      'ipv4     2 udp      17 28 src=10.0.1.2 dst=100.64.1.100 sport=7777 dport=5000 [UNREPLIED] src=10.0.1.1 dst=100.64.1.100 sport=6000 dport=7777 mark=0 use=1 id=3947364899';
    const t = translation(parse(line), addressNames(office));
    assert.equal(t.kind, 'snat+dnat');
    assert.equal(t.text, 'desk2 10.0.1.2:7777 -> 100.64.1.100:7777 -> 100.64.1.100:5000 -> 10.0.1.1:6000 desk1');
  });

  test('ICMP: addresses only', () => {
    assert.equal(translation(parse(ICMP_C1), names).text, 'c1 10.0.2.1 -> 100.64.2.100 -> 100.64.2.254 inet');
  });

  test('no translation; addresses outside the lab have no name', () => {
    assert.equal(translation(parse(ZONED_C1), names).text, 'c1 10.0.2.1:7000 -> 100.64.1.254:7001 inet');
    const foreign = parse(
      'ipv4     2 udp      17 5 src=192.0.2.7 dst=198.51.100.1 sport=1 dport=2 src=198.51.100.1 dst=192.0.2.7 sport=2 dport=1 mark=0 use=1',
    );
    const t = translation(foreign, names);
    assert.equal(t.kind, 'none');
    assert.equal(t.text, '192.0.2.7:1 -> 198.51.100.1:2');
  });
});

describe('annotated entries and their output', () => {
  test('tuples carry the names of their addresses', () => {
    const e = annotate(parse(NEW_C1), names);
    assert.deepEqual(e.original, { src: '10.0.2.1', dst: '100.64.1.100', sport: 47619, dport: 54321, srcName: 'c1', dstName: 'c0-nat' });
    assert.deepEqual(e.reply, { src: '100.64.1.100', dst: '100.64.2.100', sport: 54321, dport: 54321, srcName: 'c0-nat', dstName: 'c1-nat' });
  });

  test('one JSON object per event: event, time, flags, timeout, tuples, translation', () => {
    const json = JSON.parse(JSON.stringify(entryJson(annotate(parse(NEW_C1), names))));
    assert.equal(json.event, 'NEW');
    assert.equal(json.time, new Date(1795929329908.333).toISOString());
    assert.equal(json.timestamp, 1795929329.908333);
    assert.equal(json.protocol, 'udp');
    assert.equal(json.timeout, 3);
    assert.deepEqual(json.flags, ['UNREPLIED']);
    assert.equal(json.translation.text, 'c1 10.0.2.1:47619 -> 100.64.2.100:54321 -> 100.64.1.100:54321 c0-nat');
    assert.equal(json.original.srcName, 'c1');
    assert.equal(json.id, 1294440207);
    const listed = entryJson(annotate(parse(TCP_C1), names));
    assert.equal('event' in listed, false);
    assert.equal('time' in listed, false);
  });

  test('state text: protocol state and flags', () => {
    assert.equal(stateText(annotate(parse(TCP_C1), names)), 'ESTABLISHED ASSURED');
    assert.equal(stateText(annotate(parse(NEW_C1), names)), 'UNREPLIED');
    assert.equal(stateText(annotate(parse(ICMP_C1), names)), '-');
  });

  test('the listing table: proto, state, timeout, translation (and mark/zone when any is set)', () => {
    const out = formatEntries([TCP_C1, ICMP_C1].map((l) => annotate(parse(l), names)));
    assert.equal(
      out,
      [
        'PROTO  STATE                TIMEOUT  TRANSLATION',
        'tcp    ESTABLISHED ASSURED  431999s  c1 10.0.2.1:39488 -> 100.64.2.100:54321 -> 100.64.1.100:54321 c0-nat',
        'icmp   -                    29s      c1 10.0.2.1 -> 100.64.2.100 -> 100.64.2.254 inet',
        '',
      ].join('\n'),
    );
    const zoned = formatEntries([annotate(parse(ZONED_C1), names)]);
    assert.match(zoned, /MARK\/ZONE\n.*inet\s+mark=42 zone=7\n$/);
  });

  test('an event line: time of day, event, proto, timeout, state, translation', () => {
    const line = formatEvent(annotate(parse(NEW_C1), names));
    assert.match(line, /^\d\d:\d\d:\d\d\.908 NEW {5}udp {7}3s UNREPLIED {13}c1 10\.0\.2\.1:47619 -> 100\.64\.2\.100:54321 -> 100\.64\.1\.100:54321 c0-nat$/);
    const destroyed = formatEvent(annotate(parse(DESTROY_C1), names));
    assert.match(destroyed, / DESTROY udp {8}- ASSURED /);
    // Without -o timestamp, the time it was received.
    const plain = formatEvent(annotate(parse(INBOUND_C0), names), 0);
    assert.match(plain, /^\d\d:\d\d:00\.000 NEW /);
  });
});

describe('which namespace a member name picks', () => {
  test('a NAT, a node, the internet', () => {
    assert.equal(targetInLab(article, 'c1-nat')?.netns, 'ns-c1-nat');
    assert.equal(targetInLab(article, 'c0')?.netns, 'ns-c0');
    assert.equal(targetInLab(article, 'inet')?.role, 'internet');
    assert.equal(targetInLab(article, 'c1-nat')?.names.get('10.0.2.1'), 'c1');
    assert.equal(targetInLab(article, 'nope'), undefined);
  });

  test('the choices an unknown name is told', () => {
    assert.equal(choicesText(memberChoices(article)), 'NATs: c0-nat, c1-nat; other members: c0, c1, inet');
  });

  test('a lab known only by its state file', () => {
    const state: LabState = {
      lab: 'gone',
      source: '/tmp/deleted.yaml',
      planHash: 'x',
      status: 'up',
      createdAt: '',
      namespaces: [
        { netns: 'ns-g-c0', owner: 'c0', role: 'node' },
        { netns: 'ns-g-c0-nat', owner: 'c0-nat', role: 'nat' },
        { netns: 'ns-g-inet', owner: 'inet', role: 'internet' },
      ],
      nats: [{ name: 'c0-nat', netns: 'ns-g-c0-nat', mapping: 'endpoint-independent', filtering: 'endpoint-independent' }],
    };
    assert.deepEqual(targetInState(state, 'c0-nat'), { lab: 'gone', member: 'c0-nat', role: 'nat', netns: 'ns-g-c0-nat', names: new Map() });
    assert.equal(targetInState(state, 'c9'), undefined);
    assert.equal(choicesText(stateChoices(state)), 'NATs: c0-nat; other members: c0, inet');
  });
});
