// The NAT compiler's address pools, port allocation, port ranges and blocks, quotas and
// conntrack timers (nat/allocate.ts, nat/compile.ts), and how the lab file resolves them
// (lab/resolve-nat-ports.ts): text-level checks of each behaviour, and (as root, with nft
// installed) `nft -c` of every ruleset inside a throwaway network namespace.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, test } from 'node:test';
import { NFT, nftRejects } from '../support/nft-check.js';
import type { Nat } from '../../src/lab/model.js';
import { parseLab } from '../../src/lab/resolve.js';
import { FLUSH_LEARNED_STATE, compileNatRuleset, snatStatements } from '../../src/nat/compile.js';

/** The NAT of a one-site lab with three nodes (10.0.1.1-3) whose `nat:` is the given flow mapping. */
function natOf(natYaml: string, nodes = '[{ name: a1 }, { name: a2 }, { name: a3 }]'): Nat {
  return parseLab(`name: t\nsites:\n  - { name: a, nat: ${natYaml}, nodes: ${nodes} }\n`, 't.yaml').nats[0]!;
}

function chain(text: string, name: string): string[] {
  const lines = text.split('\n');
  const start = lines.indexOf(`\tchain ${name} {`);
  if (start < 0) return [];
  return lines.slice(start + 1, lines.indexOf('\t}', start)).map((l) => l.trim());
}

/** The body of a set or map declaration (its lines, tabs stripped). */
function declaration(text: string, kind: 'set' | 'map', name: string): string[] {
  const lines = text.split('\n');
  const start = lines.indexOf(`\t${kind} ${name} {`);
  assert.ok(start >= 0, `no ${kind} ${name}`);
  return lines.slice(start + 1, lines.indexOf('\t}', start)).map((l) => l.trim());
}

const TCPUDP = 'meta l4proto { tcp, udp }';
const OUTIF = '"ve-a-nat-inet"';
const LAN = '10.0.1.0/24';

describe('outside address pools', () => {
  test("outside: N plans N addresses from .100 up, all on the uplink; the first is the NAT's own", () => {
    const nat = natOf('{ type: full-cone, outside: 3 }');
    assert.equal(nat.outside.address, '100.64.1.100');
    assert.deepEqual(nat.outside.pool, ['100.64.1.100', '100.64.1.101', '100.64.1.102']);
  });

  test('a listed pool is taken as given; the uplink address is its first unless the lab names another of them', () => {
    const nat = natOf('{ type: full-cone, outside: [100.64.1.50, 100.64.1.60] }');
    assert.deepEqual(nat.outside.pool, ['100.64.1.50', '100.64.1.60']);
    assert.equal(nat.outside.address, '100.64.1.50');
    const named = parseLab(
      'name: t\nsites:\n  - { name: a, uplink: { address: 100.64.1.60 }, nat: { type: full-cone, outside: [100.64.1.50, 100.64.1.60] }, nodes: [{ name: a1 }] }\n',
      't.yaml',
    ).nats[0]!;
    assert.deepEqual(named.outside.pool, ['100.64.1.60', '100.64.1.50']);
  });

  test("a child NAT's pool lies on its parent's LAN, after the parent's nodes", () => {
    const lab = parseLab(
      'name: t\nsites:\n  - { name: isp, nat: { type: full-cone }, nodes: [{ name: n1 }] }\n  - { name: home, upstream: isp, nat: { type: full-cone, outside: 2 }, nodes: [{ name: pc }] }\n',
      't.yaml',
    );
    const home = lab.nats[1]!;
    assert.deepEqual(home.outside.pool, ['10.0.1.1', '10.0.1.3']);
    assert.equal(lab.nodes.find((n) => n.name === 'n1')!.link.address, '10.0.1.2');
  });

  test("paired: the lab's inside addresses are dealt round-robin, one rule per outside address; others by a hash of the inside address", () => {
    const nat = natOf('{ type: symmetric, outside: 2 }');
    assert.equal(nat.behaviour.pooling, 'paired');
    assert.deepEqual(nat.behaviour.assignments, [
      { inside: '10.0.1.1', outside: '100.64.1.100' },
      { inside: '10.0.1.2', outside: '100.64.1.101' },
      { inside: '10.0.1.3', outside: '100.64.1.100' },
    ]);
    assert.deepEqual(snatStatements(nat), [
      'ip saddr { 10.0.1.1, 10.0.1.3 } snat ip to 100.64.1.100:1024-65535 fully-random',
      'ip saddr { 10.0.1.2 } snat ip to 100.64.1.101:1024-65535 fully-random',
      'snat ip to jhash ip saddr mod 2 seed 0x706f6f map { 0 : 100.64.1.100, 1 : 100.64.1.101 } : 1024-65535 fully-random',
    ]);
    const text = compileNatRuleset(nat);
    // Other protocols follow the same pairs.
    assert.ok(chain(text, 'srcnat').includes(`oifname ${OUTIF} ip saddr ${LAN} ip saddr { 10.0.1.2 } snat ip to 100.64.1.101`));
    // Inbound traffic to any pool address is the NAT's.
    assert.ok(chain(text, 'dstnat').includes(`iifname ${OUTIF} ip daddr { 100.64.1.100, 100.64.1.101 } jump inbound`));
    assert.ok(chain(text, 'learn_outbound')[1]!.includes('ip saddr { 100.64.1.100, 100.64.1.101 } ct direction original'));
  });

  test('arbitrary: a random outside address per new mapping; a mapped endpoint reuses its mapping from @endpoints', () => {
    const nat = natOf('{ type: full-cone, outside: 3, pooling: arbitrary }');
    assert.deepEqual(nat.behaviour.assignments, []);
    const st = snatStatements(nat);
    assert.equal(st[0], 'meta l4proto . ip saddr . th sport @endpoints snat ip to meta l4proto . ip saddr . th sport map @endpoints');
    assert.ok(
      st.slice(1).every((s) => s.includes('snat ip to numgen random mod 3 map { 0 : 100.64.1.100, 1 : 100.64.1.101, 2 : 100.64.1.102 }')),
      st.join('\n'),
    );
    const learned = chain(compileNatRuleset(nat), 'learn_sent_original');
    assert.ok(
      learned.includes(
        'meta l4proto udp ct status assured update @endpoints { meta l4proto . ct original ip saddr . ct original proto-src timeout 120s : ip saddr . th sport }',
      ),
      learned.join('\n'),
    );
  });

  test('one address: no pool rules, no @endpoints learned', () => {
    const text = compileNatRuleset(natOf('{ type: full-cone }'));
    assert.ok(!text.includes('update @endpoints'));
    assert.ok(!text.includes('numgen'));
    // declared all the same, so that one flush command fits every NAT labctl built
    for (const what of ['map endpoints', 'set address_quota', 'set taken']) assert.ok(text.includes(`\t${what} {`), what);
    for (const line of FLUSH_LEARNED_STATE.trim().split('\n')) assert.match(line, /^flush (map|set) ip labctl \w+$/);
  });
});

describe('port allocation', () => {
  test('sequential: the next port of the range per new mapping, through an index -> port map', () => {
    const nat = natOf('{ type: full-cone, port-allocation: sequential, ports: 20000-20099 }');
    assert.deepEqual(snatStatements(nat), [
      'meta l4proto . ip saddr . th sport @endpoints snat ip to meta l4proto . ip saddr . th sport map @endpoints',
      'snat ip to 100.64.1.100:numgen inc mod 100 map @ports_20000_20099',
    ]);
    const map = declaration(compileNatRuleset(nat), 'map', 'ports_20000_20099');
    assert.equal(map[0], 'typeof numgen inc mod 100 : udp sport');
    const elements = map[1]!.replace(/^elements = \{ | \}$/g, '').split(', ');
    assert.equal(elements.length, 100);
    assert.deepEqual([elements[0], elements[99]], ['0 : 20000', '99 : 20099']);
  });

  test('sequential under APDM: a new port per flow, no reuse', () => {
    const nat = natOf('{ type: symmetric, port-allocation: sequential }');
    assert.deepEqual(snatStatements(nat), ['snat ip to 100.64.1.100:numgen inc mod 64512 map @ports_1024_65535']);
    assert.ok(!compileNatRuleset(nat).includes('update @endpoints'));
  });

  test('random under EIM in the default range: the hashed port (as port-preservation: false)', () => {
    const a = natOf('{ type: full-cone, port-allocation: random }');
    const b = natOf('{ type: full-cone, port-preservation: false }');
    assert.deepEqual(snatStatements(a), snatStatements(b));
    assert.equal(a.behaviour.portAllocation, 'random');
    assert.equal(a.behaviour.portPreservation, false);
  });

  test('a port range: random takes a free port of it (the kernel picks, @endpoints keeps it); preserve keeps in-range ports and picks in the range otherwise', () => {
    const random = natOf('{ type: port-restricted-cone, port-allocation: random, ports: 30000-30999 }');
    assert.deepEqual(snatStatements(random), [
      'meta l4proto . ip saddr . th sport @endpoints snat ip to meta l4proto . ip saddr . th sport map @endpoints',
      'snat ip to 100.64.1.100:30000-30999 fully-random',
    ]);
    const adm = natOf('{ mapping: address-dependent, filtering: address-dependent, ports: 30000-30999 }');
    assert.deepEqual(snatStatements(adm), [
      'meta l4proto . ip saddr . th sport . ip daddr @endpoints snat ip to meta l4proto . ip saddr . th sport . ip daddr map @endpoints',
      'snat ip to 100.64.1.100:30000-30999 fully-random',
    ]);
    // The learned mappings are kept: the ruleset learns @endpoints for it.
    assert.match(compileNatRuleset(random), /update @endpoints/);
    const preserve = natOf('{ type: full-cone, ports: 30000-30999 }');
    assert.deepEqual(snatStatements(preserve), [
      'meta l4proto . th sport @taken meta l4proto . th sport . ip saddr . th sport != @owners snat ip to 100.64.1.100:jhash ip saddr . th sport mod 1000 seed 0x6c6162 map @ports_30000_30999',
      'snat ip to 100.64.1.100:30000-30999',
    ]);
    const apdm = natOf('{ type: symmetric, ports: 30000-30999 }');
    assert.deepEqual(snatStatements(apdm), ['snat ip to 100.64.1.100:30000-30999 fully-random']);
  });

  test('the default range needs no map: hashed ports keep the three-seed form', () => {
    for (const yaml of ['{ type: full-cone }', '{ type: full-cone, port-allocation: random }', '{ type: symmetric }']) {
      assert.ok(!compileNatRuleset(natOf(yaml)).includes('map ports_'), yaml);
    }
  });
});

describe('port blocks', () => {
  test('each inside address gets its blocks as one range, dealt over the outside addresses; others are dropped', () => {
    const nat = natOf('{ type: full-cone, outside: 2, port-block: { size: 100, max-blocks: 2 }, ports: 10000-19999, port-allocation: sequential }');
    assert.deepEqual(nat.behaviour.portBlock, { size: 100, maxBlocks: 2 });
    assert.deepEqual(nat.behaviour.assignments, [
      { inside: '10.0.1.1', outside: '100.64.1.100', ports: { low: 10000, high: 10199 } },
      { inside: '10.0.1.2', outside: '100.64.1.101', ports: { low: 10000, high: 10199 } },
      { inside: '10.0.1.3', outside: '100.64.1.100', ports: { low: 10200, high: 10399 } },
    ]);
    assert.deepEqual(snatStatements(nat), [
      'meta l4proto . ip saddr . th sport @endpoints snat ip to meta l4proto . ip saddr . th sport map @endpoints',
      'ip saddr 10.0.1.1 snat ip to 100.64.1.100:numgen inc mod 200 map @ports_10000_10199',
      'ip saddr 10.0.1.2 snat ip to 100.64.1.101:numgen inc mod 200 map @ports_10000_10199',
      'ip saddr 10.0.1.3 snat ip to 100.64.1.100:numgen inc mod 200 map @ports_10200_10399',
      'drop',
    ]);
    const text = compileNatRuleset(nat);
    assert.equal(text.match(/^\tmap ports_/gm)?.length, 2, 'one map per distinct range');
    assert.ok(chain(text, 'srcnat').includes(`oifname ${OUTIF} ip saddr ${LAN} ip saddr 10.0.1.3 snat ip to 100.64.1.100`));
  });

  test("within a block: EIM keeps the kernel's choice in the block; APDM takes a random port of the block", () => {
    const eim = natOf('{ type: full-cone, port-block: { size: 512 } }');
    assert.deepEqual(snatStatements(eim).slice(0, 2), [
      'ip saddr 10.0.1.1 meta l4proto . th sport @taken meta l4proto . th sport . ip saddr . th sport != @owners snat ip to 100.64.1.100:jhash ip saddr . th sport mod 512 seed 0x6c6162 map @ports_1024_1535',
      'ip saddr 10.0.1.1 snat ip to 100.64.1.100:1024-1535',
    ]);
    const apdm = natOf('{ type: symmetric, port-block: { size: 64 } }');
    assert.deepEqual(snatStatements(apdm), [
      'ip saddr 10.0.1.1 snat ip to 100.64.1.100:1024-1087 fully-random',
      'ip saddr 10.0.1.2 snat ip to 100.64.1.100:1088-1151 fully-random',
      'ip saddr 10.0.1.3 snat ip to 100.64.1.100:1152-1215 fully-random',
      'drop',
    ]);
  });

  test('the NATs behind a NAT with blocks get blocks for every outside address they have', () => {
    const lab = parseLab(
      'name: t\nsites:\n  - { name: cgn, nat: { type: full-cone, port-block: { size: 1000 } }, nodes: [{ name: n1 }] }\n' +
        '  - { name: home, upstream: cgn, nat: { type: full-cone, outside: 2 }, nodes: [{ name: pc }] }\n',
      't.yaml',
    );
    assert.deepEqual(
      lab.nats[0]!.behaviour.assignments.map((a) => a.inside),
      ['10.0.1.1', '10.0.1.2', '10.0.1.3'],
    );
  });
});

describe('quota', () => {
  test('EIM: a flow of an inside address past its quota is dropped, unless it belongs to a mapping already made', () => {
    const nat = natOf('{ type: full-cone, quota: 64 }');
    const forward = chain(compileNatRuleset(nat), 'forward_filter');
    const rule = `iifname "br-lan" oifname ${OUTIF} ct state new ${TCPUDP} meta l4proto . ip saddr . th sport != @endpoints add @address_quota { ip saddr ct count over 64 } drop`;
    assert.ok(forward.includes(rule), forward.join('\n'));
    // before the rule that lets LAN traffic out, after established flows
    assert.ok(forward.indexOf(rule) < forward.indexOf(`iifname "br-lan" oifname ${OUTIF} accept`));
    assert.ok(forward.indexOf('ct state established,related accept') < forward.indexOf(rule));
    // @endpoints is learned (for the quota) but not used to remake mappings
    assert.ok(compileNatRuleset(nat).includes('update @endpoints'));
    assert.ok(!snatStatements(nat).some((s) => s.includes('@endpoints')));
  });

  test('APDM: every new flow is a new mapping and counts', () => {
    const forward = chain(compileNatRuleset(natOf('{ type: symmetric, quota: 10 }')), 'forward_filter');
    assert.ok(forward.includes(`iifname "br-lan" oifname ${OUTIF} ct state new ${TCPUDP} add @address_quota { ip saddr ct count over 10 } drop`));
  });

  test('ADM: a mapping is per inside endpoint and remote address', () => {
    const text = compileNatRuleset(natOf('{ mapping: address-dependent, filtering: address-dependent, quota: 10 }'));
    assert.ok(chain(text, 'forward_filter').some((r) => r.includes('meta l4proto . ip saddr . th sport . ip daddr != @endpoints add @address_quota')));
    assert.equal(declaration(text, 'map', 'endpoints')[0], 'type inet_proto . ipv4_addr . inet_service . ipv4_addr : ipv4_addr . inet_service');
  });

  test('no quota: no rule', () => {
    assert.ok(!compileNatRuleset(natOf('{ type: full-cone }')).includes('add @address_quota'));
  });
});

describe('conntrack timers', () => {
  test('ct timeout objects for TCP (established, transitory states) and UDP, set on every new flow', () => {
    const nat = natOf('{ type: full-cone, tcp-timeouts: { established: 1200, transitory: 30 }, udp-timeouts: { unreplied: 20, stream: 90 } }');
    assert.equal(nat.behaviour.tcpMappingTimeout, 1200);
    assert.equal(nat.behaviour.tcpTransitoryTimeout, 30);
    const text = compileNatRuleset(nat);
    assert.ok(text.includes('\t\tpolicy = { established: 1200, syn_sent: 30, syn_recv: 30, fin_wait: 30, close_wait: 30, last_ack: 30, time_wait: 30 }'));
    assert.ok(text.includes('\t\tpolicy = { unreplied: 20, replied: 90 }'));
    assert.deepEqual(chain(text, 'timeouts'), [
      'type filter hook prerouting priority filter; policy accept;',
      'ct state new meta l4proto tcp ct timeout set "tcp_timeouts"',
      'ct state new meta l4proto udp ct timeout set "udp_timeouts"',
    ]);
    // the learned TCP mappings live as long as the established timer
    assert.ok(chain(text, 'learn_sent_original').some((r) => r.startsWith('meta l4proto tcp update @mappings') && r.includes('timeout 1200s')));
  });

  test('defaults: RFC 5382 (7440 s established, 240 s transitory); tcp-mapping-timeout is the established timer', () => {
    const d = natOf('{ type: full-cone }').behaviour;
    assert.deepEqual([d.tcpMappingTimeout, d.tcpTransitoryTimeout], [7440, 240]);
    assert.equal(natOf('{ type: full-cone, tcp-mapping-timeout: 600 }').behaviour.tcpMappingTimeout, 600);
  });
});

describe('nft syntax check of the new behaviours (nft -c in a throwaway network namespace)', () => {
  const skip = !existsSync(NFT)
    ? `${NFT} is not installed`
    : process.getuid?.() !== 0
      ? 'needs root (nft -c takes CAP_NET_ADMIN inside `unshare --net`)'
      : false;
  const CASES = [
    '{ type: full-cone, outside: 3 }',
    '{ type: restricted-cone, outside: 3, pooling: arbitrary, hairpinning: true }',
    '{ type: symmetric, outside: 2, pooling: arbitrary }',
    '{ type: full-cone, port-allocation: sequential }',
    '{ type: symmetric, port-allocation: sequential, ports: 40000-40999 }',
    '{ mapping: address-dependent, filtering: endpoint-independent, port-allocation: sequential, quota: 20 }',
    '{ type: full-cone, ports: 30000-30999, hairpinning: true }',
    '{ type: full-cone, outside: 2, port-block: { size: 256, max-blocks: 2 }, quota: 300, hairpinning: true }',
    '{ mapping: address-dependent, filtering: address-dependent, port-block: { size: 128 } }',
    '{ type: symmetric, port-block: { size: 64 }, tcp-timeouts: { established: 1200, transitory: 30 } }',
  ];

  test('every ruleset passes nft -c', { skip }, async () => {
    assert.deepEqual(await nftRejects(CASES.map((yaml) => ({ label: yaml, text: compileNatRuleset(natOf(yaml)) }))), []);
  });
});

describe('net status: outside ports each inside address holds', () => {
  test("counted from a NAT's conntrack entries, each outside port once", async () => {
    const { parseConntrackListing } = await import('../../src/conntrack/parse.js');
    const { portsHeld } = await import('../../src/report/net-status.js');
    const listing = [
      // two flows of one EIM mapping (one port), and a second mapping of the same inside address
      'udp      17 29 src=10.0.1.1 dst=100.64.9.1 sport=4000 dport=3478 src=100.64.9.1 dst=100.64.1.100 sport=3478 dport=4000 mark=0 use=1',
      'udp      17 29 src=10.0.1.1 dst=100.64.9.2 sport=4000 dport=3478 src=100.64.9.2 dst=100.64.1.100 sport=3478 dport=4000 mark=0 use=1',
      'tcp      6 7430 ESTABLISHED src=10.0.1.1 dst=100.64.9.1 sport=5000 dport=80 src=100.64.9.1 dst=100.64.1.101 sport=80 dport=1030 [ASSURED] mark=0 use=1',
      // an inbound flow DNATed to an inside endpoint
      'udp      17 29 src=100.64.9.1 dst=100.64.1.100 sport=3478 dport=6000 src=10.0.1.2 dst=100.64.9.1 sport=6000 dport=3478 mark=0 use=1',
      // not translated, and not TCP or UDP: not counted
      'udp      17 29 src=10.0.1.100 dst=10.0.1.2 sport=53 dport=53 [UNREPLIED] src=10.0.1.2 dst=10.0.1.100 sport=53 dport=53 mark=0 use=1',
      'unknown  2 593 src=10.0.1.100 dst=224.0.0.22 [UNREPLIED] src=224.0.0.22 dst=10.0.1.100 mark=0 use=1',
    ].join('\n');
    assert.deepEqual(portsHeld(parseConntrackListing(listing)), { '10.0.1.1': 2, '10.0.1.2': 1 });
  });
});
