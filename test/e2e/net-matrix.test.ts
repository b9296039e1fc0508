// The delivery matrix: for each classic NAT type and each RFC 4787 mapping/filtering
// pair, which peers reach a mapped port, and whether the outside port changes per
// destination. One lab holds a site per behaviour and two peers on the internet,
// p (ports 7000 and 7001) and q (port 7000); UDP agents in the namespaces do the talking.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { UdpAgent } from '../support/agents.js';
import { isRoot, labctl, labctlOk, netnsList } from '../support/cli.js';

const skip = isRoot ? false : 'needs root';
type Dep = 'endpoint-independent' | 'address-dependent' | 'address-and-port-dependent';
const DEPS: Dep[] = ['endpoint-independent', 'address-dependent', 'address-and-port-dependent'];
const SHORT: Record<Dep, string> = { 'endpoint-independent': 'ei', 'address-dependent': 'ad', 'address-and-port-dependent': 'apd' };

interface Variant {
  site: string;
  nat: Record<string, unknown>;
  mapping: Dep;
  filtering: Dep;
  hairpinning: boolean;
}

const CLASSIC: [string, Dep, Dep][] = [
  ['full-cone', 'endpoint-independent', 'endpoint-independent'],
  ['restricted-cone', 'endpoint-independent', 'address-dependent'],
  ['port-restricted-cone', 'endpoint-independent', 'address-and-port-dependent'],
  ['symmetric', 'address-and-port-dependent', 'address-and-port-dependent'],
];
const variants: Variant[] = [
  ...CLASSIC.map(([type, mapping, filtering], i): Variant => ({ site: `k${i}`, nat: { type }, mapping, filtering, hairpinning: false })),
  ...DEPS.flatMap((mapping) =>
    DEPS.map((filtering): Variant => ({ site: `${SHORT[mapping]}m-${SHORT[filtering]}f`, nat: { mapping, filtering }, mapping, filtering, hairpinning: false })),
  ),
  { site: 'hp', nat: { type: 'full-cone', hairpinning: true }, mapping: 'endpoint-independent', filtering: 'endpoint-independent', hairpinning: true },
];

const PREFIX = 'mx-';
const dir = mkdtempSync(join(tmpdir(), 'labctl-matrix-'));
const file = join(dir, 'matrix.yaml');
const outside = new Map<string, string>();
let p: UdpAgent, q: UdpAgent;
const inside = new Map<string, UdpAgent>();
const P = '100.64.101.100';
const Q = '100.64.102.100';

before(async () => {
  if (!isRoot) return;
  const lab = {
    name: 'matrix',
    prefix: PREFIX,
    sites: variants.map((v) => ({ name: v.site, nat: v.nat, nodes: [{ name: `${v.site}-n` }] })),
    nodes: [
      { name: 'p', uplink: { subnet: '100.64.101.0/24', address: P } },
      { name: 'q', uplink: { subnet: '100.64.102.0/24', address: Q } },
    ],
  };
  writeFileSync(file, stringify(lab));
  await labctlOk(['net', 'up', file]);
  const resolved = JSON.parse((await labctlOk(['validate', file, '--json'])).stdout) as { nats: { site: string; outside: { address: string } }[] };
  for (const n of resolved.nats) outside.set(n.site, n.outside.address);
  p = await UdpAgent.start(`ns-${PREFIX}p`, [7000, 7001]);
  q = await UdpAgent.start(`ns-${PREFIX}q`, [7000]);
  for (const v of variants) inside.set(v.site, await UdpAgent.start(`ns-${PREFIX}${v.site}-n`, [5000, 5001, 5002]));
});

after(async () => {
  if (!isRoot) return;
  await Promise.all([p?.stop(), q?.stop(), ...[...inside.values()].map((a) => a.stop())]);
  await labctl(['net', 'down', file]);
  assert.deepEqual(netnsList().filter((n) => n.startsWith(`ns-${PREFIX}`)), [], 'no namespace of the matrix lab is left');
});

async function mappedPort(to: UdpAgent, msg: string, expectFrom: string): Promise<number> {
  const d = await to.waitFor(msg, 2000);
  assert.ok(d, `${msg} reached its peer`);
  assert.equal(d.from, expectFrom, `${msg} shows the NAT's outside address`);
  return d.fromPort;
}

for (const v of variants) {
  const name = `${v.site}: ${v.nat.type ?? `${v.mapping} mapping, ${v.filtering} filtering`}`;
  test(name, { skip }, async () => {
    const a = inside.get(v.site)!;
    const out = outside.get(v.site)!;
    const tag = v.site;

    // Mapping: one inside endpoint (port 5000) to p:7000, q:7000 and p:7001.
    a.send(5000, P, 7000, `${tag}-m1`);
    const x1 = await mappedPort(p, `${tag}-m1`, out);
    a.send(5000, Q, 7000, `${tag}-m2`);
    const x2 = await mappedPort(q, `${tag}-m2`, out);
    a.send(5000, P, 7001, `${tag}-m3`);
    const x3 = await mappedPort(p, `${tag}-m3`, out);
    if (v.mapping === 'endpoint-independent') {
      assert.equal(x2, x1, 'EIM: same outside port towards another address');
      assert.equal(x3, x1, 'EIM: same outside port towards another port');
      assert.equal(x1, 5000, 'EIM with port preservation keeps the inside port');
    } else if (v.mapping === 'address-dependent') {
      assert.notEqual(x2, x1, 'ADM: another outside port towards another address');
      assert.equal(x3, x1, 'ADM: same outside port towards another port of the same address');
    } else {
      assert.notEqual(x2, x1, 'APDM: another outside port towards another address');
      assert.notEqual(x3, x1, 'APDM: another outside port towards another port');
    }

    // Filtering: a fresh inside endpoint (port 5001) has sent to p:7000 only.
    a.send(5001, P, 7000, `${tag}-f0`);
    const y = await mappedPort(p, `${tag}-f0`, out);
    p.send(7000, out, y, `${tag}-from-same`);
    p.send(7001, out, y, `${tag}-from-other-port`);
    q.send(7000, out, y, `${tag}-from-other-address`);
    const got = async (msg: string) => {
      const d = await a.waitFor(msg, 700);
      if (d) assert.equal(d.port, 5001, `${msg} arrives at the inside endpoint that owns the mapping`);
      return d !== undefined;
    };
    const delivered = {
      same: await got(`${tag}-from-same`),
      otherPort: await got(`${tag}-from-other-port`),
      otherAddress: await got(`${tag}-from-other-address`),
    };
    const expected = {
      same: true,
      otherPort: v.filtering !== 'address-and-port-dependent',
      otherAddress: v.filtering === 'endpoint-independent',
    };
    assert.deepEqual(delivered, expected, `delivery matrix of ${v.filtering} filtering`);

    // Hairpinning: the inside sends to its own outside address and mapped port.
    a.send(5002, out, y, `${tag}-hairpin`);
    const h = await a.waitFor(`${tag}-hairpin`, 700);
    if (v.hairpinning) {
      assert.ok(h, 'hairpinned packet arrives');
      assert.equal(h.port, 5001);
      assert.equal(h.from, out, 'a hairpinned packet shows the sender\'s outside address');
    } else {
      assert.equal(h, undefined, 'no hairpinning: the packet is dropped');
    }
  });
}
