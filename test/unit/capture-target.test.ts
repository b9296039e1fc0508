// What `labctl capture MEMBER [--link PEER]` picks (the lab that is up, the member's links'
// interfaces) and the messages of bad input; and the readable lines: the interface column,
// the lab's names beside addresses, what --count counts. Lines captured from tcpdump 4.99.3.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { captureTarget, captureTargetFromState, labOfMember, memberLinks } from '../../src/capture/target.js';
import { annotateLine, interfacePrefix, startsPacket } from '../../src/capture/text.js';
import { addressNames } from '../../src/conntrack/annotate.js';
import type { LabState } from '../../src/host/state.js';
import { loadLab } from '../../src/lab/load.js';
import { UsageError } from '../../src/util/errors.js';

// Not from test/support/cli.js, whose import rebuilds dist/.
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const article = loadLab('article');
const rendezvous = loadLab(`${ROOT}test/fixtures/good-labs/internet-node.yaml`);
const bridged = loadLab(`${ROOT}test/fixtures/good-labs/bridged-lan.yaml`);

function stateOf(lab: ReturnType<typeof loadLab>, status: LabState['status'] = 'up'): LabState {
  const members = [...lab.nodes, ...lab.nats, lab.internet];
  return {
    lab: lab.name,
    source: lab.source,
    planHash: 'x',
    status,
    createdAt: '2026-12-02T00:00:00Z',
    namespaces: members.map((m) => ({ netns: m.netns, owner: m.name, role: m.kind })),
    nats: lab.nats.map((n) => ({ name: n.name, netns: n.netns, mapping: n.behaviour.mapping, filtering: n.behaviour.filtering })),
  };
}

const badInput = (fn: () => unknown, message: RegExp) =>
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof UsageError, `a UsageError (exit 2), not ${String(e)}`);
    assert.match(e.message, message);
    return true;
  });

describe('which lab and member', () => {
  const up = [stateOf(article), stateOf(rendezvous)];

  test('the lab that is up with that member', () => {
    assert.equal(labOfMember(up, 'c1-nat').lab, 'article');
    assert.equal(labOfMember(up, 'relay').lab, 'rendezvous');
    assert.equal(labOfMember(up, 'relay', 'rendezvous').lab, 'rendezvous');
  });

  test('no lab up', () => {
    badInput(() => labOfMember([], 'c1-nat'), /^no lab is up: bring one up with `labctl net up \[FILE\]` \(machines are not needed\)$/);
  });

  test('an unknown member: every lab up with its members', () => {
    badInput(
      () => labOfMember(up, 'c9'),
      /^no lab that is up has a member "c9" \(article: c0, c0-nat, c1, c1-nat, inet; rendezvous: home-nat, pc, relay, server, wan\)$/,
    );
    badInput(() => labOfMember(up, 'relay', 'article'), /^lab "article" has no member "relay" \(article: c0, c0-nat, c1, c1-nat, inet\)$/);
  });

  test('--lab of a lab that is not up', () => {
    badInput(() => labOfMember(up, 'c1-nat', 'other'), /^lab "other" is not up \(labs up: article, rendezvous\)$/);
    badInput(() => labOfMember([], 'c1-nat', 'other'), /^lab "other" is not up \(no lab is up\)$/);
  });

  test('a member of two labs up needs --lab', () => {
    const again = { ...stateOf(article), lab: 'article2' };
    badInput(
      () => labOfMember([stateOf(article), again], 'c1-nat'),
      /^"c1-nat" is a member of more than one lab that is up \(article, article2\): say which with --lab$/,
    );
    assert.equal(labOfMember([stateOf(article), again], 'c1-nat', 'article2').lab, 'article2');
  });

  test('a lab whose `net up` has not finished is not up', () => {
    badInput(() => labOfMember([stateOf(article, 'creating')], 'c1-nat'), /^lab "article" is not fully up/);
  });
});

describe('which interfaces', () => {
  test('a NAT: its LAN link and its uplink, with the peers', () => {
    assert.deepEqual(memberLinks(article, 'c1-nat'), [
      { ifname: 've-c1-nat-node', peer: 'c1' },
      { ifname: 've-c1-nat-inet', peer: 'inet' },
    ]);
    const t = captureTarget(article, stateOf(article), 'c1-nat');
    assert.equal(t.netns, 'ns-c1-nat');
    assert.deepEqual(t.interfaces, [
      { ifname: 've-c1-nat-node', peer: 'c1', description: 'c1-nat: link to c1 (lab article)' },
      { ifname: 've-c1-nat-inet', peer: 'inet', description: 'c1-nat: link to inet (lab article)' },
    ]);
    assert.equal(t.names.get('10.0.2.1'), 'c1');
  });

  test('--link: the one link', () => {
    assert.deepEqual(
      captureTarget(article, stateOf(article), 'c1-nat', 'inet').interfaces.map((i) => i.ifname),
      ['ve-c1-nat-inet'],
    );
    assert.deepEqual(
      captureTarget(article, stateOf(article), 'inet', 'c0-nat').interfaces.map((i) => i.ifname),
      ['ve-c0-inet'],
    );
    assert.deepEqual(
      captureTarget(article, stateOf(article), 'c0', 'c0-nat').interfaces.map((i) => i.ifname),
      ['ve-c0'],
    );
  });

  test('the internet and an internet node', () => {
    assert.deepEqual(
      memberLinks(rendezvous, 'wan').map((l) => `${l.ifname}>${l.peer}`),
      ['ve-server-inet>server', 've-relay-inet>relay', 've-home-inet>home-nat'],
    );
    assert.deepEqual(memberLinks(rendezvous, 'relay'), [{ ifname: 've-relay', peer: 'wan' }]);
    assert.equal(captureTarget(rendezvous, stateOf(rendezvous), 'relay').netns, 'ns-rv-relay');
  });

  test('a bridged LAN: one port per member (the bridge only repeats them)', () => {
    const nat = bridged.nats[0]!;
    const links = memberLinks(bridged, nat.name);
    assert.ok(links.length >= 3, JSON.stringify(links));
    assert.ok(!links.some((l) => l.ifname === 'br-lan'));
    assert.deepEqual(
      links.slice(0, -1).map((l) => l.peer),
      nat.lan.members,
    );
  });

  test('a peer that is not linked names the ones that are', () => {
    badInput(() => captureTarget(article, stateOf(article), 'c1-nat', 'c0'), /^c1-nat has no link to "c0" \(its links go to c1, inet\)$/);
    badInput(() => captureTarget(article, stateOf(article), 'inet', 'nope'), /^inet has no link to "nope" \(its links go to c0-nat, c1-nat\)$/);
  });

  test('without the lab file: the interfaces given, no names', () => {
    const t = captureTargetFromState(stateOf(article), 'c0', ['ve-c0']);
    assert.deepEqual(t.interfaces, [{ ifname: 've-c0', description: 'c0 (lab article)' }]);
    assert.equal(t.names.size, 0);
  });
});

describe('readable lines', () => {
  const names = addressNames(article);

  test("the lab's names beside its addresses, ports kept", () => {
    assert.equal(
      annotateLine('02:36:48.010437 IP 10.0.2.1.44432 > 100.64.1.100.54321: UDP, length 5', names),
      '02:36:48.010437 IP 10.0.2.1.44432 (c1) > 100.64.1.100.54321 (c0-nat): UDP, length 5',
    );
    assert.equal(
      annotateLine('02:36:48.010433 ARP, Request who-has 10.0.2.100 tell 10.0.2.1, length 28', names),
      '02:36:48.010433 ARP, Request who-has 10.0.2.100 (c1-nat) tell 10.0.2.1 (c1), length 28',
    );
    assert.equal(
      annotateLine('02:33:28.574957 IP 100.64.2.254 > 100.64.2.100: ICMP 100.64.2.254 udp port 9 unreachable, length 39', names),
      '02:33:28.574957 IP 100.64.2.254 (inet) > 100.64.2.100 (c1-nat): ICMP 100.64.2.254 (inet) udp port 9 unreachable, length 39',
    );
  });

  test('what is not one of the lab addresses stays as it is', () => {
    for (const line of [
      '02:36:48.436508 IP6 fe80::cc0c:12ff:fe0b:495c > ff02::2: ICMP6, router solicitation, length 16',
      '02:36:48.010437 IP 192.0.2.1.53 > 10.0.2.10.1234: UDP, length 5',
      // a longer dotted token holding a lab address is not that address
      '02:36:48.010437 IP 110.0.2.1 > 10.0.2.1.2.3.4.5: ICMP',
      '02:36:48.010437 IP 10.0.2.100x > 10.0.2.1000: ICMP',
    ]) {
      assert.equal(annotateLine(line, names), line);
    }
  });

  test('without names the line is unchanged', () => {
    const line = '02:36:48.010437 IP 10.0.2.1.44432 > 100.64.1.100.54321: UDP, length 5';
    assert.equal(annotateLine(line, new Map()), line);
  });

  test('the interface column is as wide as the longest name', () => {
    assert.equal(interfacePrefix('ve-c1', ['ve-c1', 've-c1-nat-inet']), 've-c1           ');
    assert.equal(interfacePrefix('ve-c1-nat-inet', ['ve-c1', 've-c1-nat-inet']), 've-c1-nat-inet  ');
  });

  test('a packet starts with its time of day; continuation lines do not', () => {
    assert.ok(startsPacket('02:36:48.010437 IP 10.0.2.1 > 100.64.1.100: ICMP echo request, id 1, seq 1, length 64'));
    assert.ok(!startsPacket('    10.0.2.1 > 100.64.1.100: ICMP echo request, id 1, seq 1, length 64'));
    assert.ok(!startsPacket(''));
  });
});
