// The hole-punching model's candidates (src/check/punch-model.ts predictChecks): host
// candidates first, then server-reflexive ones, answered as ICE answers its checks, and
// which candidate pair a pair of nodes ends up with: host, server-reflexive, hairpinned or
// peer-reflexive, or why none works. Pure: no host access.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type ModelNat, type ModelNode, pairPriority, pathKind, predictChecks } from '../../src/check/punch-model.js';

const EI = 'endpoint-independent' as const;
const AD = 'address-dependent' as const;
const APD = 'address-and-port-dependent' as const;
const nat = (name: string, address: string, m: ModelNat['mapping'], f: ModelNat['filtering'], extra: Partial<ModelNat> = {}): ModelNat => ({
  name,
  address,
  mapping: m,
  filtering: f,
  hairpinning: false,
  ...extra,
});

function predict(nodes: ModelNode[]) {
  const r = predictChecks(nodes);
  const check = (from: string, to: string, candidate: 'host' | 'server-reflexive') => {
    const c = r.checks.find((x) => x.from === from && x.to === to && x.candidate === candidate);
    assert.ok(c, `a check ${from} -> ${to}'s ${candidate}`);
    return c;
  };
  const pair = (a: string, b: string) => r.pairs.find((x) => (x.a === a && x.b === b) || (x.a === b && x.b === a))!;
  return { ...r, check, pair };
}

test('two nodes on one LAN behind a NAT that does not hairpin talk over their host candidates', () => {
  const lan = nat('lan-nat', '100.64.1.100', EI, APD);
  const p = predict([
    { name: 'a', address: '10.0.1.1', chain: [lan] },
    { name: 'b', address: '10.0.1.2', chain: [lan] },
  ]);
  const host = p.check('a', 'b', 'host');
  assert.deepEqual([host.delivered, host.answered, host.seenAs, host.path], [true, true, 'host', 'host']);
  const srflx = p.check('a', 'b', 'server-reflexive');
  assert.deepEqual([srflx.delivered, srflx.answered, srflx.droppedBy], [false, false, 'lan-nat']);
  assert.match(srflx.reason!, /lan-nat does not hairpin/);
  assert.deepEqual(p.pair('a', 'b'), { a: 'a', b: 'b', talk: true, via: { from: 'a', to: 'b', candidate: 'host', path: 'host' } });
});

test('behind a NAT that hairpins both work, and the host pair ranks first, as in ICE', () => {
  const lan = nat('lan-nat', '100.64.1.100', EI, APD, { hairpinning: true });
  const p = predict([
    { name: 'a', address: '10.0.1.1', chain: [lan] },
    { name: 'b', address: '10.0.1.2', chain: [lan] },
  ]);
  const hp = p.check('b', 'a', 'server-reflexive');
  assert.deepEqual([hp.delivered, hp.answered, hp.path], [true, true, 'hairpinned']);
  assert.equal(p.pair('a', 'b').via?.path, 'host');
});

test('nodes behind different NATs: host candidates lead nowhere, server-reflexive ones meet as before', () => {
  const p = predict([
    { name: 'full', address: '10.0.1.1', chain: [nat('fc', '100.64.1.100', EI, EI)] },
    { name: 'prc', address: '10.0.2.1', chain: [nat('prc-nat', '100.64.2.100', EI, APD)] },
    { name: 'sym', address: '10.0.3.1', chain: [nat('sym-nat', '100.64.3.100', APD, APD)] },
    { name: 'server', address: '100.64.9.1', chain: [] },
  ]);
  const host = p.check('full', 'prc', 'host');
  assert.deepEqual([host.delivered, host.answered, host.droppedBy], [false, false, undefined]);
  assert.equal(host.reason, "nothing on full's way routes to 10.0.2.1 (prc's own address, on prc-nat's LAN)");
  assert.equal(p.pair('full', 'prc').via?.path, 'server-reflexive');
  assert.equal(p.pair('prc', 'sym').talk, false, 'a port-restricted cone and a symmetric NAT never meet');
  const sym = p.check('sym', 'prc', 'server-reflexive');
  assert.match(sym.reason!, /prc-nat \(APDF\) drops it/);
  // The symmetric NAT's new port is let in by the full cone, and the answer goes back through the flow it opened.
  const viaCone = p.check('sym', 'full', 'server-reflexive');
  assert.deepEqual([viaCone.answered, viaCone.seenAs, viaCone.path], [true, 'peer-reflexive', 'server-reflexive']);
  // A node on the internet has one candidate: its own address, which is also what the STUN server sees.
  assert.ok(!p.checks.some((c) => c.to === 'server' && c.candidate === 'server-reflexive'));
  const up = p.check('sym', 'server', 'host');
  assert.deepEqual([up.answered, up.seenAs, up.path], [true, 'peer-reflexive', 'peer-reflexive'], 'the server sees sym at a port no STUN server saw');
  assert.equal(p.pair('sym', 'server').via?.path, 'peer-reflexive');
  const cone = p.check('full', 'server', 'host');
  assert.deepEqual(
    [cone.seenAs, cone.path],
    ['server-reflexive', 'server-reflexive'],
    'an endpoint-independent mapping shows the server what the STUN server saw',
  );
});

test('two homes behind a carrier NAT that hairpins meet through its outside address; without hairpinning, not at all', () => {
  const cgn = nat('cgn', '100.64.1.100', EI, AD, { hairpinning: true });
  const homes = (c: ModelNat): ModelNode[] => [
    { name: 'h1', address: '10.0.4.1', chain: [nat('home1', '10.0.3.1', EI, EI), c] },
    { name: 'h2', address: '10.0.5.1', chain: [nat('home2', '10.0.3.2', EI, APD), c] },
  ];
  const p = predict(homes(cgn));
  assert.equal(p.check('h1', 'h2', 'host').reason, "nothing on h1's way routes to 10.0.5.1 (h2's own address, on home2's LAN)");
  assert.deepEqual([p.pair('h1', 'h2').talk, p.pair('h1', 'h2').via?.candidate, p.pair('h1', 'h2').via?.path], [true, 'server-reflexive', 'hairpinned']);
  const first = p.check('h2', 'h1', 'server-reflexive');
  assert.deepEqual([first.delivered, first.answered], [true, true], "h1's full cone lets h2's hairpinned check in whoever starts");
  const none = predict(homes({ ...cgn, hairpinning: false }));
  assert.equal(none.pair('h1', 'h2').talk, false);
  assert.match(none.check('h1', 'h2', 'server-reflexive').reason!, /cgn does not hairpin/);
});

test("a node on the carrier NAT's own LAN and one behind a home NAT on it: the home node reaches the other's own address, and the answer finds its way back", () => {
  const cgs = nat('cgs', '100.64.1.100', APD, APD);
  const p = predict([
    { name: 'up', address: '10.0.1.1', chain: [cgs] },
    { name: 'down', address: '10.0.2.1', chain: [nat('home', '10.0.1.2', EI, APD), cgs] },
  ]);
  const reach = p.check('down', 'up', 'host');
  assert.deepEqual([reach.delivered, reach.answered, reach.seenAs], [true, true, 'peer-reflexive'], "up sees down at the home NAT's address on its own LAN");
  const back = p.check('up', 'down', 'host');
  assert.equal(back.delivered, false, "down's own address is behind the home NAT");
  assert.match(p.check('up', 'down', 'server-reflexive').reason!, /cgs does not hairpin/);
  assert.deepEqual(p.pair('up', 'down'), { a: 'up', b: 'down', talk: true, via: { from: 'down', to: 'up', candidate: 'host', path: 'peer-reflexive' } });
});

test('a check whose outcome depends on who starts is "either", and its reason says so', () => {
  // An address-dependent mapping with endpoint-independent filtering against a port-restricted cone.
  const p = predict([
    { name: 'adm', address: '10.0.1.1', chain: [nat('adm-nat', '100.64.1.100', AD, EI)] },
    { name: 'prc', address: '10.0.2.1', chain: [nat('prc-nat', '100.64.2.100', EI, APD)] },
  ]);
  const c = p.check('adm', 'prc', 'server-reflexive');
  assert.equal(c.timing, true);
  assert.ok(c.delivered === 'either' || c.answered === 'either');
  assert.match(c.reason!, /^depends on whose packet the NATs see first: it gets through when prc sends first, otherwise/);
});

test("ICE's pair priority: host pairs first, then peer-reflexive, then server-reflexive", () => {
  assert.ok(pairPriority('host', 'host') > pairPriority('peer-reflexive', 'host'));
  assert.ok(pairPriority('peer-reflexive', 'host') > pairPriority('server-reflexive', 'host'));
  assert.ok(pairPriority('server-reflexive', 'host') > pairPriority('peer-reflexive', 'server-reflexive'));
  assert.ok(pairPriority('peer-reflexive', 'server-reflexive') > pairPriority('server-reflexive', 'server-reflexive'));
  assert.equal(pathKind('server-reflexive', 'peer-reflexive', true), 'hairpinned');
  assert.equal(pathKind('server-reflexive', 'host', false), 'server-reflexive');
  assert.equal(pathKind('host', 'host', false), 'host');
});
