// planNetwork: what `labctl net up` would create, as data. Pure, so no namespaces here.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadLab } from '../../src/lab/load.js';
import type { Lab } from '../../src/lab/model.js';
import { parseLab } from '../../src/lab/resolve.js';
import { compileNatRuleset } from '../../src/nat/compile.js';
import { type NamespacePlan, type NetworkPlan, planNetwork } from '../../src/plan/network.js';

const article = loadLab('article');
const ns = (plan: NetworkPlan, netns: string): NamespacePlan => plan.namespaces.find((n) => n.netns === netns) ?? assert.fail(`no namespace ${netns}`);
const lines = (batch: string[][]) => batch.map((l) => l.join(' '));

describe('planNetwork of the article lab', () => {
  const plan = planNetwork(article);

  test('one namespace plan per member, with its role', () => {
    assert.equal(plan.lab, 'article');
    assert.deepEqual(plan.namespaces.map((n) => [n.netns, n.owner, n.role]).sort(), [
      ['ns-c0', 'c0', 'node'],
      ['ns-c0-nat', 'c0-nat', 'nat'],
      ['ns-c1', 'c1', 'node'],
      ['ns-c1-nat', 'c1-nat', 'nat'],
      ['ns-inet', 'inet', 'internet'],
    ]);
  });

  test('linkBatch creates each veth with both ends in their namespaces', () => {
    assert.deepEqual(lines(plan.linkBatch), [
      'link add ve-c0 netns ns-c0 type veth peer name ve-c0-nat-node netns ns-c0-nat',
      'link add ve-c0-nat-inet netns ns-c0-nat type veth peer name ve-c0-inet netns ns-inet',
      'link add ve-c1 netns ns-c1 type veth peer name ve-c1-nat-node netns ns-c1-nat',
      'link add ve-c1-nat-inet netns ns-c1-nat type veth peer name ve-c1-inet netns ns-inet',
    ]);
  });

  test('nothing is ever created in the host namespace: every link add names a lab netns for every end', () => {
    const labNs = new Set(plan.namespaces.map((n) => n.netns));
    for (const l of plan.linkBatch) {
      assert.equal(l[0], 'link');
      assert.equal(l[1], 'add');
      const type = l[l.indexOf('type') + 1];
      const netnsArgs = l.flatMap((w, i) => (w === 'netns' ? [l[i + 1]!] : []));
      assert.equal(netnsArgs.length, type === 'veth' ? 2 : 1, l.join(' '));
      // netns comes right after each name: `A netns X ... peer name B netns Y`.
      assert.equal(l[3], 'netns', l.join(' '));
      if (type === 'veth') assert.equal(l[l.indexOf('peer') + 3], 'netns', l.join(' '));
      for (const n of netnsArgs) assert.ok(labNs.has(n), `${n} is not a lab namespace`);
    }
  });

  test('per-namespace ipBatch: loopback, links up, addresses and default routes', () => {
    assert.deepEqual(lines(ns(plan, 'ns-c0').ipBatch), [
      'link set lo up',
      'link set ve-c0 up',
      'addr add 10.0.1.1/24 dev ve-c0',
      'route add default via 10.0.1.100 dev ve-c0',
    ]);
    assert.deepEqual(lines(ns(plan, 'ns-c1').ipBatch), [
      'link set lo up',
      'link set ve-c1 up',
      'addr add 10.0.2.1/24 dev ve-c1',
      'route add default via 10.0.2.100 dev ve-c1',
    ]);
    assert.deepEqual(lines(ns(plan, 'ns-c0-nat').ipBatch), [
      'link set lo up',
      'link set ve-c0-nat-node up',
      'link set ve-c0-nat-inet up',
      'addr add 10.0.1.100/24 dev ve-c0-nat-node',
      'addr add 100.64.1.100/24 dev ve-c0-nat-inet',
      'route add default via 100.64.1.254 dev ve-c0-nat-inet',
    ]);
    assert.deepEqual(lines(ns(plan, 'ns-c1-nat').ipBatch), [
      'link set lo up',
      'link set ve-c1-nat-node up',
      'link set ve-c1-nat-inet up',
      'addr add 10.0.2.100/24 dev ve-c1-nat-node',
      'addr add 100.64.2.100/24 dev ve-c1-nat-inet',
      'route add default via 100.64.2.254 dev ve-c1-nat-inet',
    ]);
    // The internet has only connected routes: no default route, no NAT.
    assert.deepEqual(lines(ns(plan, 'ns-inet').ipBatch), [
      'link set lo up',
      'link set ve-c0-inet up',
      'link set ve-c1-inet up',
      'addr add 100.64.1.254/24 dev ve-c0-inet',
      'addr add 100.64.2.254/24 dev ve-c1-inet',
    ]);
  });

  test('NAT namespaces carry ip_forward, the two UDP timeouts and their nft ruleset', () => {
    for (const name of ['c0-nat', 'c1-nat']) {
      const n = ns(plan, `ns-${name}`);
      assert.deepEqual(n.sysctls, {
        'net.ipv4.ip_forward': '1',
        'net.netfilter.nf_conntrack_udp_timeout': '30',
        'net.netfilter.nf_conntrack_udp_timeout_stream': '120',
      });
      assert.equal(n.nftRuleset, compileNatRuleset(article.nats.find((x) => x.name === name)!));
      assert.match(n.nftRuleset!, /^table ip labctl$/m);
    }
  });

  test('the internet forwards and nothing else; nodes have no sysctls and no ruleset', () => {
    assert.deepEqual(ns(plan, 'ns-inet').sysctls, { 'net.ipv4.ip_forward': '1' });
    assert.equal(ns(plan, 'ns-inet').nftRuleset, undefined);
    for (const n of ['ns-c0', 'ns-c1']) {
      assert.deepEqual(ns(plan, n).sysctls, {});
      assert.equal(ns(plan, n).nftRuleset, undefined);
    }
  });

  test('the plan hash is stable and changes when a timeout changes', () => {
    assert.match(plan.hash, /^[0-9a-f]{16}$/);
    assert.equal(planNetwork(article).hash, plan.hash);
    assert.equal(planNetwork(loadLab('article')).hash, plan.hash);
    assert.deepEqual(planNetwork(article), plan);
    const changed: Lab = structuredClone(article);
    changed.nats[1]!.behaviour.udpTimeouts.stream = 300;
    const p2 = planNetwork(changed);
    assert.notEqual(p2.hash, plan.hash);
    assert.equal(ns(p2, 'ns-c1-nat').sysctls['net.netfilter.nf_conntrack_udp_timeout_stream'], '300');
    const tcp: Lab = structuredClone(article);
    tcp.nats[0]!.behaviour.tcpMappingTimeout = 600;
    assert.notEqual(planNetwork(tcp).hash, plan.hash, 'a change only in the ruleset changes the hash');
  });

  test('a timeout declared in the lab file reaches the sysctls and the hash', () => {
    const yaml = (stream: number) => `
name: t
sites:
  - { name: a, nat: { type: full-cone, udp-timeouts: { unreplied: 10, stream: ${stream} } }, nodes: [{ name: a1 }] }
`;
    const p60 = planNetwork(parseLab(yaml(60), 't.yaml'));
    const p61 = planNetwork(parseLab(yaml(61), 't.yaml'));
    assert.deepEqual(ns(p60, 'ns-a-nat').sysctls, {
      'net.ipv4.ip_forward': '1',
      'net.netfilter.nf_conntrack_udp_timeout': '10',
      'net.netfilter.nf_conntrack_udp_timeout_stream': '60',
    });
    assert.notEqual(p60.hash, p61.hash);
  });
});

describe('planNetwork of a bridged LAN', () => {
  const lab = parseLab(
    `
name: t
sites:
  - { name: a, nat: { type: full-cone }, nodes: [{ name: a1 }, { name: a2 }] }
`,
    't.yaml',
  );
  const plan = planNetwork(lab);

  test('creates br-lan in the NAT namespace before the veths, and enslaves one port per node', () => {
    assert.deepEqual(lines(plan.linkBatch), [
      'link add br-lan netns ns-a-nat type bridge',
      'link add ve-a1 netns ns-a1 type veth peer name ve-a1-lan netns ns-a-nat',
      'link add ve-a2 netns ns-a2 type veth peer name ve-a2-lan netns ns-a-nat',
      'link add ve-a-nat-inet netns ns-a-nat type veth peer name ve-a-inet netns ns-inet',
    ]);
    const nat = lines(ns(plan, 'ns-a-nat').ipBatch);
    assert.deepEqual(nat, [
      'link set lo up',
      'link set ve-a1-lan master br-lan',
      'link set ve-a2-lan master br-lan',
      'link set ve-a1-lan up',
      'link set ve-a2-lan up',
      'link set ve-a-nat-inet up',
      'link set br-lan up',
      'addr add 10.0.1.100/24 dev br-lan',
      'addr add 100.64.1.100/24 dev ve-a-nat-inet',
      'route add default via 100.64.1.254 dev ve-a-nat-inet',
    ]);
    // The LAN address sits on the bridge, never on a port.
    assert.ok(!nat.some((l) => /^addr add .* dev ve-a\d-lan$/.test(l)));
    assert.deepEqual(lines(ns(plan, 'ns-a2').ipBatch), [
      'link set lo up',
      'link set ve-a2 up',
      'addr add 10.0.1.2/24 dev ve-a2',
      'route add default via 10.0.1.100 dev ve-a2',
    ]);
    assert.match(ns(plan, 'ns-a-nat').nftRuleset!, /iifname "br-lan" oifname "ve-a-nat-inet" accept/);
  });

  test('a child NAT on a bridged parent LAN is a bridge port like a node', () => {
    const cgn = parseLab(
      `
name: t
sites:
  - { name: isp, nat: { type: symmetric }, nodes: [{ name: other }] }
  - { name: home, upstream: isp, nat: { type: full-cone }, nodes: [{ name: pc }] }
`,
      't.yaml',
    );
    const p = planNetwork(cgn);
    assert.ok(lines(p.linkBatch).includes('link add ve-home-nat-up netns ns-home-nat type veth peer name ve-home-nat-lan netns ns-isp-nat'));
    assert.ok(lines(ns(p, 'ns-isp-nat').ipBatch).includes('link set ve-home-nat-lan master br-lan'));
    assert.ok(lines(ns(p, 'ns-home-nat').ipBatch).includes('route add default via 10.0.1.100 dev ve-home-nat-up'));
    assert.ok(lines(ns(p, 'ns-home-nat').ipBatch).includes('addr add 10.0.1.1/24 dev ve-home-nat-up'));
    // Only the parent reaches into the internet namespace.
    assert.equal(lines(p.linkBatch).filter((l) => l.endsWith('netns ns-inet')).length, 1);
  });
});
