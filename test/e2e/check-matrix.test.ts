// `labctl check` measures what each NAT declares: the four classic types, the nine RFC 4787
// mapping/filtering pairs, hairpinning, the article's fixed-port NATs with their forwards,
// and NATs behind a carrier-grade NAT (seen from the internet through both). One lab holds a
// site per behaviour. Then the same lab checked against a file where one NAT is declared
// otherwise (names and addresses identical) exits 1 and shows the difference.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { isRoot, labctl, labctlOk, netnsList } from '../support/cli.js';
import { check, leftovers } from '../fixtures/check/support.js';

const skip = isRoot ? false : 'needs root';
type Dep = 'endpoint-independent' | 'address-dependent' | 'address-and-port-dependent';
const DEPS: Dep[] = ['endpoint-independent', 'address-dependent', 'address-and-port-dependent'];
const SHORT: Record<Dep, string> = { 'endpoint-independent': 'ei', 'address-dependent': 'ad', 'address-and-port-dependent': 'apd' };
const CLASSIC: [string, Dep, Dep][] = [
  ['full-cone', 'endpoint-independent', 'endpoint-independent'],
  ['restricted-cone', 'endpoint-independent', 'address-dependent'],
  ['port-restricted-cone', 'endpoint-independent', 'address-and-port-dependent'],
  ['symmetric', 'address-and-port-dependent', 'address-and-port-dependent'],
];

interface Expect {
  nat: string;
  mapping: Dep;
  filtering: Dep;
  hairpinning: boolean;
  port: string;
}

const PREFIX = 'ckm-';
const sites: Record<string, unknown>[] = [];
const expected: Expect[] = [];
CLASSIC.forEach(([type, mapping, filtering], i) => {
  sites.push({ name: `k${i}`, nat: { type }, nodes: [{ name: `k${i}-n` }] });
  expected.push({ nat: `k${i}-nat`, mapping, filtering, hairpinning: false, port: mapping === 'endpoint-independent' ? 'preserved' : 'random' });
});
for (const mapping of DEPS) {
  for (const filtering of DEPS) {
    const site = `${SHORT[mapping]}m-${SHORT[filtering]}f`;
    sites.push({ name: site, nat: { mapping, filtering }, nodes: [{ name: `${site}-n` }] });
    expected.push({ nat: `${site}-nat`, mapping, filtering, hairpinning: false, port: mapping === 'endpoint-independent' ? 'preserved' : 'random' });
  }
}
sites.push({ name: 'hp', nat: { type: 'full-cone', hairpinning: true }, nodes: [{ name: 'hp-n' }] });
expected.push({ nat: 'hp-nat', mapping: 'endpoint-independent', filtering: 'endpoint-independent', hairpinning: true, port: 'preserved' });
// The article's NATs: every flow leaves from 54321, which is forwarded to the node's 12345.
for (const [site, type, filtering] of [
  ['fx', 'full-cone', 'endpoint-independent'],
  ['fxr', 'restricted-cone', 'address-dependent'],
] as const) {
  sites.push({
    name: site,
    nat: { type, 'fixed-port': 54321, forwards: [{ protocol: 'udp', port: 54321, to: `${site}-n`, 'to-port': 12345 }] },
    nodes: [{ name: `${site}-n` }],
  });
  expected.push({ nat: `${site}-nat`, mapping: 'endpoint-independent', filtering, hairpinning: false, port: 'fixed 54321' });
}
// A home NAT (full cone) behind a carrier-grade restricted cone that hairpins and has no
// node of its own (so it is probed through the home NAT's node).
sites.push({ name: 'cgn', nat: { type: 'restricted-cone', hairpinning: true } });
sites.push({ name: 'home', upstream: 'cgn', nat: { type: 'full-cone' }, nodes: [{ name: 'home-n' }] });
expected.push({ nat: 'cgn-nat', mapping: 'endpoint-independent', filtering: 'address-dependent', hairpinning: true, port: 'preserved' });
expected.push({ nat: 'home-nat', mapping: 'endpoint-independent', filtering: 'address-dependent', hairpinning: true, port: 'preserved' });
// A symmetric carrier NAT with a node of its own and a port-restricted home NAT behind it.
sites.push({ name: 'cgs', nat: { type: 'symmetric' }, nodes: [{ name: 'cgs-n' }] });
sites.push({ name: 'homes', upstream: 'cgs', nat: { type: 'port-restricted-cone' }, nodes: [{ name: 'homes-n' }] });
expected.push({ nat: 'cgs-nat', mapping: 'address-and-port-dependent', filtering: 'address-and-port-dependent', hairpinning: false, port: 'random' });
expected.push({ nat: 'homes-nat', mapping: 'address-and-port-dependent', filtering: 'address-and-port-dependent', hairpinning: false, port: 'random' });

const lab = { name: 'check-matrix', prefix: PREFIX, sites, nodes: [{ name: 'srv' }] };
const dir = mkdtempSync(join(tmpdir(), 'labctl-check-matrix-'));
const fileA = join(dir, 'matrix.yaml');
const fileB = join(dir, 'matrix-misdeclared.yaml');
const fileDown = join(dir, 'not-up.yaml');
const INET = `ns-${PREFIX}inet`;
const ours = () => netnsList().filter((n) => n.startsWith(`ns-${PREFIX}`));

interface Report {
  match: boolean;
  exitCode: number;
  targets: {
    name: string;
    match: boolean;
    measured: { mapping: string; filtering: string; hairpinning: unknown; port: unknown };
    rows: { test: string; declared?: string; measured: string; match?: boolean; evidence: string }[];
  }[];
}

before(async () => {
  if (!isRoot) return;
  writeFileSync(fileA, stringify(lab));
  // B: k1 is really a restricted cone (address-dependent filtering) but B says port-restricted.
  const b = structuredClone(lab);
  (b.sites[1] as { nat: { type: string } }).nat.type = 'port-restricted-cone';
  writeFileSync(fileB, stringify(b));
  writeFileSync(fileDown, stringify({ name: 'check-not-up', prefix: 'ckn-', sites: [{ name: 'a', nat: { type: 'full-cone' }, nodes: [{ name: 'a-n' }] }] }));
  await labctlOk(['net', 'up', fileA]);
});

after(async () => {
  if (!isRoot) return;
  await labctl(['net', 'down', fileA]);
  assert.deepEqual(ours(), [], 'no namespace of the check matrix lab is left');
  rmSync(dir, { recursive: true, force: true });
});

test('every NAT of the matrix measures as declared (exit 0)', { skip }, async () => {
  const t0 = Date.now();
  const r = await check([fileA, '--json']);
  const took = Date.now() - t0;
  assert.equal(r.exitCode, 0, `exit 0 expected\n${r.stdout.slice(0, 4000)}\n${r.stderr}`);
  const report = JSON.parse(r.stdout) as Report;
  assert.equal(report.match, true);
  assert.equal(report.targets.length, expected.length, 'one target per NAT');
  for (const e of expected) {
    const t = report.targets.find((x) => x.name === e.nat);
    assert.ok(t, `${e.nat} was checked`);
    const why = JSON.stringify(t.rows, null, 1);
    assert.equal(t.measured.mapping, e.mapping, `${e.nat} mapping\n${why}`);
    assert.equal(t.measured.filtering, e.filtering, `${e.nat} filtering\n${why}`);
    assert.equal(t.measured.hairpinning, e.hairpinning, `${e.nat} hairpinning\n${why}`);
    assert.equal(t.rows.find((x) => x.test === 'port allocation')?.measured, e.port, `${e.nat} port allocation\n${why}`);
    assert.ok(
      t.rows.every((x) => x.match === true),
      `${e.nat}: every row matches\n${why}`,
    );
  }
  const hp = report.targets.find((x) => x.name === 'hp-nat')!;
  assert.equal(hp.rows.find((x) => x.test === 'hairpin source')?.measured, 'outside address', "a hairpinned packet shows the sender's outside address");
  const home = report.targets.find((x) => x.name === 'home-nat')!;
  assert.match(home.rows.find((x) => x.test === 'type')!.evidence, /home-nat EIM\+EIF behind cgn-nat EIM\+ADF\+hairpin/);
  assert.ok(home.rows.find((x) => x.test === 'hairpin source')?.match, 'hairpinned through the carrier NAT, a packet shows the outside address');
  assert.deepEqual(leftovers(INET, ours()), [], 'check left nothing behind');
  process.stderr.write(`# check of ${expected.length} NATs took ${took} ms\n`);
});

test('a NAT declared otherwise than it behaves: exit 1 and the difference shown', { skip }, async () => {
  const r = await check([fileB]);
  assert.equal(r.exitCode, 1, `exit 1 expected\n${r.stdout.slice(0, 3000)}\n${r.stderr}`);
  assert.match(r.stdout, /k1-nat: probed from k1-n \(ns-ckm-k1-n\).* -- DIFFERS from its declaration/);
  // The evidence per run, or (when a request needed a retransmission on a loaded host, which
  // makes check judge the runs together, src/check/impaired.ts) over all runs.
  assert.match(
    r.stdout,
    /filtering\s+address-and-port-dependent\s+address-dependent\s+NO\s+(answers let in after sending to A1:P1: run 1: :\d+ same yes, other port [\d.]+:\d+ yes, other address no, both no|over a lossy path, all runs together: .*other port: in .*other address: dropped .*both: dropped)/,
  );
  assert.match(r.stdout, /type\s+port-restricted-cone \(EIM\+APDF\)\s+restricted-cone \(EIM\+ADF\)\s+NO/);
  assert.match(r.stdout, /1 of \d+ NAT\(s\) differ from their declaration: k1-nat$/);
  const j = JSON.parse((await check([fileB, '--json', '--nat', 'k1-nat', '--runs', '1'])).stdout) as Report;
  assert.equal(j.exitCode, 1);
  assert.deepEqual(
    j.targets.map((t) => [t.name, t.match]),
    [['k1-nat', false]],
  );
  assert.deepEqual(
    j.targets[0]!.rows.filter((x) => x.match === false).map((x) => x.test),
    ['filtering', 'type'],
  );
});

test('errors exit 2: a lab that is not up, an unknown NAT, a bad option', { skip }, async () => {
  const notUp = await check([fileDown]);
  assert.equal(notUp.exitCode, 2);
  assert.match(notUp.stderr, /lab "check-not-up" is not up \(no namespace .*\): run `labctl net up/);
  const noNat = await check([fileA, '--nat', 'nosuch-nat']);
  assert.equal(noNat.exitCode, 2);
  assert.match(noNat.stderr, /lab "check-matrix" has no NAT "nosuch-nat" \(it has k0-nat, k1-nat/);
  const badRuns = await check([fileA, '--runs', '0']);
  assert.equal(badRuns.exitCode, 2);
  assert.match(badRuns.stderr, /--runs wants a whole number from 1 to 10/);
  const badFile = await check([join(dir, 'missing.yaml')]);
  assert.equal(badFile.exitCode, 2);
  const natWithNamespace = await check(['--namespace', 'ns-ckm-k1-n', '--nat', 'k1-nat']);
  assert.equal(natWithNamespace.exitCode, 2);
  assert.match(natWithNamespace.stderr, /--nat goes with a lab file/);
  assert.deepEqual(leftovers(INET, ours()), []);
});

interface Pairs {
  pairs: {
    nodes: { name: string; learned?: { address: string; port: number } }[];
    cells: { from: string; to: string; delivered: boolean; predicted?: boolean; match?: boolean; why?: string }[];
    direct: { a: string; b: string; both: boolean; via?: { from: string; to: string; candidate: string; path: string } }[];
    match?: boolean;
  };
  exitCode: number;
}

test('--pairs: hole punching between every pair of nodes, who drops what', { skip }, async () => {
  const r = await check([fileA, '--pairs', '--runs', '1', '--json']);
  assert.equal(r.exitCode, 0, `every direction as the declared behaviour predicts\n${r.stdout.slice(-6000)}\n${r.stderr}`);
  const { pairs } = JSON.parse(r.stdout) as Pairs;
  assert.equal(pairs.nodes.length, expected.length - 1 + 1, 'every node (18 behind NATs, one on the internet)');
  assert.ok(
    pairs.nodes.every((n) => n.learned),
    'every node learned its endpoint',
  );
  assert.equal(pairs.cells.length, pairs.nodes.length * (pairs.nodes.length - 1));
  assert.ok(
    pairs.cells.every((c) => c.match === true),
    'the model of the declared NATs predicts every direction',
  );
  const cell = (a: string, b: string) => pairs.cells.find((c) => c.from === a && c.to === b)!;
  const both = (a: string, b: string) => pairs.direct.find((d) => (d.a === a && d.b === b) || (d.a === b && d.b === a))!.both;
  assert.equal(both('k0-n', 'k2-n'), true, 'full cone and port-restricted cone punch through');
  assert.equal(both('fx-n', 'fxr-n'), true, "the article's two fixed-port NATs talk both ways");
  assert.equal(both('k3-n', 'k2-n'), false, 'symmetric and port-restricted do not');
  assert.match(cell('k3-n', 'k2-n').why!, /k2-nat \(APDF\) drops it.*k3-n's packets leave k3-nat from a new port for each address and port \(APDM\)/);
  assert.equal(cell('srv', 'k0-n').delivered, true, 'a node on the internet reaches a full cone');
  assert.equal(cell('k0-n', 'srv').delivered, true);
  assert.equal(cell('srv', 'k3-n').delivered, false);
  assert.match(cell('cgs-n', 'homes-n').why!, /cgs-nat does not hairpin/);
  // Since --pairs tries host candidates and answers checks as ICE does, the pair still talks:
  // homes-n reaches cgs-n's own address on cgs-nat's LAN, and the answer comes back through
  // homes-nat's flow (before, only the endpoints the STUN server saw were tried: "no").
  assert.deepEqual(pairs.direct.find((d) => d.a === 'cgs-n' && d.b === 'homes-n')?.via, {
    from: 'homes-n',
    to: 'cgs-n',
    candidate: 'host',
    path: 'peer-reflexive',
  });
  // So does a symmetric NAT's node with a server on the internet (its check to the server is answered).
  assert.equal(both('k3-n', 'srv'), true);
  assert.deepEqual(leftovers(INET, ours()), []);
});
