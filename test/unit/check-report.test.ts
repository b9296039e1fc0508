// What `labctl check` concludes and prints, from hand-made results: the exit code, the
// keepalive advice of --lifetime, and the --pairs grid with what is predicted and what seen.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  explainLifetimes,
  governingLifetime,
  governingOver,
  keepaliveFor,
  kindReport,
  unconfirmedLifetimes,
  unmeasuredLifetimes,
  type KindReport,
  type LifetimeEstimate,
  type LifetimeTargetReport,
} from '../../src/check/lifetime.js';
import { formatPairs, pairCell, type PairNode, type PairsReport } from '../../src/check/pairs.js';
import { predictPunching, type ModelNode } from '../../src/check/punch-model.js';
import { checkExitCode } from '../../src/check/report.js';
import { resolveTargets } from '../../src/check/run.js';

test('exit code: 2 when anything could not be measured, else 1 when anything differs, else 0', () => {
  assert.equal(checkExitCode([]), 0);
  assert.equal(checkExitCode([{ match: true, unmeasured: [] }, { match: undefined }]), 0, 'nothing declared is no difference');
  assert.equal(checkExitCode([{ match: true, unmeasured: [] }, { match: false }]), 1);
  assert.equal(
    checkExitCode([{ match: false, unmeasured: [] }, { unmeasured: ["fc-nat's unreplied lifetime"] }]),
    2,
    'a missing verdict wins over a difference',
  );
  // --lifetime alone, --namespace mode (nothing declared): a lifetime no probe could check is an error.
  assert.equal(checkExitCode([{ unmeasured: ["ns-a-nat's stream lifetime"] }]), 2);
});

const est = (verdict: LifetimeEstimate['verdict'], extra: Partial<LifetimeEstimate> = {}): LifetimeEstimate => ({ verdict, detail: '', ...extra });
const measured = (seconds: number) => est('measured', { seconds, aliveUpTo: seconds - 0.97, goneFrom: seconds + 0.03 });
const longer = (aliveUpTo: number) => est('longer', { aliveUpTo });
const kinds = (unreplied: LifetimeEstimate, stream: LifetimeEstimate): KindReport[] => [
  { kind: 'unreplied', estimate: unreplied, probes: 2 },
  { kind: 'stream', estimate: stream, probes: 2 },
];
const target = (name: string, ks: KindReport[], path = [name]): LifetimeTargetReport => ({ name, probe: { netns: `ns-${name}` }, path, kinds: ks });

test('lifetime: a kind no probe could check is unmeasured (exit 2), not a mismatch (exit 1)', () => {
  const failed = { idle: 0.03, local: 40000, error: 'no answer to the request that creates the mapping' };
  const k = kindReport({ kind: 'unreplied', probes: [failed, failed] }, 10, { unreplied: 3, stream: 6, from: 'declared' });
  assert.equal(k.estimate.verdict, 'unknown');
  assert.equal(k.match, undefined, 'nothing to compare with the declaration');
  assert.match(k.estimate.detail, /no check could be made; 2 probe\(s\) failed \(no answer to the request that creates the mapping\)/);
  const p = (checkedAt: number, alive: boolean) => ({ idle: checkedAt, local: 1, checkedAt, alive });
  const other = kindReport({ kind: 'stream', probes: [p(4.03, true), p(5.03, false)] }, 10, { unreplied: 3, stream: 6, from: 'declared' });
  assert.equal(other.match, false, 'a lifetime measured otherwise than declared still differs');
  const t = target('fc-nat', [k, other]);
  assert.deepEqual(unmeasuredLifetimes([t]), ["fc-nat's unreplied lifetime"]);
  assert.equal(checkExitCode([{ match: false, unmeasured: unmeasuredLifetimes([t]) }]), 2);
  assert.equal(governingLifetime(t.kinds), undefined, 'no keepalive without the unreplied lifetime');
});

test('lifetime: a declared lifetime beyond where the checks stopped is unconfirmed (exit 2), not a mismatch; one outlived is a mismatch', () => {
  const p = (checkedAt: number, alive: boolean) => ({ idle: checkedAt, local: 1, checkedAt, alive });
  // --lifetime-max 40 on a NAT declared 30/120: the stream mapping was still there at 39 s.
  const declared = { unreplied: 30, stream: 120, from: 'declared' as const };
  const stream = kindReport({ kind: 'stream', probes: [p(38.03, true), p(39.03, true)] }, 40, declared);
  assert.equal(stream.estimate.verdict, 'longer');
  assert.equal(stream.match, undefined, 'living 39 s does not contradict 120 s declared');
  const unreplied = kindReport({ kind: 'unreplied', probes: [p(29.03, true), p(30.03, false)] }, 40, declared);
  assert.equal(unreplied.match, true);
  const t = target('c1-nat', [unreplied, stream]);
  assert.deepEqual(unconfirmedLifetimes([t]), ["c1-nat's stream lifetime (declared 120 s)"]);
  assert.deepEqual(unmeasuredLifetimes([t]), []);
  // Declared 30 s but still there at 39 s: it lives longer than declared, a difference.
  const outlived = kindReport({ kind: 'unreplied', probes: [p(38.03, true), p(39.03, true)] }, 40, declared);
  assert.equal(outlived.match, false);
  assert.deepEqual(unconfirmedLifetimes([target('x-nat', [outlived])]), []);
});

test('keepalive: under the shortest lifetime; a lifetime longer than the checks went still bounds it', () => {
  assert.deepEqual(governingLifetime(kinds(measured(30), measured(120))), { seconds: 30, kind: 'unreplied', lowerBound: false });
  // The stream lifetime outlived the cap (--lifetime-max 60), the unreplied one was measured under it: exact.
  assert.deepEqual(governingLifetime(kinds(measured(30), longer(59.03))), { seconds: 30, kind: 'unreplied', lowerBound: false });
  // A cap under the unreplied lifetime: the keepalive rests on the stream's lower bound.
  const bound = governingLifetime(kinds(measured(30), longer(19.03)))!;
  assert.deepEqual(bound, { seconds: 19.03, kind: 'stream', lowerBound: true });
  assert.equal(keepaliveFor(bound.seconds), 15);
  assert.equal(governingLifetime(kinds(measured(20), longer(20.03)))!.lowerBound, false, 'a bound at the measured lifetime is longer than it');
  assert.equal(governingLifetime(kinds(measured(30), est('unknown'))), undefined);
  assert.equal(governingLifetime(kinds(measured(30), est('inconsistent'))), undefined, 'checks that disagree say nothing about the shortest');

  const a = target('a-nat', kinds(measured(30), longer(59.03)));
  const b = target('b-nat', kinds(measured(20), measured(40)), ['b-nat', 'cgn-nat']);
  assert.equal(governingOver([a, b])!.target, b);
  const text = explainLifetimes([a, b]).join('\n');
  assert.match(
    text,
    /The shortest lifetime measured is 20 s \(unreplied, b-nat through b-nat and cgn-nat\): a keepalive every 16 s keeps every mapping \(e\.g\. WireGuard PersistentKeepalive = 16\)\./,
  );
  assert.match(text, /Lifetimes only known to be longer than the checks went are longer than that one too: they do not change it\./);
  const capped = explainLifetimes([target('a-nat', kinds(measured(30), longer(19.03)))]).join('\n');
  assert.match(
    capped,
    /The shortest lifetime is only known to be longer than 19 s \(stream, a-nat: the mapping outlived every check; see --lifetime-max\), and none measured is shorter: a keepalive every 15 s keeps every mapping, if perhaps more often than needed \(e\.g\. WireGuard PersistentKeepalive = 15\)\./,
  );
  assert.match(explainLifetimes([a, target('c-nat', kinds(est('unknown'), measured(40)))]).at(-1)!, /^No keepalive can be recommended/);
});

const SERVER = { netns: 'ns-inet', addresses: ['203.0.113.1', '203.0.113.2'], ports: [3478, 3479] as [number, number], portPairs: 3, external: false };
const ep = (address: string, port: number) => ({ address, port });

test("--pairs cells: a node that learned no endpoint keeps that reason; the model's reasons are marked predicted", () => {
  const model: ModelNode[] = [
    {
      name: 'full',
      address: '10.0.1.1',
      chain: [{ name: 'fc', address: '100.64.1.100', mapping: 'endpoint-independent', filtering: 'endpoint-independent', hairpinning: false }],
    },
    {
      name: 'sym',
      address: '10.0.3.1',
      chain: [{ name: 'sym-nat', address: '100.64.3.100', mapping: 'address-and-port-dependent', filtering: 'address-and-port-dependent', hairpinning: false }],
    },
  ];
  const p = predictPunching(model);
  const pred = (from: string, to: string) => ({ p: p.find((x) => x.from === from && x.to === to)!, model, kind: 'declared' as const });
  const full: PairNode = { name: 'full', netns: 'ns-full', learned: ep('100.64.1.100', 40000) };
  const sym: PairNode = { name: 'sym', netns: 'ns-sym', learned: ep('100.64.3.100', 50000) };
  const lost: PairNode = { name: 'sym', netns: 'ns-sym' };
  const notTried = pairCell(full, lost, undefined, 40001, pred('full', 'sym'));
  assert.deepEqual(
    notTried,
    { from: 'full', to: 'sym', delivered: false, why: 'sym learned no endpoint from the STUN server', basis: 'observed' },
    'not overwritten by the model, nothing compared',
  );
  const dropped = pairCell(full, sym, undefined, 40001, pred('full', 'sym'));
  assert.deepEqual([dropped.delivered, dropped.predicted, dropped.match, dropped.basis], [false, false, true, 'predicted']);
  assert.match(dropped.why!, /sym-nat \(APDF\) drops it/);
  const surprise = pairCell(full, sym, { peer: 'full', from: ep('100.64.1.100', 40000), port: 40001 }, 40001, pred('full', 'sym'));
  assert.deepEqual([surprise.delivered, surprise.match, surprise.basis], [true, false, 'observed']);
  assert.match(surprise.why!, /^the NATs' declared behaviour says it should not arrive \(.*\), but it did$/);
  const stray = pairCell(sym, full, { peer: 'sym', from: ep('100.64.3.100', 50001), port: 40002 }, 40001, pred('sym', 'full'));
  assert.deepEqual([stray.delivered, stray.why, stray.basis], [false, 'arrived at inside port 40002, not the punching socket', 'observed']);
});

test('--pairs text: the grid, timing-dependent directions, predicted reasons labelled, nodes not tried', () => {
  const r: PairsReport = {
    lab: 't',
    server: SERVER,
    nodes: [
      { name: 'a', netns: 'ns-a', learned: ep('100.64.1.100', 1024) },
      { name: 'b', netns: 'ns-b', learned: ep('100.64.2.100', 2048), localPort: 12345 },
      { name: 'c', netns: 'ns-c' },
    ],
    cells: [
      { from: 'b', to: 'a', delivered: true, predicted: true, match: true },
      { from: 'c', to: 'a', delivered: false, why: 'c learned no endpoint from the STUN server', basis: 'observed' },
      {
        from: 'a',
        to: 'b',
        delivered: false,
        predicted: 'either',
        match: true,
        why: 'depends on whose packet the NATs see first: it arrives when b sends first, otherwise b-nat (APDF) drops it',
        basis: 'predicted',
      },
      { from: 'c', to: 'b', delivered: false, why: 'c learned no endpoint from the STUN server', basis: 'observed' },
      { from: 'a', to: 'c', delivered: false, why: 'c learned no endpoint from the STUN server', basis: 'observed' },
      { from: 'b', to: 'c', delivered: false, why: 'c learned no endpoint from the STUN server', basis: 'observed' },
    ],
    direct: [
      { a: 'a', b: 'b', both: false },
      { a: 'a', b: 'c', both: false },
      { a: 'b', b: 'c', both: false },
    ],
    model: 'declared',
    match: true,
    unmeasured: ['c'],
  };
  const text = formatPairs(r);
  assert.ok(
    text.includes(
      [
        'who hears whom (row sends, column receives; "?" = timing-dependent: either outcome matches, "!" = not what the NATs\' behaviour predicts):',
        '  from \\ to  a    b    c',
        '  a          -    no?  no',
        '  b          yes  -    no',
        '  c          no   no   -',
        '',
        'talk directly both ways: no pair',
        'why ("predicted": from the model of the NATs\' declared behaviour, not observed):',
        '  a -> b: timing-dependent, either outcome matches (did not arrive); predicted: depends on whose packet the NATs see first: it arrives when b sends first, otherwise b-nat (APDF) drops it',
        'not tried, to or from c: learned no endpoint from the STUN server',
        '',
      ].join('\n'),
    ),
    text,
  );
  assert.match(text, /^ {2}b {5}100\.64\.2\.100:2048 \(inside port 12345\)$/m);
  // A mismatch is what was seen against the model, and counted.
  const wrong = formatPairs({
    ...r,
    nodes: r.nodes.slice(0, 2),
    cells: [
      { from: 'a', to: 'b', delivered: true, predicted: true, match: true },
      {
        from: 'b',
        to: 'a',
        delivered: false,
        predicted: true,
        match: false,
        why: "the NATs' declared behaviour says it should arrive, but it did not",
        basis: 'observed',
      },
    ],
    direct: [{ a: 'a', b: 'b', both: false }],
    unmeasured: [],
    match: false,
  });
  assert.match(wrong, /^ {2}b {10}no! {2}-$/m);
  assert.match(
    wrong,
    /^why:\n {2}b -> a: the NATs' declared behaviour says it should arrive, but it did not\n1 direction\(s\) behaved otherwise than predicted\n$/m,
  );
});

test('--nat with --namespace is an error, not silently ignored', async () => {
  await assert.rejects(resolveTargets({ namespaces: ['ns-x'], nat: 'x-nat' }), { name: 'UsageError', message: /--nat goes with a lab file/ });
});
