// The NAT profiles (lab/nat-profiles.ts): every value has a source or says why labctl chose
// it; each profile resolves to what it says and fields beside it override it; each one's
// ruleset passes `nft -c` (as root); `labctl nat profiles` lists every value; the README's
// "NAT profiles" section is what formatProfilesMarkdown() writes.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { NFT, nftRejects } from '../support/nft-check.js';
import type { Nat } from '../../src/lab/model.js';
import { isCited, NAT_PROFILE_NAMES, NAT_PROFILES, PROFILE_FIELDS } from '../../src/lab/nat-profiles.js';
import { parseLab } from '../../src/lab/resolve.js';
import { compileNatRuleset } from '../../src/nat/compile.js';
import { FIELD_KEYS, formatProfilesMarkdown, formatProfilesText, formatProfileValue } from '../../src/report/nat-profiles.js';

/** A site behind a NAT of that `nat:` with two nodes, and a home NAT behind it (as a CGN has). */
function natOf(natYaml: string): Nat {
  const lab = parseLab(
    `name: t\nsites:\n  - { name: a, nat: ${natYaml}, nodes: [{ name: a1 }, { name: a2 }] }\n  - { name: home, upstream: a, nat: { type: full-cone }, nodes: [{ name: pc }] }\n`,
    't.yaml',
  );
  return lab.nats[0]!;
}

const REQUIRED = [
  'linux-masquerade',
  'openwrt',
  'pfsense',
  'pfsense-static-port',
  'mikrotik-eim',
  'cgnat-rfc6888',
  'cgnat-port-blocks',
  'aws-nat-gateway',
  'aws-ec2-public-ip',
  'gcp-cloud-nat',
  'gcp-cloud-nat-eim',
  'azure-nat-gateway',
];

describe('the profile data', () => {
  test('has every profile the issue names', () => {
    for (const name of REQUIRED) assert.ok(NAT_PROFILES[name], name);
    assert.deepEqual([...NAT_PROFILE_NAMES], Object.keys(NAT_PROFILES));
  });

  test('every value has a source that says something, or the reason labctl chose it', () => {
    for (const p of Object.values(NAT_PROFILES)) {
      assert.ok(p.description.length > 10, p.name);
      for (const f of PROFILE_FIELDS) {
        const s = p.sources[f];
        assert.ok(s, `${p.name}.${f}: no source`);
        if (isCited(s)) {
          assert.ok(s.cite.title.length > 10 && s.says.length > 3, `${p.name}.${f}`);
          if (s.cite.url) assert.match(s.cite.url, /^https:\/\//, `${p.name}.${f}`);
        } else assert.ok(s.chosen.length > 10, `${p.name}.${f}: no reason given`);
        assert.notEqual(p.values[f], undefined, `${p.name}.${f}: no value`);
      }
      const v = p.values;
      assert.ok(v.udpStream >= v.udpUnreplied, p.name);
      assert.ok(v.ports.low >= 1 && v.ports.low <= v.ports.high && v.ports.high <= 65535, p.name);
      if (v.portAllocation === 'preserve') assert.equal(v.mapping, 'endpoint-independent', `${p.name}: preserve is EIM`);
      if (v.portBlock && v.quota !== null) assert.ok(v.quota >= v.portBlock.size, p.name);
      if (v.portBlock && v.outside > 1) assert.equal(v.pooling, 'paired', p.name);
    }
  });

  test('the carrier-grade NATs follow RFC 6888: paired pooling, a port limit or blocks, hairpinning', () => {
    for (const name of ['cgnat-rfc6888', 'cgnat-port-blocks']) {
      const v = NAT_PROFILES[name]!.values;
      assert.equal(v.pooling, 'paired');
      assert.ok(v.outside > 1);
      assert.ok(v.quota !== null || v.portBlock !== null);
      assert.equal(v.hairpinning, true);
      assert.equal(v.mapping, 'endpoint-independent');
    }
    assert.deepEqual(NAT_PROFILES['cgnat-port-blocks']!.values.portBlock, { size: 128, maxBlocks: 8 });
  });
});

describe('a lab naming a profile', () => {
  test("resolves to the profile's values", () => {
    for (const p of Object.values(NAT_PROFILES)) {
      const nat = natOf(`{ profile: ${p.name} }`);
      const b = nat.behaviour;
      const v = p.values;
      assert.equal(b.profile, p.name);
      assert.deepEqual(
        [b.mapping, b.filtering, b.hairpinning, b.portAllocation, b.udpTimeouts.unreplied, b.udpTimeouts.stream, b.tcpMappingTimeout, b.tcpTransitoryTimeout],
        [v.mapping, v.filtering, v.hairpinning, v.portAllocation, v.udpUnreplied, v.udpStream, v.tcpEstablished, v.tcpTransitory],
        p.name,
      );
      assert.equal(nat.outside.pool.length, v.outside, p.name);
      assert.equal(b.pooling, v.pooling, p.name);
      assert.deepEqual(b.ports, v.ports, p.name);
      assert.deepEqual(b.portBlock ?? null, v.portBlock, p.name);
      assert.equal(b.quota ?? null, v.quota, p.name);
      if (v.portBlock) {
        // a block for each of the two nodes and for the home NAT behind
        assert.equal(b.assignments.length, 3, p.name);
        for (const a of b.assignments) assert.equal(a.ports!.high - a.ports!.low + 1, v.portBlock.size * v.portBlock.maxBlocks, p.name);
      }
    }
  });

  test("fields beside the profile override it; the rest stays the profile's", () => {
    const b = natOf('{ profile: openwrt, udp-timeouts: { unreplied: 10 }, hairpinning: true }').behaviour;
    assert.deepEqual(b.udpTimeouts, { unreplied: 10, stream: 180 });
    assert.equal(b.hairpinning, true);
    assert.equal(b.tcpMappingTimeout, 7440);
    const aws = natOf('{ profile: aws-nat-gateway, outside: 8 }');
    assert.equal(aws.outside.pool.length, 8);
    assert.equal(aws.behaviour.mapping, 'address-and-port-dependent');
  });

  test('a type beside a profile replaces its mapping and filtering; a preserved port the new mapping cannot keep gives way', () => {
    const b = natOf('{ profile: linux-masquerade, type: symmetric }').behaviour;
    assert.deepEqual([b.mapping, b.filtering], ['address-and-port-dependent', 'address-and-port-dependent']);
    assert.equal(b.portAllocation, 'random');
    assert.equal(b.udpTimeouts.unreplied, 30);
    const eim = natOf('{ profile: pfsense, mapping: endpoint-independent }').behaviour;
    assert.deepEqual([eim.mapping, eim.filtering, eim.portAllocation], ['endpoint-independent', 'address-and-port-dependent', 'random']);
  });

  test('an unknown profile names the valid ones', () => {
    assert.throws(
      () => natOf('{ profile: fritzbox }'),
      (e: Error) => e.message.includes(`sites[0].nat.profile: unknown profile "fritzbox": it must be one of ${NAT_PROFILE_NAMES.join(', ')}`),
    );
  });
});

describe('listing', () => {
  test('labctl nat profiles shows every field of every profile with its value and source', () => {
    const text = formatProfilesText();
    for (const p of Object.values(NAT_PROFILES)) {
      const block = text.slice(text.indexOf(`${p.name}: `));
      for (const f of PROFILE_FIELDS) {
        const s = p.sources[f];
        const line = block.split('\n').find((l) => l.trimStart().startsWith(`${FIELD_KEYS[f]} `));
        assert.ok(line, `${p.name} ${f}`);
        assert.ok(line.includes(formatProfileValue(f, p.values[f])), line);
        assert.ok(line.includes(isCited(s) ? s.says : `chosen: ${s.chosen}`), line);
      }
    }
  });

  test("README's NAT profiles section holds the generated table, sources and list", () => {
    const readme = readFileSync(fileURLToPath(new URL('../../README.md', import.meta.url)), 'utf8');
    const start = readme.indexOf('\n## NAT profiles\n');
    assert.ok(start >= 0, 'README.md has no "## NAT profiles" section');
    const end = readme.indexOf('\n## ', start + 1);
    const section = readme.slice(start, end < 0 ? undefined : end);
    assert.ok(section.includes(formatProfilesMarkdown()), 'the NAT profiles section differs from formatProfilesMarkdown(): paste its output there');
    for (const p of Object.values(NAT_PROFILES)) assert.ok(section.includes(`| \`${p.name}\` |`), p.name);
  });
});

describe("each profile's ruleset passes nft -c (in a throwaway network namespace)", () => {
  const skip = !existsSync(NFT)
    ? `${NFT} is not installed`
    : process.getuid?.() !== 0
      ? 'needs root (nft -c takes CAP_NET_ADMIN inside `unshare --net`)'
      : false;
  test('every profile', { skip }, async () => {
    const rulesets = Object.values(NAT_PROFILES).flatMap((p) =>
      (
        [
          [p.name, `{ profile: ${p.name} }`],
          [`${p.name} with hairpinning`, `{ profile: ${p.name}, hairpinning: true }`],
        ] as const
      ).map(([label, yaml]) => ({ label, text: compileNatRuleset(natOf(yaml)) })),
    );
    assert.deepEqual(await nftRejects(rulesets), []);
  });
});
