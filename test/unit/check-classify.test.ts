// The pure parts of `labctl check`: reading probe results as RFC 4787 behaviour, composing
// the behaviour of NAT chains, lifetimes, the hole-punching model, option parsing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { aggregate, analyse, classifyFilteringRun, classifyHairpinRun, classifyMappingRun, describeType } from '../../src/check/classify.js';
import { composeDeclared, labTargets } from '../../src/check/declared.js';
import { budgetGrid, estimateLifetime, idleGrid, keepaliveFor, lifetimeMatches } from '../../src/check/lifetime.js';
import { explainDrop, type ModelNat, type ModelNode, predictPunching } from '../../src/check/punch-model.js';
import { parseExpect, parseServer } from '../../src/check/options.js';
import { assignSlots, pairsNeeded } from '../../src/check/run.js';
import { chooseAddresses } from '../../src/check/stun-site.js';
import { parseLab } from '../../src/lab/resolve.js';
import type { FilteringResult, MappingResult, Observation } from '../../src/stun/probes.js';

const A1 = '203.0.113.1';
const A2 = '203.0.113.2';
const OUT = '100.64.1.100';
const to = (address: string, port: number) => ({ address, port });
const obs = (dest: [string, number], mapped?: number, from?: [string, number]): Observation => ({
  to: to(dest[0], dest[1]),
  ...(mapped !== undefined ? { mapped: to(OUT, mapped) } : {}),
  ...(from ? { from: to(from[0], from[1]) } : mapped !== undefined ? { from: to(dest[0], dest[1]) } : {}),
});
const mapping = (local: number, ports: (number | undefined)[]): MappingResult => ({
  local,
  observations: [obs([A1, 3478], ports[0]), obs([A1, 3479], ports[1]), obs([A2, 3478], ports[2]), obs([A2, 3479], ports[3])],
});
const filtering = (local: number, port: boolean, addr: boolean, both: boolean, mapped = local): FilteringResult => ({
  local,
  same: obs([A1, 3478], mapped),
  changePort: port ? obs([A1, 3478], mapped, [A1, 3479]) : obs([A1, 3478]),
  changeAddress: addr ? obs([A1, 3478], mapped, [A2, 3478]) : obs([A1, 3478]),
  changeBoth: both ? obs([A1, 3478], mapped, [A2, 3479]) : obs([A1, 3478]),
});

test('mapping runs: EIM, ADM, APDM over the address x port matrix; odd patterns are inconsistent', () => {
  assert.equal(classifyMappingRun(mapping(40000, [40000, 40000, 40000, 40000])).value, 'endpoint-independent');
  assert.equal(classifyMappingRun(mapping(40000, [1111, 1111, 2222, 2222])).value, 'address-dependent');
  assert.equal(classifyMappingRun(mapping(40000, [1111, 2222, 3333, 4444])).value, 'address-and-port-dependent');
  assert.equal(classifyMappingRun(mapping(40000, [1111, 2222, 3333, 3333])).value, 'inconsistent');
  const lost = classifyMappingRun(mapping(40000, [1111, undefined, 1111, 1111]));
  assert.equal(lost.value, 'unknown');
  assert.match(lost.detail, /no response from A1:P2/);
});

test('filtering runs: EIF, ADF, APDF from which changed answers got in (RFC 5780 4.4)', () => {
  assert.equal(classifyFilteringRun(filtering(1, true, true, true)).value, 'endpoint-independent');
  assert.equal(classifyFilteringRun(filtering(1, true, false, false)).value, 'address-dependent');
  assert.equal(classifyFilteringRun(filtering(1, false, false, false)).value, 'address-and-port-dependent');
  assert.equal(classifyFilteringRun(filtering(1, false, true, false)).value, 'inconsistent');
  // The evidence names the server endpoint whose answer got in.
  assert.equal(classifyFilteringRun(filtering(1, true, false, false)).detail, ':1 same yes, other port 203.0.113.1:3479 yes, other address no, both no');
  assert.equal(
    classifyFilteringRun(filtering(1, true, true, true)).detail,
    ':1 same yes, other port 203.0.113.1:3479 yes, other address 203.0.113.2:3478 yes, both 203.0.113.2:3479 yes',
  );
  const noAnswer = { ...filtering(1, false, false, false), same: obs([A1, 3478]) };
  assert.equal(classifyFilteringRun(noAnswer).value, 'unknown');
  // A server that ignores CHANGE-REQUEST answers from where it was asked: the test says nothing.
  const ignoring = { ...filtering(1, true, true, true), changeBoth: obs([A1, 3478], 1, [A1, 3478]) };
  assert.match(classifyFilteringRun(ignoring).detail, /answered a CHANGE-REQUEST from the unchanged endpoint/);
});

test('hairpinning: delivered or not, and the source a hairpinned packet shows', () => {
  const base = { a: { local: 1000, mapped: to(OUT, 1000) }, b: { local: 2000, mapped: to(OUT, 2000) } };
  assert.equal(classifyHairpinRun({ ...base, delivered: false }).value, false);
  const outside = classifyHairpinRun({ ...base, delivered: true, receivedOn: 1000, shownSource: to(OUT, 2000) });
  assert.deepEqual([outside.value, outside.source], [true, 'outside']);
  assert.match(outside.detail, /the sender's mapping/);
  const inside = classifyHairpinRun({ ...base, delivered: true, receivedOn: 1000, shownSource: to('10.0.1.1', 2000) });
  assert.equal(inside.source, 'inside');
  assert.equal(classifyHairpinRun({ a: { local: 1 }, b: { local: 2 }, delivered: false }).value, 'unknown');
});

test('runs that disagree are reported as inconsistent, not averaged', () => {
  assert.equal(
    aggregate([
      { value: 'a', detail: '' },
      { value: 'a', detail: '' },
    ]),
    'a',
  );
  assert.equal(
    aggregate([
      { value: 'a', detail: '' },
      { value: 'b', detail: '' },
    ]),
    'inconsistent',
  );
  assert.equal(
    aggregate([
      { value: 'a', detail: '' },
      { value: 'unknown', detail: '' },
    ]),
    'inconsistent',
  );
  assert.equal(aggregate([{ value: 'unknown', detail: '' }]), 'unknown');
  assert.equal(describeType('endpoint-independent', 'address-dependent'), 'restricted-cone (EIM+ADF)');
  assert.equal(describeType('address-dependent', 'endpoint-independent'), 'no classic name (ADM+EIF)');
});

test("analyse: rows with declared, measured, match and evidence; the article's restricted cone note", () => {
  const runs = {
    mapping: [mapping(40001, [54321, 54321, 54321, 54321]), mapping(40002, [54321, 54321, 54321, 54321])],
    filtering: [filtering(12345, false, false, false, 54321), filtering(12345, false, false, false, 54321)],
    hairpin: [
      { a: { local: 12345, mapped: to(OUT, 54321) }, b: { local: 40003, mapped: to(OUT, 54321) }, delivered: false },
      { a: { local: 12345, mapped: to(OUT, 54321) }, b: { local: 40004, mapped: to(OUT, 54321) }, delivered: false },
    ],
  };
  const declared = {
    mapping: 'endpoint-independent' as const,
    filtering: 'address-dependent' as const,
    hairpinning: false,
    port: { kind: 'fixed' as const, port: 54321 },
  };
  const r = analyse(runs, declared);
  assert.equal(r.match, false);
  const row = (t: string) => r.rows.find((x) => x.test === t)!;
  assert.deepEqual([row('mapping').measured, row('mapping').match], ['endpoint-independent', true]);
  assert.deepEqual([row('filtering').declared, row('filtering').measured, row('filtering').match], ['address-dependent', 'address-and-port-dependent', false]);
  assert.equal(row('type').measured, 'port-restricted-cone (EIM+APDF)');
  assert.deepEqual([row('port allocation').measured, row('port allocation').match], ['fixed 54321', true]);
  assert.match(r.notes[0]!, /checks the port too/);
  const nothing = analyse(runs, undefined);
  assert.equal(nothing.match, undefined);
  assert.ok(nothing.rows.every((x) => x.match === undefined && x.declared === undefined));
});

const LAB = `
name: t
prefix: t-
sites:
  - name: cgn
    nat: { type: restricted-cone, hairpinning: true, udp-timeouts: { unreplied: 20, stream: 60 } }
  - name: home
    upstream: cgn
    nat: { type: full-cone, udp-timeouts: { unreplied: 40, stream: 50 } }
    nodes: [{ name: laptop }]
  - name: art
    nat:
      type: full-cone
      fixed-port: 54321
      forwards: [{ protocol: udp, port: 54321, to: c0, to-port: 12345 }]
    nodes: [{ name: c0 }]
  - name: sym
    upstream: cgn
    nat: { type: symmetric }
    nodes: [{ name: phone }]
`;

test('a NAT chain, seen from the internet: mapping and filtering the most dependent, hairpinning only through EIF, shortest timeouts', () => {
  const lab = parseLab(LAB, 'test.yaml');
  const targets = labTargets(lab);
  const home = targets.find((t) => t.name === 'home-nat')!;
  assert.deepEqual(
    home.path.map((h) => h.name),
    ['home-nat', 'cgn-nat'],
  );
  assert.equal(home.group, 'cgn-nat');
  assert.deepEqual(home.declared, {
    mapping: 'endpoint-independent',
    filtering: 'address-dependent',
    hairpinning: true,
    port: { kind: 'preserved' },
    timeouts: { unreplied: 20, stream: 50 },
    composition: 'home-nat EIM+EIF behind cgn-nat EIM+ADF+hairpin',
    // one outside address on the way: paired, the row left out
    pooling: { value: 'paired', addresses: [lab.nats.find((n) => n.name === 'cgn-nat')!.outside.address], shown: false },
  });
  const cgn = targets.find((t) => t.name === 'cgn-nat')!;
  assert.equal(cgn.probe.node, 'laptop', 'a NAT without a node of its own is probed through a site behind it');
  assert.match(cgn.notes.join(' '), /has no node of its own/);
  const sym = targets.find((t) => t.name === 'sym-nat')!;
  assert.equal(sym.declared!.mapping, 'address-and-port-dependent');
  assert.equal(sym.declared!.hairpinning, false, 'an APDF NAT inside stops hairpinned packets');
  const art = targets.find((t) => t.name === 'art-nat')!;
  assert.equal(art.localPort, 12345, 'probes use the port the fixed-port NAT forwards to');
  assert.deepEqual(art.declared!.port, { kind: 'fixed', port: 54321 });
  const fixedOuter = composeDeclared([
    lab.nats.find((n) => n.name === 'sym-nat')!,
    { ...lab.nats.find((n) => n.name === 'art-nat')!, outside: { ...lab.nats[0]!.outside } },
  ]);
  assert.equal(fixedOuter.mapping, 'endpoint-independent', 'a fixed-port NAT outside hides the mapping inside it');
  // Targets behind one outer NAT never share server port pairs.
  const slots = assignSlots(targets, 6);
  assert.notEqual(slots.get(home), slots.get(sym));
  assert.equal(pairsNeeded(targets, 6), 18, 'three targets behind cgn-nat');
});

test('lifetimes: bracketed by the last check that found the mapping and the first that did not', () => {
  const p = (checkedAt: number, alive: boolean) => ({ idle: checkedAt, local: 1, checkedAt, alive });
  const e = estimateLifetime([p(1.25, true), p(2.25, true), p(2.26, true), p(3.25, false), p(3.26, false)], 10);
  assert.deepEqual([e.verdict, e.seconds, e.aliveUpTo, e.goneFrom], ['measured', 3, 2.26, 3.25]);
  assert.equal(lifetimeMatches(e, 3), true);
  assert.equal(lifetimeMatches(e, 5), false);
  assert.equal(estimateLifetime([p(1.25, true), p(2.25, false), p(3.25, true)], 10).verdict, 'inconsistent');
  assert.equal(estimateLifetime([p(1.25, true), p(9.25, true)], 10).verdict, 'longer');
  assert.equal(estimateLifetime([{ idle: 1, local: 1, error: 'x' }], 10).verdict, 'unknown');
  assert.equal(keepaliveFor(30), 25, "WireGuard's 25 s under a 30 s timeout");
  assert.equal(keepaliveFor(3), 2);
  assert.equal(keepaliveFor(1), 1);
  assert.deepEqual(idleGrid(3), [0.03, 1.03, 2.03]);
});

const nat = (name: string, address: string, m: ModelNat['mapping'], f: ModelNat['filtering'], extra: Partial<ModelNat> = {}): ModelNat => ({
  name,
  address,
  mapping: m,
  filtering: f,
  hairpinning: false,
  ...extra,
});
const EI = 'endpoint-independent' as const;
const AD = 'address-dependent' as const;
const APD = 'address-and-port-dependent' as const;

test('hole punching model: cones meet, symmetric meets only the permissive, who drops what', () => {
  const nodes: ModelNode[] = [
    { name: 'full', address: '10.0.1.1', chain: [nat('fc', '100.64.1.100', EI, EI)] },
    { name: 'prc', address: '10.0.2.1', chain: [nat('prc', '100.64.2.100', EI, APD)] },
    { name: 'sym', address: '10.0.3.1', chain: [nat('sym', '100.64.3.100', APD, APD)] },
    { name: 'sym2', address: '10.0.4.1', chain: [nat('sym2', '100.64.4.100', APD, APD)] },
    { name: 'server', address: '100.64.9.1', chain: [] },
  ];
  const p = predictPunching(nodes);
  const ok = (a: string, b: string) => p.find((x) => x.from === a && x.to === b)!.verdict.delivered;
  assert.equal(ok('full', 'prc') && ok('prc', 'full'), true, 'two cones punch through');
  assert.equal(ok('sym', 'full'), true, "a full cone lets the symmetric NAT's new port in");
  assert.equal(ok('full', 'sym'), false, 'but the symmetric NAT only knows the server on the learned port');
  assert.equal(ok('sym', 'prc'), false);
  assert.equal(ok('sym', 'sym2') || ok('sym2', 'sym'), false, 'two symmetric NATs never meet');
  assert.equal(ok('server', 'sym'), false);
  assert.equal(ok('sym', 'server'), true);
  const why = p.find((x) => x.from === 'sym' && x.to === 'prc')!;
  assert.equal(why.verdict.droppedBy, 'prc');
  assert.match(explainDrop(why, nodes), /prc \(APDF\) drops it.*sym's packets leave sym from a new port for each address and port \(APDM\)/);
  const back = p.find((x) => x.from === 'full' && x.to === 'sym')!;
  assert.match(explainDrop(back, nodes), /the port sym learned from the STUN server is open to the server only: sym \(APDM\)/);
});

test("hole punching model: hairpinning behind one NAT, a CGN chain, the article's fixed-port NATs", () => {
  const cgn = nat('cgn', '100.64.1.100', EI, AD, { hairpinning: true });
  const nodes: ModelNode[] = [
    { name: 'a', address: '10.0.2.1', chain: [nat('home-a', '10.0.1.2', EI, EI), cgn] },
    { name: 'b', address: '10.0.3.1', chain: [nat('home-b', '10.0.1.3', EI, EI), cgn] },
    { name: 'c', address: '10.0.4.1', chain: [nat('home-c', '10.0.1.4', EI, APD), cgn] },
  ];
  const p = predictPunching(nodes);
  const ok = (x: string, y: string) => p.find((q) => q.from === x && q.to === y)!.verdict.delivered;
  assert.equal(ok('a', 'b') && ok('b', 'a'), true, 'hairpinned by the carrier NAT, let in by EIF homes');
  assert.equal(ok('a', 'c'), true, "c has sent to a's hairpinned endpoint... exactly, so its APDF lets the reply in");
  const noHairpin = predictPunching([
    { name: 'a', address: '10.0.2.1', chain: [nat('lan', '100.64.1.100', EI, EI)] },
    { name: 'b', address: '10.0.2.2', chain: [nat('lan', '100.64.1.100', EI, EI)] },
  ]);
  assert.equal(noHairpin[0]!.verdict.delivered, false);
  assert.match(noHairpin[0]!.verdict.reason!, /does not hairpin/);
  const article = predictPunching([
    { name: 'c0', address: '10.0.1.1', chain: [nat('c0-nat', '100.64.1.100', EI, EI, { fixedPort: 54321, forwardTo: 'c0' })] },
    { name: 'c1', address: '10.0.2.1', chain: [nat('c1-nat', '100.64.2.100', EI, AD, { fixedPort: 54321, forwardTo: 'c1' })] },
  ]);
  assert.ok(
    article.every((x) => x.verdict.delivered),
    "the article's two NATs talk both ways on 54321",
  );
});

test('hole punching model: when who sends first decides, the prediction says so', () => {
  // An address-dependent mapping with endpoint-independent filtering against a port-restricted cone:
  // if the cone's packet gets in first, the flow it creates keeps the learned port for the answers.
  const p = predictPunching([
    { name: 'adm', address: '10.0.1.1', chain: [nat('adm-nat', '100.64.1.100', AD, EI)] },
    { name: 'prc', address: '10.0.2.1', chain: [nat('prc-nat', '100.64.2.100', EI, APD)] },
  ]);
  const v = p.find((x) => x.from === 'adm' && x.to === 'prc')!.verdict;
  assert.equal(v.timing, true);
  assert.match(v.reason!, /depends on whose packet the NATs see first: it arrives when prc sends first, otherwise prc-nat \(APDF\) drops it/);
  const back = p.find((x) => x.from === 'prc' && x.to === 'adm')!.verdict;
  assert.equal(back.timing, true, "if adm sends first, prc's packet collides with adm's own flow to prc in conntrack");
  assert.match(back.reason!, /a conntrack clash/);
});

test("options: --expect, --server, the server address pair avoids the lab's subnets", () => {
  assert.deepEqual(parseExpect('restricted-cone'), { mapping: EI, filtering: AD });
  assert.deepEqual(parseExpect('apdm+apdf'), { mapping: APD, filtering: APD });
  assert.throws(() => parseExpect('cone'), /--expect wants/);
  assert.deepEqual(parseServer('198.51.100.1'), { address: '198.51.100.1', port: 3478 });
  assert.deepEqual(parseServer('198.51.100.1:5000'), { address: '198.51.100.1', port: 5000 });
  assert.throws(() => parseServer('host:1'), /--server wants/);
  assert.deepEqual(chooseAddresses(['100.64.1.100/24', '10.0.1.1/24']), ['203.0.113.1', '203.0.113.2']);
  assert.deepEqual(chooseAddresses(['203.0.113.9/24']), ['198.51.100.1', '198.51.100.2']);
  assert.deepEqual(chooseAddresses(['203.0.113.0/24', '198.51.100.7/24', '192.0.2.1/32']), ['198.18.0.1', '198.18.0.2']);
  assert.throws(() => chooseAddresses(['192.0.0.0/4']), /no free address pair/);
  // An interface's address with its prefix, host bits set: the whole subnet is taken; a /0 takes everything.
  assert.deepEqual(chooseAddresses(['203.0.113.100/25', '198.51.100.2/32']), ['192.0.2.1', '192.0.2.2']);
  assert.throws(() => chooseAddresses(['10.0.0.1/0']), /no free address pair/);
  assert.deepEqual(chooseAddresses(['nonsense', '203.0.113.1/33']), ['203.0.113.1', '203.0.113.2'], 'what is not an address/prefix is ignored');
  assert.deepEqual(parseExpect('EIM+ADF'), { mapping: EI, filtering: AD });
});

test('mapping evidence shows the outside address with the ports, or every endpoint when addresses differ', () => {
  const obs = (address: string, port: number) => ({ mapped: { address, port } });
  const one = classifyMappingRun({
    local: 5000,
    observations: [obs('100.64.1.100', 1024), obs('100.64.1.100', 1024), obs('100.64.1.100', 1024), obs('100.64.1.100', 1024)],
  } as never);
  assert.equal(one.detail, ':5000 -> 100.64.1.100: 1024 1024 1024 1024');
  const pool = classifyMappingRun({
    local: 5000,
    observations: [obs('100.64.1.100', 1024), obs('100.64.1.100', 1024), obs('100.64.1.101', 1024), obs('100.64.1.101', 1024)],
  } as never);
  assert.equal(pool.value, 'address-dependent');
  assert.equal(pool.detail, ':5000 -> 100.64.1.100:1024 100.64.1.100:1024 100.64.1.101:1024 100.64.1.101:1024');
});

test("lifetime checks within a NAT's limit of mappings: every second near the expected lifetime, further apart elsewhere", () => {
  assert.deepEqual(budgetGrid(10, 5, 100), idleGrid(10), 'a check every second when they fit');
  // cgnat-rfc6888: 300 s, looked for up to 450 s, 1024 mappings: 255 idle times per kind.
  const g = budgetGrid(450, 300, 255);
  assert.ok(g.length <= 255, `${g.length} idle times`);
  assert.deepEqual(
    g.filter((x) => x >= 295 && x <= 305),
    idleGrid(450).filter((x) => x >= 295 && x <= 305),
    'every second from 295 s to 305 s',
  );
  assert.equal(g[0], 0.03);
  assert.ok(Math.max(...g.slice(1).map((x, i) => x - g[i]!)) < 2.01, 'at most 2 s apart elsewhere');
  assert.ok(Math.max(...g) >= 448, 'up to the cap');
  // Without an expectation, or too few for the fine part: spread evenly over everything.
  assert.ok(budgetGrid(450, undefined, 100).length <= 100);
  assert.ok(budgetGrid(450, 300, 50).length <= 50);
});
