// resolveLab: the article lab's exact names and addresses, address planning defaults,
// namespace prefixes, interface-name shortening and the classic NAT names.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CLASSIC, classicName, describeBehaviour, type ClassicNatType } from '../../src/lab/behaviour.js';
import { IFNAME_MAX_BYTES, fitIfname, internetIfname, natLanPortIfname, natSoleLanIfname, natUplinkIfname, nodeIfname } from '../../src/lab/ifnames.js';
import { loadLab } from '../../src/lab/load.js';
import { members, type Lab } from '../../src/lab/model.js';
import { DEFAULT_TCP_MAPPING_TIMEOUT, DEFAULT_UDP_STREAM, DEFAULT_UDP_UNREPLIED } from '../../src/lab/resolve-behaviour.js';
import { parseLab } from '../../src/lab/resolve.js';
import { UsageError } from '../../src/util/errors.js';
import { NAT_TYPES } from '../../src/lab/schema.js';

const lab = (yaml: string): Lab => parseLab(yaml, 'test.yaml');
const nat = (l: Lab, name: string) => l.nats.find((n) => n.name === name) ?? assert.fail(`no NAT ${name}`);
const node = (l: Lab, name: string) => l.nodes.find((n) => n.name === name) ?? assert.fail(`no node ${name}`);
const rejects = (yaml: string): UsageError => {
  try {
    lab(yaml);
  } catch (e) {
    assert.ok(e instanceof UsageError, String(e));
    return e;
  }
  assert.fail('resolved without error');
};

describe('the article lab', () => {
  const article = loadLab('article');

  test('namespaces: ns-c0, ns-c0-nat, ns-c1, ns-c1-nat, ns-inet', () => {
    assert.deepEqual(
      members(article)
        .map((m) => m.netns)
        .sort(),
      ['ns-c0', 'ns-c0-nat', 'ns-c1', 'ns-c1-nat', 'ns-inet'],
    );
    assert.equal(article.name, 'article');
    assert.equal(article.prefix, '');
    assert.equal(article.image, 'noble');
    assert.equal(article.internet.name, 'inet');
    assert.equal(article.internet.machine, false);
    for (const m of [...article.nats, ...article.nodes]) assert.equal(m.machine, true, m.name);
  });

  test('veths: ve-c0 <-> ve-c0-nat-node and ve-c0-nat-inet <-> ve-c0-inet, same for c1', () => {
    const pairs = article.links.map((l) => [`${l.a.netns} ${l.a.ifname}`, `${l.b.netns} ${l.b.ifname}`, l.bBridge ?? null]);
    assert.deepEqual(pairs, [
      ['ns-c0 ve-c0', 'ns-c0-nat ve-c0-nat-node', null],
      ['ns-c0-nat ve-c0-nat-inet', 'ns-inet ve-c0-inet', null],
      ['ns-c1 ve-c1', 'ns-c1-nat ve-c1-nat-node', null],
      ['ns-c1-nat ve-c1-nat-inet', 'ns-inet ve-c1-inet', null],
    ]);
  });

  test('addresses and routes', () => {
    const c0 = node(article, 'c0');
    const c1 = node(article, 'c1');
    const n0 = nat(article, 'c0-nat');
    const n1 = nat(article, 'c1-nat');
    assert.deepEqual(c0.link, { ifname: 've-c0', address: '10.0.1.1', prefix: 24, subnet: '10.0.1.0/24', gateway: '10.0.1.100' });
    assert.deepEqual(c1.link, { ifname: 've-c1', address: '10.0.2.1', prefix: 24, subnet: '10.0.2.0/24', gateway: '10.0.2.100' });
    assert.equal(c0.router, 'c0-nat');
    assert.equal(c0.site, 'c0');
    assert.deepEqual(n0.lan, { ifname: 've-c0-nat-node', address: '10.0.1.100', prefix: 24, subnet: '10.0.1.0/24', members: ['c0'], bridged: false });
    assert.deepEqual(n0.outside, {
      ifname: 've-c0-nat-inet',
      address: '100.64.1.100',
      prefix: 24,
      subnet: '100.64.1.0/24',
      gateway: '100.64.1.254',
      upstream: 'inet',
      pool: ['100.64.1.100'],
    });
    assert.deepEqual(n1.lan, { ifname: 've-c1-nat-node', address: '10.0.2.100', prefix: 24, subnet: '10.0.2.0/24', members: ['c1'], bridged: false });
    assert.deepEqual(n1.outside, {
      ifname: 've-c1-nat-inet',
      address: '100.64.2.100',
      prefix: 24,
      subnet: '100.64.2.0/24',
      gateway: '100.64.2.254',
      upstream: 'inet',
      pool: ['100.64.2.100'],
    });
    assert.deepEqual(article.internet.links, [
      { ifname: 've-c0-inet', address: '100.64.1.254', prefix: 24, subnet: '100.64.1.0/24', peer: 'c0-nat' },
      { ifname: 've-c1-inet', address: '100.64.2.254', prefix: 24, subnet: '100.64.2.0/24', peer: 'c1-nat' },
    ]);
  });

  test('behaviour: c0-nat full cone (EIM+EIF), c1-nat restricted cone (EIM+ADF), fixed port 54321 forwarded to 12345', () => {
    const b0 = nat(article, 'c0-nat').behaviour;
    const b1 = nat(article, 'c1-nat').behaviour;
    assert.equal(b0.declaredAs, 'full-cone');
    assert.equal(b0.mapping, 'endpoint-independent');
    assert.equal(b0.filtering, 'endpoint-independent');
    assert.equal(b1.declaredAs, 'restricted-cone');
    assert.equal(b1.mapping, 'endpoint-independent');
    assert.equal(b1.filtering, 'address-dependent');
    for (const [b, to, addr] of [
      [b0, 'c0', '10.0.1.1'],
      [b1, 'c1', '10.0.2.1'],
    ] as const) {
      assert.equal(b.fixedPort, 54321);
      assert.equal(b.portPreservation, false, 'a fixed port replaces port preservation');
      assert.equal(b.hairpinning, false);
      assert.deepEqual(b.forwards, [
        { protocol: 'udp', port: 54321, to, toAddress: addr, toPort: 12345, public: false },
        { protocol: 'tcp', port: 54321, to, toAddress: addr, toPort: 12345, public: false },
      ]);
      assert.deepEqual(b.udpTimeouts, { unreplied: DEFAULT_UDP_UNREPLIED, stream: DEFAULT_UDP_STREAM });
      assert.equal(b.tcpMappingTimeout, DEFAULT_TCP_MAPPING_TIMEOUT);
    }
    assert.equal(DEFAULT_TCP_MAPPING_TIMEOUT, 7440);
  });

  test('loading is deterministic', () => {
    assert.deepEqual(loadLab('article'), article);
  });
});

describe('address planning', () => {
  test('default subnets are 10.0.k.0/24 and 100.64.k.0/24, skipping explicit ones', () => {
    const l = lab(`
name: t
sites:
  - { name: a, nat: { type: full-cone }, nodes: [{ name: a1 }] }
  - { name: b, nat: { type: full-cone }, lan: { subnet: 10.0.1.0/24 }, uplink: { subnet: 100.64.1.0/24 }, nodes: [{ name: b1 }] }
  - { name: c, nat: { type: full-cone }, lan: { subnet: 10.0.2.0/23 }, nodes: [{ name: c1 }] }
  - { name: d, nat: { type: full-cone }, nodes: [{ name: d1 }] }
`);
    assert.deepEqual(
      l.nats.map((n) => [n.name, n.lan.subnet, n.outside.subnet]),
      [
        ['a-nat', '10.0.4.0/24', '100.64.2.0/24'],
        ['b-nat', '10.0.1.0/24', '100.64.1.0/24'],
        ['c-nat', '10.0.2.0/23', '100.64.3.0/24'],
        ['d-nat', '10.0.5.0/24', '100.64.4.0/24'],
      ],
    );
    assert.equal(nat(l, 'c-nat').lan.prefix, 23);
  });

  test('default LAN gateway is .100, the internet side .254, the NAT outside .100', () => {
    const l = lab(`
name: t
sites:
  - { name: a, nat: { type: full-cone }, nodes: [{ name: a1 }] }
`);
    const a = nat(l, 'a-nat');
    assert.equal(a.lan.address, '10.0.1.100');
    assert.equal(a.outside.address, '100.64.1.100');
    assert.equal(a.outside.gateway, '100.64.1.254');
    assert.equal(l.internet.links[0]!.address, '100.64.1.254');
    assert.equal(node(l, 'a1').link.gateway, '10.0.1.100');
  });

  test('nodes get .1, .2, ... skipping addresses already taken', () => {
    const l = lab(`
name: t
sites:
  - name: a
    nat: { type: full-cone }
    lan: { gateway: 10.0.1.1 }
    nodes:
      - { name: n1 }
      - { name: n2, address: 10.0.1.3 }
      - { name: n3 }
      - { name: n4 }
`);
    assert.deepEqual(
      l.nodes.map((n) => [n.name, n.link.address, n.link.gateway]),
      [
        ['n1', '10.0.1.2', '10.0.1.1'],
        ['n2', '10.0.1.3', '10.0.1.1'],
        ['n3', '10.0.1.4', '10.0.1.1'],
        ['n4', '10.0.1.5', '10.0.1.1'],
      ],
    );
  });

  test('the default gateway moves to the first free address when a node holds .100', () => {
    const l = lab(`
name: t
sites:
  - { name: a, nat: { type: full-cone }, nodes: [{ name: n1, address: 10.0.1.100 }, { name: n2 }] }
`);
    assert.equal(nat(l, 'a-nat').lan.address, '10.0.1.1');
    assert.equal(node(l, 'n2').link.address, '10.0.1.2');
    assert.equal(node(l, 'n1').link.gateway, '10.0.1.1');
  });

  test('small subnets: gateway and addresses stay inside them', () => {
    const l = lab(`
name: t
sites:
  - { name: a, nat: { type: full-cone }, lan: { subnet: 10.9.0.0/29 }, uplink: { subnet: 100.64.9.0/30 }, nodes: [{ name: n1 }, { name: n2 }] }
`);
    const a = nat(l, 'a-nat');
    assert.equal(a.lan.address, '10.9.0.1');
    assert.deepEqual(
      l.nodes.map((n) => n.link.address),
      ['10.9.0.2', '10.9.0.3'],
    );
    assert.equal(a.outside.address, '100.64.9.1');
    assert.equal(a.outside.gateway, '100.64.9.2');
  });

  test('a child site gets an address on its parent LAN and routes via the parent NAT', () => {
    const l = lab(`
name: t
sites:
  - { name: isp, nat: { type: symmetric }, nodes: [{ name: other }] }
  - { name: home, upstream: isp, nat: { type: full-cone }, nodes: [{ name: pc }] }
`);
    const isp = nat(l, 'isp-nat');
    const home = nat(l, 'home-nat');
    assert.equal(isp.lan.subnet, '10.0.1.0/24');
    assert.deepEqual(isp.lan.members, ['other', 'home-nat']);
    assert.equal(isp.lan.bridged, true);
    assert.equal(home.outside.subnet, '10.0.1.0/24');
    assert.equal(home.outside.address, '10.0.1.1');
    assert.equal(home.outside.gateway, '10.0.1.100');
    assert.equal(home.outside.upstream, 'isp-nat');
    assert.equal(home.outside.ifname, 've-home-nat-up');
    assert.equal(node(l, 'other').link.address, '10.0.1.2');
    assert.equal(home.lan.subnet, '10.0.2.0/24');
    // Only the parent is on the internet; the child has no uplink subnet of its own.
    assert.deepEqual(
      l.internet.links.map((x) => x.peer),
      ['isp-nat'],
    );
  });

  test('a child site with only a child site behind it needs no nodes of its own', () => {
    const l = lab(`
name: t
sites:
  - { name: isp, nat: { type: symmetric } }
  - { name: home, upstream: isp, nat: { type: full-cone }, nodes: [{ name: pc }] }
`);
    const isp = nat(l, 'isp-nat');
    assert.deepEqual(isp.lan.members, ['home-nat']);
    assert.equal(isp.lan.bridged, false);
    assert.equal(isp.lan.ifname, 've-isp-nat-node');
  });

  test('a child uplink address given explicitly is never taken by a default (bug: default gateway took it)', () => {
    // "Pass 1: every explicit address, so defaults never take one": the child's explicit
    // 10.0.1.100 must push the parent's default gateway elsewhere, not be rejected.
    const l = lab(`
name: t
sites:
  - { name: isp, nat: { type: symmetric } }
  - { name: home, upstream: isp, nat: { type: full-cone }, uplink: { address: 10.0.1.100 }, nodes: [{ name: pc }] }
`);
    assert.equal(nat(l, 'home-nat').outside.address, '10.0.1.100');
    assert.equal(nat(l, 'isp-nat').lan.address, '10.0.1.1');
    assert.equal(nat(l, 'home-nat').outside.gateway, '10.0.1.1');
  });

  test('prefix changes namespace names to ns-<prefix><name>, not interface names', () => {
    const yaml = `
name: t
prefix: lab2-
sites:
  - { name: c0, nat: { name: c0-nat, type: full-cone }, nodes: [{ name: c0 }] }
`;
    const l = lab(yaml);
    assert.deepEqual(
      members(l)
        .map((m) => m.netns)
        .sort(),
      ['ns-lab2-c0', 'ns-lab2-c0-nat', 'ns-lab2-inet'],
    );
    for (const link of l.links) for (const end of [link.a, link.b]) assert.ok(end.netns.startsWith('ns-lab2-'), end.netns);
    const plain = lab(yaml.replace('prefix: lab2-\n', ''));
    assert.deepEqual(
      l.links.map((x) => [x.a.ifname, x.b.ifname]),
      plain.links.map((x) => [x.a.ifname, x.b.ifname]),
    );
    assert.equal(l.prefix, 'lab2-');
  });

  test('every problem is collected into one bad-input error (exit 2)', () => {
    const e = rejects(`
name: t
sites:
  - { name: a, nat: { type: full-cone }, lan: { subnet: 10.0.1.0/24 }, nodes: [{ name: a1, address: 10.0.2.1 }] }
  - { name: b, nat: { type: full-cone }, lan: { subnet: 10.0.3.0/24 }, nodes: [{ name: b1, address: 10.0.3.0 }] }
`);
    assert.equal(e.exitCode, 2);
    assert.equal(e.file, 'test.yaml');
    assert.deepEqual(
      e.issues.map((i) => i.path),
      ['sites[0].nodes[0].address', 'sites[1].nodes[0].address'],
    );
    assert.equal(e.message.split('\n').length, 2);
  });

  test('only the first stage with problems reports, all of its problems', () => {
    // Problems of three stages at once: names (two sites "a", a node "a1" twice), addresses
    // (outside the LAN, its network address) and NAT behaviour (mapping without filtering).
    const site = (name: string, nodes: string) =>
      `  - { name: ${name}, nat: { mapping: endpoint-independent }, lan: { subnet: 10.0.1.0/24 }, nodes: [${nodes}] }\n`;
    const other = (name: string) => `  - { name: ${name}, nat: { type: full-cone }, nodes: [{ name: b1 }] }\n`;
    const paths = (sites: string) => rejects(`name: t\nsites:\n${sites}`).issues.map((i) => i.path);
    const badAddresses = '{ name: a1, address: 10.0.2.1 }, { name: a2, address: 10.0.1.0 }';
    assert.deepEqual(paths(site('a', '{ name: a1, address: 10.0.2.1 }, { name: a1 }') + other('a')), [
      'sites[0].nodes[1].name',
      'sites[1].name',
      'sites[1].name (its NAT "a-nat")',
    ]);
    assert.deepEqual(paths(site('a', badAddresses) + other('b')), ['sites[0].nodes[0].address', 'sites[0].nodes[1].address']);
    assert.deepEqual(paths(site('a', '{ name: a1 }, { name: a2 }') + other('b')), ['sites[0].nat.filtering']);
  });
});

describe('interface names', () => {
  test('the article names are kept exactly', () => {
    assert.equal(nodeIfname('c0'), 've-c0');
    assert.equal(natSoleLanIfname('c0-nat'), 've-c0-nat-node');
    assert.equal(natUplinkIfname('c0-nat', true), 've-c0-nat-inet');
    assert.equal(natUplinkIfname('c0-nat', false), 've-c0-nat-up');
    assert.equal(internetIfname('c0'), 've-c0-inet');
    assert.equal(natLanPortIfname('c0'), 've-c0-lan');
    assert.equal(fitIfname('exactly-15-byte'), 'exactly-15-byte');
  });

  test('long names are shortened deterministically to at most 15 bytes: head, "-", 4 hex digits', () => {
    assert.equal(IFNAME_MAX_BYTES, 15);
    const names = ['abcdefghijklmnopqrstuvwxyz012345', 'branch-office-number-one', 'z', 'a-b-c-d-e-f-g-h-i-j-k-l-m-n-o-p'];
    for (const n of names) {
      for (const full of [`ve-${n}`, `ve-${n}-nat-node`, `ve-${n}-nat-inet`, `ve-${n}-lan`, `ve-${n}-inet`]) {
        const short = fitIfname(full);
        assert.ok(Buffer.byteLength(short) <= IFNAME_MAX_BYTES, `${full} -> ${short}`);
        assert.equal(fitIfname(full), short, 'deterministic');
        if (Buffer.byteLength(full) > IFNAME_MAX_BYTES) {
          assert.match(short, /^[a-z0-9-]*[a-z0-9]-[0-9a-f]{4}$/, `${full} -> ${short}`);
          assert.ok(full.startsWith(short.slice(0, -5)), `${short} keeps the head of ${full}`);
        } else assert.equal(short, full);
      }
    }
    // A head ending in "-" loses it: "ve-abcdef-ghijk" -> "ve-abcdef" + "-" + hash.
    assert.match(fitIfname('ve-abcdef-ghijklmn'), /^ve-abcdef-[0-9a-f]{4}$/);
    // Two long names with the same head still differ (here; the hash is 16 bits, so
    // clashes are possible and resolveLab reports them: see bad-labs 78 and 79).
    assert.notEqual(fitIfname('ve-branch-office-1-inet'), fitIfname('ve-branch-office-2-inet'));
    assert.equal(fitIfname('ve-printer-35-lan'), fitIfname('ve-printer-246-lan'));
  });

  test('a lab with long names resolves to the same short names every time, all unique per namespace', () => {
    const yaml = `
name: t
sites:
  - name: headquarters-building-a
    nat: { type: full-cone }
    nodes: [{ name: workstation-number-one }, { name: workstation-number-two }]
  - name: headquarters-building-b
    upstream: headquarters-building-a
    nat: { type: symmetric }
    nodes: [{ name: workstation-number-three }]
`;
    const a = lab(yaml);
    const b = lab(yaml);
    assert.deepEqual(a.links, b.links);
    const perNs = new Map<string, string[]>();
    for (const l of a.links) {
      for (const end of [l.a, l.b]) {
        assert.ok(Buffer.byteLength(end.ifname) <= IFNAME_MAX_BYTES, end.ifname);
        perNs.set(end.netns, [...(perNs.get(end.netns) ?? []), end.ifname]);
      }
    }
    for (const [ns, names] of perNs) assert.equal(new Set(names).size, names.length, `${ns}: ${names.join(', ')}`);
    assert.equal(nat(a, 'headquarters-building-a-nat').lan.ifname, 'br-lan');
  });
});

describe('NAT behaviour names', () => {
  test('the classic names are RFC 4787 pairs', () => {
    assert.deepEqual(CLASSIC, {
      'full-cone': { mapping: 'endpoint-independent', filtering: 'endpoint-independent' },
      'restricted-cone': { mapping: 'endpoint-independent', filtering: 'address-dependent' },
      'port-restricted-cone': { mapping: 'endpoint-independent', filtering: 'address-and-port-dependent' },
      symmetric: { mapping: 'address-and-port-dependent', filtering: 'address-and-port-dependent' },
    });
    for (const t of NAT_TYPES) assert.equal(classicName(CLASSIC[t].mapping, CLASSIC[t].filtering), t);
    assert.equal(classicName('address-dependent', 'endpoint-independent'), undefined);
    assert.equal(describeBehaviour('endpoint-independent', 'address-dependent'), 'EIM+ADF (restricted-cone)');
    assert.equal(describeBehaviour('address-and-port-dependent', 'address-and-port-dependent'), 'APDM+APDF (symmetric)');
    assert.equal(describeBehaviour('address-dependent', 'endpoint-independent'), 'ADM+EIF');
  });

  test('each type resolves to its pair, with defaults for everything else', () => {
    for (const t of NAT_TYPES as readonly ClassicNatType[]) {
      const b = nat(lab(`name: t\nsites:\n  - { name: a, nat: { type: ${t} }, nodes: [{ name: a1 }] }\n`), 'a-nat').behaviour;
      assert.equal(b.declaredAs, t);
      assert.equal(b.mapping, CLASSIC[t].mapping);
      assert.equal(b.filtering, CLASSIC[t].filtering);
      assert.equal(b.hairpinning, false);
      assert.equal(b.portPreservation, CLASSIC[t].mapping === 'endpoint-independent', `${t}: port preservation defaults on for EIM only`);
      assert.equal(b.fixedPort, undefined);
      assert.deepEqual(b.forwards, []);
      assert.deepEqual(b.udpTimeouts, { unreplied: 30, stream: 120 });
      assert.equal(b.tcpMappingTimeout, 7440);
    }
  });

  test('a type with the matching mapping and filtering spelled out is accepted', () => {
    const b = nat(
      lab(
        `name: t\nsites:\n  - { name: a, nat: { type: symmetric, mapping: address-and-port-dependent, filtering: address-and-port-dependent }, nodes: [{ name: a1 }] }\n`,
      ),
      'a-nat',
    ).behaviour;
    assert.equal(b.declaredAs, 'symmetric');
  });

  test('forwards default to-port to port', () => {
    const b = nat(
      lab(`name: t\nsites:\n  - { name: a, nat: { type: full-cone, forwards: [{ protocol: udp, port: 5000, to: a1 }] }, nodes: [{ name: a1 }] }\n`),
      'a-nat',
    ).behaviour;
    assert.deepEqual(b.forwards, [{ protocol: 'udp', port: 5000, to: 'a1', toAddress: '10.0.1.1', toPort: 5000, public: false }]);
  });
});
