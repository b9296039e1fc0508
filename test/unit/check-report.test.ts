// What `labctl check` concludes and prints, from hand-made results: the exit code, the
// keepalive advice of --lifetime, and the --pairs checks with what is predicted and what seen.
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
import {
  type Candidate,
  type CheckCell,
  checkCell,
  directionCells,
  formatPairs,
  gatherCandidates,
  pairLinks,
  type PairNode,
  type PairsReport,
} from '../../src/check/pairs.js';
import { predictChecks, type ModelNode } from '../../src/check/punch-model.js';
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

test("--pairs checks: a node that learned no endpoint keeps that reason; the model's reasons are marked predicted", () => {
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
  const p = predictChecks(model).checks;
  const pred = (from: string, to: string, kind: 'host' | 'server-reflexive') => ({
    p: p.find((x) => x.from === from && x.to === to && x.candidate === kind)!,
    model,
    kind: 'declared' as const,
  });
  const candidates = (host: string, port: number, srflx: [string, number]): Candidate[] => [
    { kind: 'host', endpoint: ep(host, port) },
    { kind: 'server-reflexive', endpoint: ep(...srflx) },
  ];
  const full: PairNode = {
    name: 'full',
    netns: 'ns-full',
    learned: ep('100.64.1.100', 40000),
    candidates: candidates('10.0.1.1', 40000, ['100.64.1.100', 40000]),
  };
  const sym: PairNode = {
    name: 'sym',
    netns: 'ns-sym',
    learned: ep('100.64.3.100', 50000),
    candidates: candidates('10.0.3.1', 40001, ['100.64.3.100', 50000]),
  };
  const lost: PairNode = { name: 'sym', netns: 'ns-sym', candidates: [{ kind: 'host', endpoint: ep('10.0.3.1', 40001) }] };
  const nothing = { answers: [], receiverPort: 40001, senderPort: 40000 };
  const notTried = checkCell(full, lost, 'host', nothing, pred('full', 'sym', 'host'));
  assert.deepEqual(
    notTried,
    {
      from: 'full',
      to: 'sym',
      candidate: 'host',
      endpoints: [ep('10.0.3.1', 40001)],
      delivered: false,
      answered: false,
      why: 'sym learned no endpoint from the STUN server',
      basis: 'observed',
    },
    'not overwritten by the model, nothing compared',
  );
  const dropped = checkCell(full, sym, 'server-reflexive', nothing, pred('full', 'sym', 'server-reflexive'));
  assert.deepEqual([dropped.delivered, dropped.predicted, dropped.match, dropped.basis], [false, { delivered: false, answered: false }, true, 'predicted']);
  assert.match(dropped.why!, /sym-nat \(APDF\) drops it/);
  const unroutable = checkCell(full, sym, 'host', nothing, pred('full', 'sym', 'host'));
  assert.equal(unroutable.why, "nothing on full's way routes to 10.0.3.1 (sym's own address, on sym-nat's LAN)");
  const arrival = { peer: 'full', kind: 'server-reflexive' as const, from: ep('100.64.1.100', 40000), port: 40001 };
  const surprise = checkCell(full, sym, 'server-reflexive', { ...nothing, arrival }, pred('full', 'sym', 'server-reflexive'));
  assert.deepEqual(
    [surprise.delivered, surprise.seenAs, surprise.path, surprise.match, surprise.basis],
    [true, 'server-reflexive', 'server-reflexive', false, 'observed'],
  );
  assert.match(surprise.why!, /^the NATs' declared behaviour says it should not arrive \(.*\), but it arrived but its answer did not come back$/);
  // An answer counts only from the endpoint the check went to, at the sender's socket (RFC 8445 7.2.5.2.1).
  const answered = (from: [string, number], port: number) =>
    checkCell(
      sym,
      full,
      'server-reflexive',
      {
        answers: [{ peer: 'full', kind: 'server-reflexive', from: ep(...from), port }],
        receiverPort: 40000,
        senderPort: 40001,
        arrival: { peer: 'sym', kind: 'server-reflexive', from: ep('100.64.3.100', 50001), port: 40000 },
      },
      pred('sym', 'full', 'server-reflexive'),
    );
  const ok = answered(['100.64.1.100', 40000], 40001);
  assert.deepEqual([ok.delivered, ok.answered, ok.seenAs, ok.match, ok.why], [true, true, 'peer-reflexive', true, undefined]);
  assert.equal(answered(['100.64.1.100', 40002], 40001).answered, false, 'from another port: not the endpoint it went to');
  assert.equal(answered(['100.64.1.100', 40000], 40009).answered, false, 'at another socket');
  const stray = checkCell(
    sym,
    full,
    'host',
    { ...nothing, receiverPort: 40000, arrival: { peer: 'sym', kind: 'host', from: ep('100.64.3.100', 50001), port: 40002 } },
    pred('sym', 'full', 'host'),
  );
  assert.deepEqual([stray.delivered, stray.why, stray.basis], [false, 'arrived at inside port 40002, not the punching socket', 'observed']);
  // Candidates as ICE gathers them: a node whose STUN-seen endpoint is its own address has only its host candidate.
  assert.deepEqual(gatherCandidates({ local: 4000, mapped: ep('100.64.9.1', 4000), hosts: ['100.64.9.1'] }), [
    { kind: 'host', endpoint: ep('100.64.9.1', 4000) },
  ]);
  assert.deepEqual(
    gatherCandidates({ local: 4000, mapped: ep('100.64.1.100', 4000), hosts: ['10.0.1.1'] }).map((c) => c.kind),
    ['host', 'server-reflexive'],
  );
});

test('--pairs text: the grid, the candidate pair of each pair, timing-dependent checks, predicted reasons labelled, nodes not tried', () => {
  const hostOf = (address: string, port: number): Candidate => ({ kind: 'host', endpoint: ep(address, port) });
  const srflx = (address: string, port: number): Candidate => ({ kind: 'server-reflexive', endpoint: ep(address, port) });
  const nodes: PairNode[] = [
    { name: 'a', netns: 'ns-a', learned: ep('100.64.1.100', 1024), candidates: [hostOf('10.0.1.1', 1024), srflx('100.64.1.100', 1024)] },
    { name: 'b', netns: 'ns-b', learned: ep('100.64.1.100', 2048), localPort: 12345, candidates: [hostOf('10.0.1.2', 12345), srflx('100.64.1.100', 2048)] },
    { name: 'c', netns: 'ns-c', candidates: [hostOf('10.0.3.1', 3000)] },
  ];
  const cell = (from: string, to: string, candidate: 'host' | 'server-reflexive', extra: Partial<CheckCell>): CheckCell => ({
    from,
    to,
    candidate,
    endpoints: nodes
      .find((n) => n.name === to)!
      .candidates!.filter((c) => c.kind === candidate)
      .map((c) => c.endpoint),
    delivered: false,
    answered: false,
    ...extra,
  });
  const noC = { why: 'c learned no endpoint from the STUN server', basis: 'observed' as const };
  const checks: CheckCell[] = [
    cell('a', 'b', 'host', { delivered: true, answered: true, seenAs: 'host', path: 'host', predicted: { delivered: true, answered: true }, match: true }),
    cell('b', 'a', 'host', { delivered: true, answered: true, seenAs: 'host', path: 'host', predicted: { delivered: true, answered: true }, match: true }),
    cell('a', 'b', 'server-reflexive', {
      predicted: { delivered: 'either', answered: 'either' },
      match: true,
      why: 'depends on whose packet the NATs see first: it gets through when b sends first, otherwise lan-nat does not hairpin (the peer sits behind it too)',
      basis: 'predicted',
    }),
    cell('b', 'a', 'server-reflexive', {
      predicted: { delivered: false, answered: false },
      match: true,
      why: 'lan-nat does not hairpin (the peer sits behind it too)',
      basis: 'predicted',
    }),
    cell('c', 'a', 'host', noC),
    cell('a', 'c', 'host', noC),
    cell('c', 'b', 'host', noC),
    cell('b', 'c', 'host', noC),
  ];
  const r: PairsReport = {
    lab: 't',
    server: SERVER,
    nodes,
    checks,
    cells: directionCells(nodes, checks),
    direct: pairLinks(nodes, checks, [
      { a: 'a', b: 'b', talk: true, via: { from: 'a', to: 'b', candidate: 'host', path: 'host' } },
      { a: 'a', b: 'c', talk: false },
      { a: 'b', b: 'c', talk: false },
    ]),
    model: 'declared',
    match: true,
    unmeasured: ['c'],
  };
  assert.deepEqual(r.direct[0], {
    a: 'a',
    b: 'b',
    both: true,
    via: { from: 'a', to: 'b', candidate: 'host', path: 'host' },
    predicted: true,
    predictedVia: 'host',
    match: true,
  });
  assert.deepEqual(r.direct[1], { a: 'a', b: 'c', both: false }, 'c was not tried: nothing to compare');
  const text = formatPairs(r);
  assert.ok(
    text.includes(
      [
        '  node  host            server-reflexive',
        '  a     10.0.1.1:1024   100.64.1.100:1024',
        '  b     10.0.1.2:12345  100.64.1.100:2048 (inside port 12345)',
        '  c     10.0.3.1:3000   -',
        '',
        'who hears whom (row sends, column receives, on any candidate; "?" = timing-dependent: either outcome matches, "!" = not what the NATs\' behaviour predicts):',
        '  from \\ to  a    b    c',
        '  a          -    yes  no',
        '  b          yes  -    no',
        '  c          no   no   -',
        '',
        'which candidate pair works (the succeeded check ICE ranks first; "!" = not what the NATs\' behaviour predicts):',
        '  pair     path  check',
        "  a <-> b  host  a -> b's host 10.0.1.2:12345, answered",
        '  a <-> c  none  none succeeded',
        '  b <-> c  none  none succeeded',
        '',
        'talk directly: a <-> b (host)',
        'why ("predicted": from the model of the NATs\' declared behaviour, not observed):',
        "  a -> b's server-reflexive 100.64.1.100:2048: timing-dependent, either outcome matches (did not arrive); predicted: depends on whose packet the NATs see first: it gets through when b sends first, otherwise lan-nat does not hairpin (the peer sits behind it too)",
        'not tried, to or from c: learned no endpoint from the STUN server',
        '',
      ].join('\n'),
    ),
    text,
  );
  // A mismatch is what was seen against the model, and counted.
  const wrongChecks = [
    checks[0]!,
    {
      ...checks[1]!,
      delivered: false,
      answered: false,
      match: false,
      why: "the NATs' declared behaviour says it should arrive and be answered, but it did not arrive",
      basis: 'observed' as const,
    },
  ];
  const two = nodes.slice(0, 2);
  const wrong = formatPairs({
    ...r,
    nodes: two,
    checks: wrongChecks,
    cells: directionCells(two, wrongChecks),
    direct: pairLinks(two, wrongChecks, undefined),
    unmeasured: [],
    match: false,
  });
  assert.match(wrong, /^ {2}b {10}no! {2}-$/m);
  assert.match(
    wrong,
    /^why:\n {2}b -> a's host 10\.0\.1\.1:1024: the NATs' declared behaviour says it should arrive and be answered, but it did not arrive\n1 check\(s\) or pair\(s\) behaved otherwise than predicted\n$/m,
  );
});

test('--nat with --namespace is an error, not silently ignored', async () => {
  await assert.rejects(resolveTargets({ namespaces: ['ns-x'], nat: 'x-nat' }), { name: 'UsageError', message: /--nat goes with a lab file/ });
});
