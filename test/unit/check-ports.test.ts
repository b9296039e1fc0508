// How `labctl check` and `labctl probe` read outside ports and addresses (src/check/ports.ts),
// and what a lab declares for them seen from one node (composeDeclared): port allocation
// (kept, fixed, sequential by the order ports were handed out, random), pooling, port blocks
// and the flow limit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { labTargets } from '../../src/check/declared.js';
import {
  allocationMatches,
  classifyAllocation,
  classifyBlock,
  classifyPooling,
  describeAllocation,
  describeQuota,
  measuredLimit,
  type QuotaResult,
} from '../../src/check/ports.js';
import { parseLab } from '../../src/lab/resolve.js';

const s = (local: number, mapped: number) => ({ local, mapped });

test('port allocation: kept, one port for all, sequential with its step, random, or too few to tell', () => {
  assert.deepEqual(classifyAllocation([s(40000, 40000), s(41000, 41000)], [40000, 41000]).value, { kind: 'preserved' });
  assert.deepEqual(classifyAllocation([s(40000, 54321), s(41000, 54321)], [54321]).value, { kind: 'fixed', port: 54321 });
  const seq = classifyAllocation([s(40000, 1025), s(41000, 1030)], [1025, 1026, 1027, 1028, 1030, 1031, 1032, 1033]);
  assert.deepEqual(seq.value, { kind: 'sequential', delta: 1 });
  assert.match(seq.detail, /mostly \+1/);
  assert.deepEqual(classifyAllocation([s(40000, 2000), s(41000, 2002)], [2000, 2002, 2004]).value, { kind: 'sequential', delta: 2 });
  assert.deepEqual(classifyAllocation([s(40000, 1030), s(41000, 61000)], [1030, 22000, 61000, 45000]).value, { kind: 'random' });
  assert.deepEqual(classifyAllocation([s(40000, 1030)], [1030, 1031]).value, { kind: 'unknown' }, 'two ports cannot tell');
  assert.deepEqual(classifyAllocation([], []).value, { kind: 'unknown' });
});

test('random ports from a small block lie close together but do not climb: random, not sequential', () => {
  // gcp-cloud-nat's 64-port block: every step is under 16 once sorted, the order tells.
  const block = [1071, 1030, 1062, 1027, 1049, 1080, 1033, 1058, 1041];
  assert.deepEqual(classifyAllocation([s(40000, 1071)], block).value, { kind: 'random' });
  // Another target's flows on the same counter in between: steps of 1 and 2, still sequential.
  assert.deepEqual(classifyAllocation([s(40000, 30000)], [30000, 30002, 30003, 30005, 30006, 30008, 30009]).value, { kind: 'sequential', delta: 1 });
  // One step back (the counter wrapped, or a late answer) among climbing ones: still sequential.
  assert.equal(classifyAllocation([s(40000, 30000)], [30000, 30001, 30002, 20000, 20001, 20002, 20003]).value.kind, 'sequential');
});

test('declared allocations match measured ones by kind, and a fixed port by number when declared', () => {
  assert.equal(allocationMatches({ kind: 'sequential' }, { kind: 'sequential', delta: 1 }), true);
  assert.equal(allocationMatches({ kind: 'random' }, { kind: 'sequential', delta: 1 }), false);
  assert.equal(allocationMatches({ kind: 'fixed', port: 54321 }, { kind: 'fixed', port: 54321 }), true);
  assert.equal(allocationMatches({ kind: 'fixed', port: 54321 }, { kind: 'fixed', port: 1000 }), false);
  assert.equal(allocationMatches({ kind: 'fixed' }, { kind: 'fixed', port: 1000 }), true);
  assert.equal(allocationMatches({ kind: 'preserved' }, { kind: 'unknown' }), false);
  assert.deepEqual([describeAllocation({ kind: 'sequential', delta: 2 }), describeAllocation({ kind: 'fixed' })], ['sequential (+2)', 'fixed']);
});

test('pooling: flows to both server addresses from one outside address are paired; several addresses, arbitrary', () => {
  const paired = classifyPooling([
    { to: 'A1', outside: '100.64.1.100' },
    { to: 'A2', outside: '100.64.1.100' },
  ]);
  assert.deepEqual([paired.value, paired.addresses], ['paired', ['100.64.1.100']]);
  assert.equal(
    classifyPooling([
      { to: 'A1', outside: '198.51.100.7' },
      { to: 'A2', outside: '198.51.100.9' },
    ]).value,
    'arbitrary',
  );
  assert.equal(classifyPooling([{ to: 'A1', outside: '198.51.100.7' }]).value, 'unknown', 'flows to one server address cannot tell');
});

test('port block: every outside endpoint within a declared block on its address, or which were not', () => {
  const blocks = [{ outside: '100.64.1.101', ports: { low: 1088, high: 1151 } }];
  const inside = classifyBlock(
    [
      { address: '100.64.1.101', port: 1090 },
      { address: '100.64.1.101', port: 1151 },
      { address: '100.64.1.101', port: 1090 },
    ],
    blocks,
  );
  assert.deepEqual([inside.measured, inside.match], ['all 2 within', true]);
  const wrongAddress = classifyBlock([{ address: '100.64.1.100', port: 1090 }], blocks);
  assert.equal(wrongAddress.match, false);
  const outside = classifyBlock(
    [
      { address: '100.64.1.101', port: 1090 },
      { address: '100.64.1.101', port: 1152 },
    ],
    blocks,
  );
  assert.deepEqual([outside.measured, outside.match], ['1 of 2 outside', false]);
  assert.match(outside.detail, /100\.64\.1\.101:1152/);
  assert.equal(classifyBlock([{ address: '100.64.1.101', port: 1090 }], undefined).match, undefined);
});

test('quota: the flows answered before the first refusal; none refused up to the cap is no limit', () => {
  const r = (answered: number, refused: number, cap = 100): QuotaResult => ({
    answered,
    refused,
    lostThenAnswered: 0,
    reachedCap: refused === 0,
    cap,
    earlier: { tried: 3, answered: 3 },
  });
  assert.equal(measuredLimit(r(5, 3)), 5);
  assert.equal(describeQuota(r(5, 3)), '5 flows');
  assert.equal(measuredLimit(r(100, 0)), undefined);
  assert.equal(describeQuota(r(100, 0)), 'none up to 100');
});

const lab = (sites: string) => parseLab(`name: t\nsites:\n${sites}`, 't.yaml');
const declaredOf = (l: ReturnType<typeof lab>, nat: string) => labTargets(l, nat)[0]!.declared!;

test('declared allocation: each profile and allocation, composed through a carrier NAT', () => {
  const l = lab(
    [
      '  - { name: pre, nat: { type: full-cone }, nodes: [{ name: pre-n }] }',
      '  - { name: seq, nat: { type: symmetric, port-allocation: sequential }, nodes: [{ name: seq-n }] }',
      '  - { name: rnd, nat: { profile: aws-nat-gateway }, nodes: [{ name: rnd-n }] }',
      '  - { name: nar, nat: { type: full-cone, ports: 1024-2047 }, nodes: [{ name: nar-n }] }',
      '  - { name: cgn, nat: { type: full-cone, port-allocation: sequential } }',
      '  - { name: home, upstream: cgn, nat: { type: full-cone }, nodes: [{ name: home-n }] }',
      '  - { name: fx, nat: { type: full-cone, fixed-port: 54321 }, nodes: [{ name: fx-n }] }',
    ].join('\n'),
  );
  assert.deepEqual(declaredOf(l, 'pre-nat').port, { kind: 'preserved' });
  assert.deepEqual(declaredOf(l, 'seq-nat').port, { kind: 'sequential' });
  assert.deepEqual(declaredOf(l, 'rnd-nat').port, { kind: 'random' });
  assert.deepEqual(declaredOf(l, 'nar-nat').port, { kind: 'random' }, 'inside ports (32768-60999) are not in 1024-2047: the kernel picks');
  assert.deepEqual(declaredOf(l, 'home-nat').port, { kind: 'sequential' }, "the carrier NAT's counter gives the ports seen outside");
  assert.deepEqual(declaredOf(l, 'fx-nat').port, { kind: 'fixed', port: 54321 });
});

test('declared pooling, blocks and limit, from the addresses the lab deals to the probing node', () => {
  const l = lab(
    [
      '  - { name: one, nat: { type: full-cone }, nodes: [{ name: one-n }] }',
      '  - { name: pool, nat: { type: full-cone, outside: 2 }, nodes: [{ name: pa1 }, { name: pa2 }] }',
      '  - { name: arb, nat: { type: symmetric, outside: 3, pooling: arbitrary }, nodes: [{ name: arb-n }] }',
      '  - { name: blk, nat: { profile: gcp-cloud-nat }, nodes: [{ name: blk-n }] }',
      '  - { name: quo, nat: { type: full-cone, quota: 5 }, nodes: [{ name: quo-n }] }',
      '  - { name: cgn, nat: { profile: cgnat-port-blocks } }',
      '  - { name: home, upstream: cgn, nat: { type: full-cone, quota: 2000 }, nodes: [{ name: home-n }] }',
    ].join('\n'),
  );
  const one = declaredOf(l, 'one-nat');
  assert.deepEqual(one.pooling, { value: 'paired', addresses: [l.nats.find((n) => n.name === 'one-nat')!.outside.address], shown: false });
  assert.equal(one.blocks, undefined);
  assert.equal(one.limit, undefined);
  const pool = l.nats.find((n) => n.name === 'pool-nat')!;
  const pa1 = l.nodes.find((n) => n.name === 'pa1')!;
  const dealt = pool.behaviour.assignments.find((a) => a.inside === pa1.link.address)!.outside;
  assert.deepEqual(declaredOf(l, 'pool-nat').pooling, { value: 'paired', addresses: [dealt], shown: true });
  const arb = declaredOf(l, 'arb-nat').pooling!;
  assert.deepEqual([arb.value, arb.addresses.length], ['arbitrary', 3]);
  const blk = declaredOf(l, 'blk-nat');
  assert.equal(blk.blocks?.length, 1);
  assert.equal(blk.blocks![0]!.ports.high - blk.blocks![0]!.ports.low + 1, 64);
  assert.deepEqual(blk.limit, { flows: 64, why: "blk-nat's port blocks (1 x 64 ports)" });
  assert.deepEqual(declaredOf(l, 'quo-nat').limit, { flows: 5, why: "quo-nat's quota" });
  // Behind the carrier NAT: its blocks (8 x 128 = 1024) for the home NAT's outside address, the smaller limit.
  const home = declaredOf(l, 'home-nat');
  const cgn = l.nats.find((n) => n.name === 'cgn-nat')!;
  const homeOut = l.nats.find((n) => n.name === 'home-nat')!.outside.address;
  assert.deepEqual(home.blocks, [
    {
      outside: cgn.behaviour.assignments.find((a) => a.inside === homeOut)!.outside,
      ports: cgn.behaviour.assignments.find((a) => a.inside === homeOut)!.ports!,
    },
  ]);
  assert.deepEqual(home.limit, { flows: 1024, why: "cgn-nat's port blocks (8 x 128 ports); new flows may be refused from about 90% full on", atLeast: 921 });
  assert.equal(home.pooling?.shown, true);
});
