// `labctl probe` from hand-made measurements: port allocation and pooling, the `nat:` block
// that behaves the same and what it cannot say, the lab --lab-out writes (which labctl must
// take as it is), and --server's syntax. Pure: no host access.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import type { KindReport } from '../../src/check/lifetime.js';
import type { Measured } from '../../src/check/model.js';
import { parseLab } from '../../src/lab/resolve.js';
import { labNameFor, natBlockFor, prefixFor, type ProbeFindings } from '../../src/probe/analyse.js';
import { labYaml, natBlockYaml } from '../../src/probe/report.js';
import { parseEndpointSpec, type ProbeReport } from '../../src/probe/run.js';

const EI = 'endpoint-independent' as const;
const AD = 'address-dependent' as const;
const APD = 'address-and-port-dependent' as const;

function measured(mapping: Measured['mapping'], filtering: Measured['filtering'], extra: Partial<Measured> = {}): Measured {
  return { mapping, filtering, hairpinning: false, port: { kind: 'preserved' }, keepsPort: mapping === EI, outsideAddress: '100.64.1.100', ...extra };
}
function findings(m: Measured, extra: Partial<ProbeFindings> = {}): ProbeFindings {
  return { measured: m, allocation: { kind: 'preserved' }, pooling: 'paired', poolAddresses: ['100.64.1.100'], ...extra };
}
const kind = (k: 'unreplied' | 'stream', estimate: KindReport['estimate']): KindReport => ({ kind: k, estimate, probes: 10 });

test('the nat: block: a classic name where one fits, RFC 4787 terms otherwise, and the ports as measured', () => {
  assert.deepEqual(natBlockFor(findings(measured(EI, AD, { hairpinning: true, hairpinSource: 'outside' })), 'client'), {
    nat: { type: 'restricted-cone', hairpinning: true, 'port-preservation': true },
    notExpressible: [],
    unmeasured: [],
  });
  assert.deepEqual(natBlockFor(findings(measured(AD, EI), { allocation: { kind: 'random' } }), 'client').nat, {
    mapping: AD,
    filtering: EI,
    hairpinning: false,
  });
  // The article's NATs: every flow from one port, forwarded to the inside port every test used.
  assert.deepEqual(natBlockFor(findings(measured(EI, APD), { allocation: { kind: 'fixed', port: 54321 }, localPort: 12345 }), 'client').nat, {
    type: 'port-restricted-cone',
    hairpinning: false,
    'fixed-port': 54321,
    forwards: [{ protocol: 'udp', port: 54321, to: 'client', 'to-port': 12345 }],
  });
  assert.deepEqual(natBlockFor(findings(measured(EI, EI), { allocation: { kind: 'random' } }), 'client').nat, {
    type: 'full-cone',
    hairpinning: false,
    'port-preservation': false,
  });
});

test('sequential ports and an arbitrary pool go into the block; what a lab file cannot say is said', () => {
  const seq = natBlockFor(
    findings(measured(APD, APD), { allocation: { kind: 'sequential', delta: 1 }, pooling: 'arbitrary', poolAddresses: ['198.51.100.7', '198.51.100.9'] }),
    'client',
  );
  assert.deepEqual(seq.nat, { type: 'symmetric', hairpinning: false, 'port-allocation': 'sequential', outside: 2, pooling: 'arbitrary' });
  assert.deepEqual(seq.notExpressible, []);
  const byTwo = natBlockFor(findings(measured(APD, APD), { allocation: { kind: 'sequential', delta: 2 } }), 'client');
  assert.deepEqual(byTwo.notExpressible, ["port allocation: each new mapping +2 from the last; a lab NAT's sequential ports step by 1"]);
  const keptUnderApdm = natBlockFor(findings(measured(APD, APD)), 'client');
  assert.match(keptUnderApdm.notExpressible[0]!, /inside ports kept under address-and-port-dependent mapping/);
  assert.equal(keptUnderApdm.nat?.['port-preservation'], undefined, 'a lab file cannot keep ports under APDM');
  const inside = natBlockFor(findings(measured(EI, EI, { hairpinning: true, hairpinSource: 'inside' })), 'client');
  assert.match(inside.notExpressible[0]!, /hairpinned packets show the sender's inside address/);
  const none = natBlockFor(findings(measured('unknown', APD)), 'client');
  assert.deepEqual(none, { notExpressible: [], unmeasured: ['mapping (unknown)'] }, 'no block without mapping and filtering');
  assert.deepEqual(natBlockFor(findings(measured(EI, APD, { hairpinning: 'inconsistent' })), 'client').unmeasured, [
    "hairpinning (inconsistent; the lab's default, none, is written)",
  ]);
});

test('lifetimes become udp-timeouts: measured ones as they are, a lower bound as itself (said so), never stream under unreplied', () => {
  const m = (seconds: number) => ({ verdict: 'measured' as const, seconds, aliveUpTo: seconds - 0.5, goneFrom: seconds + 0.5, detail: '' });
  const base = findings(measured(EI, APD));
  assert.deepEqual(natBlockFor({ ...base, lifetimes: [kind('unreplied', m(30)), kind('stream', m(120))] }, 'c').nat?.['udp-timeouts'], {
    unreplied: 30,
    stream: 120,
  });
  const longer = natBlockFor({ ...base, lifetimes: [kind('unreplied', m(30)), kind('stream', { verdict: 'longer', aliveUpTo: 179.03, detail: '' })] }, 'c');
  assert.deepEqual(longer.nat?.['udp-timeouts'], { unreplied: 30, stream: 179 });
  assert.match(longer.notExpressible[0]!, /stream UDP lifetime: longer than 179 s/);
  const odd = natBlockFor({ ...base, lifetimes: [kind('unreplied', m(60)), kind('stream', m(40))] }, 'c');
  assert.deepEqual(odd.nat?.['udp-timeouts'], { unreplied: 60, stream: 60 });
  const long = natBlockFor({ ...base, lifetimes: [kind('unreplied', m(300)), kind('stream', { verdict: 'unknown', detail: 'no check could be made' })] }, 'c');
  assert.deepEqual(long.nat?.['udp-timeouts'], { unreplied: 300, stream: 300 }, "labctl's default stream (120 s) would be shorter");
  assert.match(long.unmeasured[0]!, /^stream UDP lifetime \(unknown/);
});

function report(nat: ProbeReport['nat'], extra: Partial<ProbeReport> = {}): ProbeReport {
  return {
    from: { netns: 'ns-c1', hosts: ['10.0.2.1'] },
    server: { address: '203.0.113.1', port: 3478, other: { address: '203.0.113.2', port: 3479 }, otherFrom: 'OTHER-ADDRESS', given: '203.0.113.1' },
    localPort: 12345,
    repetitions: 3,
    mapped: { address: '100.64.2.100', port: 54321 },
    measured: { ...measured(EI, APD), allocation: { kind: 'fixed', port: 54321 }, pooling: 'paired', outsideAddresses: ['100.64.2.100'] },
    rows: [
      { test: 'mapping', measured: EI, evidence: '...' },
      { test: 'port allocation', measured: 'fixed 54321', evidence: '...' },
    ],
    ...(nat ? { nat } : {}),
    notExpressible: [],
    notes: [],
    unmeasured: [],
    durationMs: 900,
    ...extra,
  };
}

test('--lab-out: a whole lab labctl takes as it is, named after the file, with what it cannot say in its header', () => {
  const nat = natBlockFor(findings(measured(EI, APD), { allocation: { kind: 'fixed', port: 54321 }, localPort: 12345 }), 'client').nat!;
  const text = labYaml(report(nat, { notExpressible: ['outside address pooling: arbitrary (...)'] }), '/tmp/My Carrier.yaml', new Date('2025-01-02T00:00:00Z'));
  const lab = parseLab(text, '/tmp/My Carrier.yaml');
  assert.equal(lab.name, 'my-carrier');
  assert.equal(lab.prefix, 'mycarri-');
  assert.deepEqual(
    lab.nats.map((n) => [
      n.name,
      n.behaviour.mapping,
      n.behaviour.filtering,
      n.behaviour.fixedPort,
      n.behaviour.forwards.map((f) => `${f.port}->${f.to}:${f.toPort}`),
    ]),
    [['probed-nat', EI, APD, 54321, ['54321->client:12345']]],
  );
  assert.deepEqual(
    lab.nodes.map((n) => [n.name, n.router]),
    [
      ['client', 'probed-nat'],
      ['server', 'inet'],
    ],
  );
  assert.match(text, /^# Written by `labctl probe --server 203\.0\.113\.1 --namespace ns-c1 --port 12345 --lab-out \/tmp\/My Carrier\.yaml` on 2025-01-02\.$/m);
  assert.match(
    text,
    /^# Measured, but not expressible in a lab file yet \(the lab below behaves otherwise there\):\n# {3}- outside address pooling: arbitrary/m,
  );
  assert.deepEqual(parse(natBlockYaml(nat)), { nat });
  assert.throws(() => labYaml(report(undefined), 'x.yaml'), /no nat block/);
  assert.equal(labNameFor('probe.yml'), 'probe');
  assert.equal(labNameFor('/a/2024_lte!.yaml'), 'lte');
  assert.equal(labNameFor('123.yaml'), 'probed');
  assert.equal(prefixFor('a-b'), 'ab-');
});

test('--server HOST[:PORT]: an IPv4 address or a name, and a port from 1 to 65535', () => {
  assert.deepEqual(parseEndpointSpec('--server', '203.0.113.1'), { host: '203.0.113.1' });
  assert.deepEqual(parseEndpointSpec('--server', 'stun.example.net:3479'), { host: 'stun.example.net', port: 3479 });
  for (const bad of ['', '203.0.113.1:0', '203.0.113.1:70000', '203.0.113', '999.1.1.1', 'stun example', 'host:', '[2001:db8::1]:3478', '-x'])
    assert.throws(() => parseEndpointSpec('--server', bad), { name: 'UsageError', message: /^--server wants HOST or HOST:PORT/ }, bad);
});
