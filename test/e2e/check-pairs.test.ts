// `labctl check --pairs` tries what real peers try (RFC 8445): host candidates (the nodes'
// own addresses), then server-reflexive ones, answered as ICE answers its checks. The lab
// (test/fixtures/check/pairs-candidates.yaml) has a pair of nodes for each kind of candidate
// pair: two nodes on one LAN behind a NAT that does not hairpin talk over their host
// candidates; nodes behind different NATs over server-reflexive ones, as before; two homes
// behind a carrier NAT that hairpins through its outside address; a node behind a symmetric
// NAT reaches a server on the internet peer-reflexively; and pairs no candidate joins say why.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { isRoot, labctl, labctlOk, netnsList, ROOT } from '../support/cli.js';
import { check, leftovers } from '../fixtures/check/support.js';

const skip = isRoot ? false : 'needs root';
const FILE = `${ROOT}test/fixtures/check/pairs-candidates.yaml`;
const PREFIX = 'ckp-';
const INET = `ns-${PREFIX}inet`;
const ours = () => netnsList().filter((n) => n.startsWith(`ns-${PREFIX}`));

interface Pairs {
  pairs: {
    nodes: { name: string; learned?: { address: string; port: number }; candidates: { kind: string; endpoint: { address: string } }[] }[];
    checks: {
      from: string;
      to: string;
      candidate: string;
      delivered: boolean;
      answered: boolean;
      path?: string;
      match?: boolean;
      why?: string;
      basis?: string;
    }[];
    direct: { a: string; b: string; both: boolean; via?: { path: string; candidate: string }; match?: boolean }[];
    match?: boolean;
    unmeasured: string[];
  };
  exitCode: number;
}

before(async () => {
  if (!isRoot) return;
  assert.deepEqual(ours(), [], 'no namespace of the pairs lab exists before the test');
  await labctlOk(['net', 'up', FILE]);
});

after(async () => {
  if (!isRoot) return;
  await labctl(['net', 'down', FILE]);
  assert.deepEqual(ours(), [], 'no namespace of the pairs lab is left');
});

test('--pairs: host candidates on one LAN, server-reflexive across NATs, hairpinned behind one carrier NAT, peer-reflexive to the internet', {
  skip,
}, async () => {
  const r = await check([FILE, '--pairs', '--runs', '1', '--json']);
  assert.equal(r.exitCode, 0, `every check as the declared behaviour predicts\n${r.stdout.slice(-6000)}\n${r.stderr}`);
  const { pairs } = JSON.parse(r.stdout) as Pairs;
  assert.deepEqual(pairs.unmeasured, []);
  assert.ok(
    pairs.checks.every((c) => c.match === true),
    `the model of the declared NATs predicts every check: ${JSON.stringify(pairs.checks.filter((c) => c.match !== true))}`,
  );
  const lanA = pairs.nodes.find((n) => n.name === 'lan-a')!;
  assert.deepEqual(
    lanA.candidates.map((c) => [c.kind, c.endpoint.address]),
    [
      ['host', '10.0.1.1'],
      ['server-reflexive', '100.64.1.100'],
    ],
  );
  assert.deepEqual(
    pairs.nodes.find((n) => n.name === 'srv')!.candidates.map((c) => c.kind),
    ['host'],
    'a node on the internet: the STUN server sees its own address, so it has only its host candidate',
  );
  const link = (a: string, b: string) => pairs.direct.find((d) => (d.a === a && d.b === b) || (d.a === b && d.b === a))!;
  const checkOf = (from: string, to: string, candidate: string) => pairs.checks.find((c) => c.from === from && c.to === to && c.candidate === candidate)!;

  // One LAN behind a NAT that does not hairpin: before, "cannot talk"; now over host candidates.
  assert.deepEqual([link('lan-a', 'lan-b').both, link('lan-a', 'lan-b').via?.path], [true, 'host']);
  const lanSrflx = checkOf('lan-a', 'lan-b', 'server-reflexive');
  assert.deepEqual([lanSrflx.delivered, lanSrflx.basis], [false, 'predicted']);
  assert.match(lanSrflx.why!, /lan-nat does not hairpin/);
  // Behind different NATs: server-reflexive, as before; the host candidates lead nowhere.
  assert.deepEqual([link('lan-a', 'cone-n').both, link('lan-a', 'cone-n').via?.path], [true, 'server-reflexive']);
  assert.match(checkOf('lan-a', 'cone-n', 'host').why!, /nothing on lan-a's way routes to 10\.0\.2\.1 \(cone-n's own address, on cone-nat's LAN\)/);
  // Two homes behind one carrier NAT: through its outside address.
  assert.deepEqual([link('h1', 'h2').both, link('h1', 'h2').via?.path], [true, 'hairpinned']);
  // Symmetric NAT to a server on the internet: the server sees it at a port no STUN server saw.
  assert.deepEqual([link('sym-n', 'srv').both, link('sym-n', 'srv').via?.path], [true, 'peer-reflexive']);
  // No candidate joins a symmetric NAT and a port-restricted cone: every check says why.
  assert.equal(link('sym-n', 'lan-a').both, false);
  assert.match(checkOf('sym-n', 'lan-a', 'server-reflexive').why!, /lan-nat \(APDF\) drops it.*sym-n's packets leave sym-nat from a new port/);
  assert.ok(pairs.direct.every((d) => d.match === true));

  const text = await check([FILE, '--pairs', '--runs', '1']);
  assert.equal(text.exitCode, 0, text.stderr);
  assert.match(text.stdout, /^ {2}lan-a <-> lan-b +host +lan-[ab] -> lan-[ab]'s host 10\.0\.1\.[12]:\d+, answered$/m);
  assert.match(text.stdout, /^ {2}h1 <-> h2 +hairpinned +h[12] -> h[12]'s server-reflexive 100\.64\.3\.100:\d+, answered$/m);
  assert.match(text.stdout, /^talk directly: .*lan-a <-> lan-b \(host\)/m);
  assert.match(text.stdout, /^ {2}sym-n -> lan-a's host 10\.0\.1\.1:\d+: predicted: nothing on sym-n's way routes to 10\.0\.1\.1/m);
  assert.deepEqual(leftovers(INET, ours()), [], 'check left nothing behind');
});
