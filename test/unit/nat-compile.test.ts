// compileNatRuleset: each RFC 4787 behaviour becomes the nftables rules that make it.
// Text-level checks for every behaviour, and (as root, with nft installed) a syntax
// check of every compiled ruleset by `nft -c` inside a throwaway network namespace.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import { loadLab } from '../../src/lab/load.js';
import type { Nat } from '../../src/lab/model.js';
import { parseLab } from '../../src/lab/resolve.js';
import { NAT_TABLE, compileNatRuleset, natOptionalSysctls, natSysctls, snatStatements } from '../../src/nat/compile.js';

const OUT = '100.64.1.100';
const OUTIF = '"ve-a-nat-inet"';
const LANIF = '"ve-a-nat-node"';
const LAN = '10.0.1.0/24';

/** The NAT of a one-site lab whose `nat:` is the given flow mapping. */
function natOf(natYaml: string, nodes = '[{ name: a1 }]'): Nat {
  const lab = parseLab(`name: t\nsites:\n  - { name: a, nat: ${natYaml}, nodes: ${nodes} }\n`, 't.yaml');
  return lab.nats[0]!;
}

/** The rule lines of one chain (without its braces), tabs stripped. */
function chain(text: string, name: string): string[] {
  const lines = text.split('\n');
  const start = lines.indexOf(`\tchain ${name} {`);
  if (start < 0) return [];
  const end = lines.indexOf('\t}', start);
  assert.ok(end > start, `chain ${name} is not closed`);
  return lines.slice(start + 1, end).map((l) => l.trim());
}

const srcnat = (text: string) => chain(text, 'srcnat');
/** The allocate chain's rules: the mapping statements, each with the protocol match. */
const allocate = (text: string) => chain(text, 'allocate');
const TCPUDP = 'meta l4proto { tcp, udp }';
const inbound = (text: string) => chain(text, 'inbound');
const MAPPED = 'dnat ip to ip daddr . meta l4proto . th dport map @mappings';
const PEERS = 'ip daddr . meta l4proto . th dport . ip saddr @peers';

const MAPPINGS: Record<string, string> = {
  'eim-preserving': 'mapping: endpoint-independent, port-preservation: true',
  'eim-hashed': 'mapping: endpoint-independent, port-preservation: false',
  adm: 'mapping: address-dependent',
  apdm: 'mapping: address-and-port-dependent',
  'fixed-port': 'mapping: endpoint-independent, fixed-port: 54321',
};
const FILTERINGS: Record<string, string> = {
  eif: 'endpoint-independent',
  adf: 'address-dependent',
  apdf: 'address-and-port-dependent',
};
const FORWARDS = '[{ protocol: udp, port: 5000, to: a1 }, { protocol: tcp, port: 8080, to: a1, to-port: 80, public: true }]';

/** Every mapping x filtering x hairpinning, each with a filtered and a public forward. */
const matrix: { label: string; nat: Nat }[] = [];
for (const [m, mYaml] of Object.entries(MAPPINGS)) {
  for (const [f, fDep] of Object.entries(FILTERINGS)) {
    for (const hairpin of [false, true]) {
      matrix.push({
        label: `${m}+${f}${hairpin ? '+hairpin' : ''}`,
        nat: natOf(`{ ${mYaml}, filtering: ${fDep}, hairpinning: ${hairpin}, forwards: ${FORWARDS} }`),
      });
    }
  }
}

describe('mapping: the allocate chain', () => {
  test('srcnat sends new TCP and UDP flows through the allocate chain', () => {
    for (const { label, nat } of matrix) {
      const text = compileNatRuleset(nat);
      assert.ok(srcnat(text).includes(`oifname ${OUTIF} ip saddr ${LAN} ${TCPUDP} jump allocate`), label);
      assert.deepEqual(
        allocate(text),
        snatStatements(nat).map((st) => `${TCPUDP} ${st}`),
        label,
      );
    }
  });

  test('EIM with port preservation: snat to the outside address, no port', () => {
    const n = natOf('{ type: full-cone }');
    assert.equal(n.behaviour.portPreservation, true);
    assert.equal(snatStatements(n).at(-1), `snat ip to ${OUT}`);
    const rules = allocate(compileNatRuleset(n));
    assert.ok(rules.includes(`${TCPUDP} snat ip to ${OUT}`), rules.join('\n'));
  });

  test('EIM with port preservation: an inside port already mapped for another endpoint gets a hashed port (no port overloading)', () => {
    const n = natOf('{ type: full-cone }', '[{ name: a1 }, { name: a2 }]');
    const owned = 'meta l4proto . th sport @taken meta l4proto . th sport . ip saddr . th sport != @owners';
    const hash = (seed: string) => `jhash ip saddr . th sport mod 64512 seed ${seed} offset 1024`;
    const statements = snatStatements(n);
    assert.deepEqual(statements, [
      ...['0x6c6162', '0x6e6174', '0x6d6170'].map((seed) => `${owned} ${hash(seed)} & 0xff >= 4 snat ip to ${OUT}:${hash(seed)}`),
      `snat ip to ${OUT}`,
    ]);
    const text = compileNatRuleset(n);
    const rules = allocate(text);
    for (const st of statements) assert.ok(rules.includes(`${TCPUDP} ${st}`), st);
    // The owner of each outside port is learned with the mapping, from its first packet on.
    const learned = chain(text, 'learn_sent_original');
    assert.ok(learned.some((r) => r.includes('update @owners { meta l4proto . th sport . ct original ip saddr . ct original proto-src ')));
    assert.ok(learned.some((r) => r.includes('update @taken { meta l4proto . th sport ')));
  });

  test('only NATs that keep inside ports learn owners', () => {
    for (const yaml of [
      '{ type: symmetric }',
      '{ type: full-cone, port-preservation: false }',
      '{ mapping: address-dependent, filtering: endpoint-independent }',
      '{ type: full-cone, fixed-port: 54321 }',
    ]) {
      const text = compileNatRuleset(natOf(yaml));
      assert.ok(!text.includes('update @owners'), yaml);
      assert.ok(!text.includes('update @taken'), yaml);
      assert.ok(!allocate(text).some((r) => r.includes('@owners')), yaml);
      // declared all the same, so that one flush command fits every NAT labctl built
      assert.ok(text.includes('\tset owners {'), yaml);
    }
  });

  test('EIM without port preservation: port = jhash(inside addr . inside port), never below 1024', () => {
    const n = natOf('{ type: port-restricted-cone, port-preservation: false }');
    const hash = (seed: string) => `jhash ip saddr . th sport mod 64512 seed ${seed} offset 1024`;
    assert.equal(n.behaviour.portAllocation, 'random');
    assert.deepEqual(snatStatements(n), [
      `${hash('0x6c6162')} & 0xff >= 4 snat ip to ${OUT}:${hash('0x6c6162')}`,
      `${hash('0x6e6174')} & 0xff >= 4 snat ip to ${OUT}:${hash('0x6e6174')}`,
      `${hash('0x6d6170')} & 0xff >= 4 snat ip to ${OUT}:${hash('0x6d6170')}`,
      `snat ip to ${OUT}`,
    ]);
    assert.ok(!snatStatements(n).join('\n').includes('daddr'), 'endpoint-independent: the remote does not enter the hash');
    const rules = allocate(compileNatRuleset(n));
    for (const st of snatStatements(n)) assert.ok(rules.includes(`${TCPUDP} ${st}`), rules.join('\n'));
  });

  test('ADM: the hash includes the remote address', () => {
    const n = natOf('{ mapping: address-dependent, filtering: address-dependent }');
    assert.equal(snatStatements(n).length, 4);
    for (const st of snatStatements(n).slice(0, 3))
      assert.match(st, /^jhash ip saddr \. th sport \. ip daddr mod 64512 seed 0x[0-9a-f]+ offset 1024 & 0xff >= 4 snat ip to /);
  });

  test('APDM: a fresh random port per flow', () => {
    const n = natOf('{ type: symmetric }');
    assert.deepEqual(snatStatements(n), [`snat ip to ${OUT}:1024-65535 fully-random`]);
    assert.equal(n.behaviour.portPreservation, false);
  });

  test('fixed port: every flow leaves from OUT:PORT', () => {
    const n = natOf('{ type: full-cone, fixed-port: 54321 }');
    assert.deepEqual(snatStatements(n), [`snat ip to ${OUT}:54321`]);
    assert.ok(allocate(compileNatRuleset(n)).includes(`${TCPUDP} snat ip to ${OUT}:54321`));
  });

  test('non-TCP/UDP traffic (ICMP) is masqueraded to the outside address', () => {
    for (const { label, nat } of matrix) {
      assert.ok(srcnat(compileNatRuleset(nat)).includes(`oifname ${OUTIF} ip saddr ${LAN} snat ip to ${OUT}`), label);
    }
  });
});

describe('filtering: the inbound chain', () => {
  test('EIF: anyone reaches a mapped port, no @peers check', () => {
    const rules = inbound(compileNatRuleset(natOf('{ type: full-cone }')));
    assert.deepEqual(rules, [`meta l4proto { tcp, udp } ${MAPPED}`]);
  });

  test('ADF: only remote addresses the mapping has sent to', () => {
    const rules = inbound(compileNatRuleset(natOf('{ type: restricted-cone }')));
    assert.deepEqual(rules, [`meta l4proto { tcp, udp } ${PEERS} ${MAPPED}`]);
  });

  test('APDF: no DNAT from the learned map; only conntrack replies get in', () => {
    for (const t of ['port-restricted-cone', 'symmetric']) {
      const text = compileNatRuleset(natOf(`{ type: ${t} }`));
      const rules = inbound(text);
      assert.ok(!rules.some((r) => r.includes('@mappings')), rules.join('\n'));
      assert.ok(!rules.some((r) => r.includes('dnat')), rules.join('\n'));
      assert.deepEqual(rules, ['# address-and-port-dependent filtering: no new inbound flow is admitted']);
    }
  });

  test('the dstnat hook sends traffic to the outside address through inbound', () => {
    for (const { label, nat } of matrix) {
      assert.ok(chain(compileNatRuleset(nat), 'dstnat').includes(`iifname ${OUTIF} ip daddr ${OUT} jump inbound`), label);
    }
  });
});

describe('static forwards', () => {
  const fwd = (natYaml: string) => inbound(compileNatRuleset(natOf(natYaml)));
  const UDP = 'meta l4proto udp th dport 5000';
  const TCP = 'meta l4proto tcp th dport 8080';

  test('EIF: forwards admit anyone', () => {
    const rules = fwd(`{ type: full-cone, forwards: ${FORWARDS} }`);
    assert.deepEqual(rules, [`${UDP} dnat ip to 10.0.1.1:5000`, `${TCP} dnat ip to 10.0.1.1:80`, `meta l4proto { tcp, udp } ${MAPPED}`]);
  });

  test('ADF: a non-public forward obeys the filtering; a public one does not', () => {
    const rules = fwd(`{ type: restricted-cone, forwards: ${FORWARDS} }`);
    assert.deepEqual(rules, [`${UDP} ${PEERS} dnat ip to 10.0.1.1:5000`, `${TCP} dnat ip to 10.0.1.1:80`, `meta l4proto { tcp, udp } ${PEERS} ${MAPPED}`]);
  });

  test('APDF: non-public forwards are omitted, public ones kept', () => {
    const rules = fwd(`{ type: symmetric, forwards: ${FORWARDS} }`);
    assert.deepEqual(rules, [`${TCP} dnat ip to 10.0.1.1:80`, '# address-and-port-dependent filtering: no new inbound flow is admitted']);
    assert.ok(!rules.some((r) => r.includes('dport 5000')));
  });

  test('the article: forwards of 54321 to port 12345 of the node, ahead of the learned mappings', () => {
    const article = loadLab('article');
    const c0 = inbound(compileNatRuleset(article.nats[0]!));
    assert.deepEqual(c0, [
      'meta l4proto udp th dport 54321 dnat ip to 10.0.1.1:12345',
      'meta l4proto tcp th dport 54321 dnat ip to 10.0.1.1:12345',
      `meta l4proto { tcp, udp } ${MAPPED}`,
    ]);
    const c1 = inbound(compileNatRuleset(article.nats[1]!));
    assert.deepEqual(c1, [
      `meta l4proto udp th dport 54321 ${PEERS} dnat ip to 10.0.2.1:12345`,
      `meta l4proto tcp th dport 54321 ${PEERS} dnat ip to 10.0.2.1:12345`,
      `meta l4proto { tcp, udp } ${PEERS} ${MAPPED}`,
    ]);
    assert.deepEqual(allocate(compileNatRuleset(article.nats[1]!)), [`${TCPUDP} snat ip to 100.64.2.100:54321`]);
  });
});

describe('hairpinning', () => {
  test('the hairpin chain and its hooks exist only when hairpinning is on', () => {
    for (const { label, nat } of matrix) {
      const text = compileNatRuleset(nat);
      const on = nat.behaviour.hairpinning;
      assert.equal(text.includes('\tchain hairpin {'), on, label);
      assert.equal(chain(text, 'dstnat').includes(`iifname ${LANIF} ip saddr ${LAN} ip daddr ${OUT} jump hairpin`), on, label);
      assert.equal(srcnat(text).includes(`oifname ${LANIF} ip saddr ${LAN} ct status dnat ${TCPUDP} jump allocate`), on, label);
      assert.equal(text.includes('jump hairpin'), on, label);
    }
  });

  test('hairpinned flows are DNATed by forwards and mappings, and SNATed like outbound ones', () => {
    const n = natOf(`{ type: symmetric, hairpinning: true, forwards: ${FORWARDS} }`);
    const text = compileNatRuleset(n);
    assert.deepEqual(chain(text, 'hairpin'), [
      'meta l4proto udp th dport 5000 dnat ip to 10.0.1.1:5000',
      'meta l4proto tcp th dport 8080 dnat ip to 10.0.1.1:80',
      `meta l4proto { tcp, udp } ${MAPPED}`,
    ]);
    assert.ok(srcnat(text).includes(`oifname ${LANIF} ip saddr ${LAN} ct status dnat ${TCPUDP} jump allocate`));
    assert.deepEqual(snatStatements(n), [`snat ip to ${OUT}:1024-65535 fully-random`]);
  });
});

describe('timeouts', () => {
  const learnChains = ['learn_sent_original', 'learn_sent_reply', 'learn_received_reply', 'learn_received_original'];

  test('learned mappings and peers are refreshed with conntrack’s own timeouts', () => {
    const n = natOf('{ type: restricted-cone, udp-timeouts: { unreplied: 17, stream: 171 }, tcp-mapping-timeout: 1717 }');
    const text = compileNatRuleset(n);
    for (const c of learnChains) {
      const rules = chain(text, c);
      // restricted cone keeps inside ports: @owners and @taken are learned beside @mappings and @peers
      assert.equal(rules.length, 12, c);
      const port = c.startsWith('learn_sent') ? 'th sport' : 'th dport';
      const outside = c.startsWith('learn_sent') ? 'ip saddr' : 'ip daddr';
      for (const [set, key] of [
        ['@mappings', `${outside} . meta l4proto . ${port}`],
        ['@owners', `meta l4proto . ${port}`],
        ['@taken', `meta l4proto . ${port}`],
        ['@peers', `${outside} . meta l4proto . ${port}`],
      ]) {
        const upd = (match: string, t: string) => rules.find((r) => r.startsWith(`${match} update ${set} { ${key}`) && r.includes(` timeout ${t}`));
        assert.ok(upd('meta l4proto udp ct status assured', '171s'), `${c} ${set}: assured UDP uses the stream timeout\n${rules.join('\n')}`);
        assert.ok(upd('meta l4proto udp ct status & assured == 0', '17s'), `${c} ${set}: unreplied UDP uses the unreplied timeout`);
        assert.ok(upd('meta l4proto tcp', '1717s'), `${c} ${set}: TCP uses the mapping timeout`);
      }
    }
    // The sets' own default timeout is the unreplied one.
    assert.equal(text.match(/^\t\ttimeout 17s$/gm)?.length, 5);
  });

  test('defaults: 30 s unreplied, 120 s stream, 7440 s TCP', () => {
    const text = compileNatRuleset(natOf('{ type: full-cone }'));
    const rules = chain(text, 'learn_sent_original');
    assert.ok(rules.some((r) => r.startsWith('meta l4proto udp ct status assured ') && r.includes('timeout 120s')));
    assert.ok(rules.some((r) => r.startsWith('meta l4proto udp ct status & assured == 0 ') && r.includes('timeout 30s')));
    assert.ok(rules.some((r) => r.startsWith('meta l4proto tcp ') && r.includes('timeout 7440s')));
  });

  test('a bridged LAN turns br_netfilter off in the NAT namespace, where the kernel has it', () => {
    assert.deepEqual(natOptionalSysctls(natOf('{ type: full-cone }')), {}, 'one node: no bridge');
    assert.deepEqual(natOptionalSysctls(natOf('{ type: full-cone, hairpinning: true }', '[{ name: a1 }, { name: a2 }]')), {
      'net.bridge.bridge-nf-call-iptables': '0',
      'net.bridge.bridge-nf-call-ip6tables': '0',
      'net.bridge.bridge-nf-call-arptables': '0',
    });
  });

  test('natSysctls sets forwarding and conntrack UDP timeouts', () => {
    assert.deepEqual(natSysctls(natOf('{ type: full-cone, udp-timeouts: { unreplied: 5, stream: 50 } }')), {
      'net.ipv4.ip_forward': '1',
      'net.netfilter.nf_conntrack_udp_timeout': '5',
      'net.netfilter.nf_conntrack_udp_timeout_stream': '50',
    });
  });
});

describe('ruleset structure', () => {
  test('starts with the atomic-replace idiom and has balanced braces', () => {
    for (const { label, nat } of matrix) {
      const text = compileNatRuleset(nat);
      const rules = text.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
      assert.deepEqual(rules.slice(0, 3), [`table ip ${NAT_TABLE}`, `delete table ip ${NAT_TABLE}`, `table ip ${NAT_TABLE} {`], label);
      assert.equal(NAT_TABLE, 'labctl');
      assert.ok(text.endsWith('}\n'), label);
      const opens = (text.match(/{/g) ?? []).length;
      const closes = (text.match(/}/g) ?? []).length;
      assert.equal(opens, closes, label);
    }
  });

  test('input and forward policies drop; the NAT hooks accept', () => {
    for (const { label, nat } of matrix) {
      const text = compileNatRuleset(nat);
      assert.equal(chain(text, 'input_filter')[0], 'type filter hook input priority filter; policy drop;', label);
      assert.equal(chain(text, 'forward_filter')[0], 'type filter hook forward priority filter; policy drop;', label);
      assert.equal(chain(text, 'dstnat')[0], 'type nat hook prerouting priority dstnat; policy accept;', label);
      assert.equal(chain(text, 'srcnat')[0], 'type nat hook postrouting priority srcnat; policy accept;', label);
      assert.ok(chain(text, 'forward_filter').includes(`iifname ${LANIF} oifname ${OUTIF} accept`), label);
    }
  });

  test('a bridged LAN uses br-lan as the inside interface; a child NAT its -up uplink', () => {
    const bridged = compileNatRuleset(natOf('{ type: full-cone, hairpinning: true }', '[{ name: a1 }, { name: a2 }]'));
    assert.ok(chain(bridged, 'forward_filter').includes(`iifname "br-lan" oifname ${OUTIF} accept`));
    assert.ok(chain(bridged, 'dstnat').includes(`iifname "br-lan" ip saddr ${LAN} ip daddr ${OUT} jump hairpin`));
    const lab = parseLab(
      'name: t\nsites:\n  - { name: isp, nat: { type: symmetric } }\n  - { name: home, upstream: isp, nat: { type: full-cone }, nodes: [{ name: pc }] }\n',
      't.yaml',
    );
    const home = compileNatRuleset(lab.nats[1]!);
    assert.ok(srcnat(home).includes('oifname "ve-home-nat-up" ip saddr 10.0.2.0/24 meta l4proto { tcp, udp } jump allocate'), srcnat(home).join('\n'));
    assert.ok(allocate(home).includes(`${TCPUDP} snat ip to 10.0.1.1`), allocate(home).join('\n'));
  });

  test('compiling is pure and deterministic', () => {
    for (const { label, nat } of matrix) {
      const before = structuredClone(nat);
      assert.equal(compileNatRuleset(nat), compileNatRuleset(structuredClone(nat)), label);
      assert.deepEqual(nat, before, label);
    }
  });
});

describe('nft syntax check (nft -c in a throwaway network namespace)', () => {
  const NFT = '/usr/sbin/nft';
  const isRoot = process.getuid?.() === 0;
  const skip = !existsSync(NFT)
    ? `${NFT} is not installed`
    : !isRoot
      ? 'needs root: nft -c needs CAP_NET_ADMIN, which this test only takes inside `unshare --net` (a throwaway namespace) when running as root'
      : false;

  test('every compiled ruleset passes nft -c', { skip }, async (t) => {
    const run = promisify(execFile);
    try {
      await run('unshare', ['--net', 'true']);
    } catch (e) {
      t.skip(`unshare --net is not possible here: ${(e as Error).message.split('\n')[0]}`);
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), 'labctl-nft-'));
    try {
      const article = loadLab('article');
      const cases = [
        ...matrix,
        ...article.nats.map((nat) => ({ label: `article ${nat.name}`, nat })),
        { label: 'bridged', nat: natOf('{ type: restricted-cone, hairpinning: true }', '[{ name: a1 }, { name: a2 }]') },
      ];
      const results = await Promise.all(
        cases.map(async ({ label, nat }, i) => {
          const file = join(dir, `${i}.nft`);
          writeFileSync(file, compileNatRuleset(nat));
          try {
            await run('unshare', ['--net', NFT, '-c', '-f', file]);
            return null;
          } catch (e) {
            const err = e as { stderr?: string; message: string };
            return `${label}: ${err.stderr || err.message}`;
          }
        }),
      );
      const failures = results.filter((r) => r !== null);
      assert.deepEqual(failures, [], failures.join('\n'));
      // Control: the check does reject a broken ruleset (a truncated address).
      const broken = join(dir, 'broken.nft');
      writeFileSync(broken, compileNatRuleset(article.nats[0]!).replace('ip daddr 100.64.1.100 jump inbound', 'ip daddr 100.64.1 jump inbound'));
      await assert.rejects(run('unshare', ['--net', NFT, '-c', '-f', broken]));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
