// `labctl graph`: the graph model of a resolved lab and its renderers (Mermaid, DOT, JSON,
// SVG). The DOT and SVG are read back through the real Graphviz (`dot -Tjson0`, `dot -Tsvg`;
// scripts/install.sh installs graphviz). No root needed.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadLab } from '../../src/lab/load.js';
import { type Lab, members } from '../../src/lab/model.js';
import { parseLab } from '../../src/lab/resolve.js';
import { GRAPHVIZ_MISSING, type GraphLink, labGraph, renderDot, renderJson, renderMermaid, renderSvg } from '../../src/report/graph.js';
import { LabctlError } from '../../src/util/errors.js';

const GOOD = fileURLToPath(new URL('../fixtures/good-labs/', import.meta.url));
const article = loadLab('article');
const graph = labGraph(article);

/** The article's links as the lab file and the article's script have them: router's end first. */
const ARTICLE_LINKS = [
  ['inet', 've-c0-inet', '100.64.1.254/24', 'c0-nat', 've-c0-nat-inet', '100.64.1.100/24', '100.64.1.0/24'],
  ['inet', 've-c1-inet', '100.64.2.254/24', 'c1-nat', 've-c1-nat-inet', '100.64.2.100/24', '100.64.2.0/24'],
  ['c0-nat', 've-c0-nat-node', '10.0.1.100/24', 'c0', 've-c0', '10.0.1.1/24', '10.0.1.0/24'],
  ['c1-nat', 've-c1-nat-node', '10.0.2.100/24', 'c1', 've-c1', '10.0.2.1/24', '10.0.2.0/24'],
];

const row = (l: GraphLink) => [
  l.upstream.member,
  l.upstream.ifname,
  l.upstream.address,
  l.downstream.member,
  l.downstream.ifname,
  l.downstream.address,
  l.subnet,
];
const sortRows = (rows: unknown[][]) => rows.map((r) => JSON.stringify(r)).sort();

describe('graph model', () => {
  test("the article's lab: every member, of its kind", () => {
    assert.deepEqual(
      graph.members.map((m) => [m.name, m.kind, m.netns, m.machine]),
      [
        ['inet', 'internet', 'ns-inet', false],
        ['c0-nat', 'nat', 'ns-c0-nat', true],
        ['c1-nat', 'nat', 'ns-c1-nat', true],
        ['c0', 'node', 'ns-c0', true],
        ['c1', 'node', 'ns-c1', true],
      ],
    );
    assert.deepEqual(
      graph.members.map((m) => m.name).sort(),
      members(article)
        .map((m) => m.name)
        .sort(),
    );
  });

  test("the article's lab: every link, with interface names and addresses on both ends", () => {
    assert.deepEqual(sortRows(graph.links.map(row)), sortRows(ARTICLE_LINKS));
    assert.ok(
      graph.links.every((l) => l.impairment === undefined),
      'no lab declares impairments yet',
    );
  });

  test("the article's lab: each NAT's behaviour", () => {
    const nat = (name: string) => graph.members.find((m) => m.name === name)!.nat!;
    assert.equal(nat('c0-nat').behaviour, 'full-cone (EIM+EIF)');
    assert.equal(nat('c1-nat').behaviour, 'restricted-cone (EIM+ADF)');
    for (const [name, node] of [
      ['c0-nat', 'c0'],
      ['c1-nat', 'c1'],
    ] as const) {
      const n = nat(name);
      assert.equal(n.hairpinning, false);
      assert.equal(n.fixedPort, 54321);
      assert.equal(n.timeouts, undefined, 'the article sets no timeouts');
      assert.deepEqual(
        n.forwards.map((f) => `${f.protocol} ${f.port} ${f.to}:${f.toPort}`),
        [`udp 54321 ${node}:12345`, `tcp 54321 ${node}:12345`],
      );
    }
    assert.equal(graph.members.filter((m) => m.nat).length, 2);
  });

  test('every good fixture lab: each member once, each link of the lab once with its ends', () => {
    for (const f of ['article.yaml', 'bridged-lan.yaml', 'cgn.yaml', 'fifty-sites.yaml', 'internet-node.yaml', 'rfc4787.yaml']) {
      const lab: Lab = loadLab(join(GOOD, f));
      const g = labGraph(lab);
      assert.deepEqual(
        g.members.map((m) => m.name).sort(),
        members(lab)
          .map((m) => m.name)
          .sort(),
        f,
      );
      assert.equal(g.links.length, lab.links.length, f);
      const ends = (a: string, b: string) => [a, b].sort().join(' ');
      assert.deepEqual(
        g.links.map((l) => ends(`${l.upstream.member}/${l.upstream.ifname}`, `${l.downstream.member}/${l.downstream.ifname}`)).sort(),
        lab.links.map((l) => ends(`${l.a.owner}/${l.a.ifname}`, `${l.b.owner}/${l.b.ifname}`)).sort(),
        f,
      );
      for (const l of g.links) {
        assert.ok(l.downstream.address, `${f}: ${l.downstream.member}/${l.downstream.ifname} has no address`);
        assert.ok(l.upstream.address ?? l.upstream.bridge, `${f}: ${l.upstream.member}/${l.upstream.ifname} has neither address nor bridge`);
        assert.match(l.subnet, /^\d+\.\d+\.\d+\.\d+\/\d+$/, f);
      }
      // From the internet down: each link's router comes before the member it serves.
      const at = (name: string) => g.members.findIndex((m) => m.name === name);
      for (const l of g.links) assert.ok(at(l.upstream.member) < at(l.downstream.member), `${f}: ${l.upstream.member} after ${l.downstream.member}`);
    }
  });

  test("a bridged LAN: the ports have no address, the bridge has the router's", () => {
    const g = labGraph(loadLab(join(GOOD, 'cgn.yaml')));
    const ports = g.links.filter((l) => l.upstream.member === 'cgn' && l.upstream.bridge);
    assert.deepEqual(ports.map((l) => l.downstream.member).sort(), ['home-nat', 'neighbour']);
    for (const p of ports) {
      assert.equal(p.upstream.address, undefined);
      assert.deepEqual(p.upstream.bridge, { ifname: 'br-lan', address: '100.100.0.100/16' });
      assert.equal(p.subnet, '100.100.0.0/16');
    }
    const home = g.links.find((l) => l.downstream.member === 'home-nat')!;
    assert.deepEqual([home.downstream.ifname, home.downstream.address], ['ve-home-nat-up', '100.100.0.1/16']);
  });

  test('mapping and filtering without a type, hairpinning, public forwards and declared timeouts', () => {
    const lab = parseLab(
      `name: t
sites:
  - name: a
    nat:
      mapping: address-dependent
      filtering: endpoint-independent
      hairpinning: true
      udp-timeouts: { unreplied: 3, stream: 5 }
      forwards: [{ protocol: tcp, port: 443, to: web, to-port: 8443, public: true }]
    nodes: [{ name: web }]
  - name: b
    nat: { type: symmetric, tcp-mapping-timeout: 600 }
    nodes: [{ name: pc }]
`,
      't.yaml',
    );
    const g = labGraph(lab);
    const a = g.members.find((m) => m.name === 'a-nat')!.nat!;
    assert.equal(a.behaviour, 'ADM+EIF');
    assert.equal(a.declaredAs, undefined);
    assert.equal(a.hairpinning, true);
    assert.deepEqual(a.timeouts, { udpUnreplied: 3, udpStream: 5 });
    const b = g.members.find((m) => m.name === 'b-nat')!.nat!;
    assert.equal(b.behaviour, 'symmetric (APDM+APDF)');
    assert.deepEqual(b.timeouts, { tcpMapping: 600 });
    const mermaid = renderMermaid(g);
    for (const text of [
      'NAT ADM+EIF',
      'hairpinning<br/>',
      'forward tcp 443 → web:8443 (public)',
      'udp timeouts: unreplied 3 s, stream 5 s',
      'tcp mapping timeout 600 s',
      'NAT symmetric (APDM+APDF)',
      'no hairpinning',
    ]) {
      assert.ok(mermaid.includes(text), `mermaid lacks "${text}":\n${mermaid}`);
    }
  });
});

describe('NATs as in the field', () => {
  test('a profile, its outside pool and pooling, port allocation and range, port blocks and a quota are in the model and the labels', () => {
    const lab = parseLab(
      [
        'name: field',
        'sites:',
        '  - { name: cgn, nat: { profile: cgnat-port-blocks }, nodes: [{ name: c }] }',
        '  - { name: arb, nat: { type: symmetric, outside: 3, pooling: arbitrary, port-allocation: sequential, ports: 30000-30999 }, nodes: [{ name: a }] }',
        '  - { name: quo, nat: { type: full-cone, quota: 5 }, nodes: [{ name: q }] }',
      ].join('\n'),
      'field.yaml',
    );
    const g = labGraph(lab);
    const nat = (name: string) => g.members.find((m) => m.name === name)!.nat!;
    assert.equal(nat('cgn-nat').profile, 'cgnat-port-blocks');
    assert.deepEqual(nat('cgn-nat').portBlock, { size: 128, maxBlocks: 8 });
    assert.equal(nat('cgn-nat').pool?.pooling, 'paired');
    assert.deepEqual([nat('arb-nat').portAllocation, nat('arb-nat').ports, nat('arb-nat').pool?.addresses.length], ['sequential', '30000-30999', 3]);
    assert.equal(nat('quo-nat').quota, 5);
    assert.equal(nat('quo-nat').portAllocation, undefined, 'kept ports say port preservation, as before');
    const text = renderMermaid(g);
    assert.match(
      text,
      /cgn-nat<br\/>NAT EIM\+EIF<br\/>profile cgnat-port-blocks<br\/>hairpinning<br\/>random ports<br\/>outside 100\.64\.1\.100, 100\.64\.1\.101 \(paired\)<br\/>port blocks 8 x 128/,
    );
    assert.match(text, /sequential ports in 30000-30999<br\/>outside [\d., ]+ \(arbitrary\)/);
    assert.match(text, /quota 5 mappings per inside address/);
    // The article's NATs have none of these: their labels are as before.
    assert.equal(labGraph(article).members.filter((m) => m.nat && (m.nat.profile || m.nat.pool || m.nat.portAllocation || m.nat.quota)).length, 0);
  });
});

describe('renderers', () => {
  test('mermaid: a flowchart declaring every member once and every link with both ends', () => {
    const text = renderMermaid(graph);
    const lines = text.trimEnd().split('\n');
    assert.equal(lines[1], 'flowchart TB');
    const declared = lines.filter((l) => /^ {2}m_\w+(\(\(|\{\{|\[|\(\[)"/.test(l));
    const edges = lines.filter((l) => / ---\|"/.test(l));
    assert.equal(declared.length + edges.length + 2, lines.length, `unexpected lines:\n${text}`);
    for (const m of graph.members) {
      const id = `m_${m.name.replace(/-/g, '_')}`;
      assert.equal(declared.filter((l) => l.startsWith(`  ${id}(`) || l.startsWith(`  ${id}{`) || l.startsWith(`  ${id}[`)).length, 1, m.name);
    }
    assert.match(text, /m_c0_nat\{\{"c0-nat<br\/>NAT full-cone \(EIM\+EIF\)<br\/>no hairpinning<br\/>fixed port 54321<br\/>forward udp 54321 → c0:12345/);
    assert.match(text, /m_c1_nat\{\{"c1-nat<br\/>NAT restricted-cone \(EIM\+ADF\)<br\/>no hairpinning/);
    assert.match(text, /m_inet\(\("inet<br\/>the internet/);
    for (const [um, ui, ua, dm, di, da] of ARTICLE_LINKS) {
      const edge = `  m_${um!.replace(/-/g, '_')} ---|"${um}: ${ui} ${ua}<br/>${dm}: ${di} ${da}"| m_${dm!.replace(/-/g, '_')}`;
      assert.ok(edges.includes(edge), `no edge ${edge} in:\n${text}`);
    }
    assert.equal(edges.length, ARTICLE_LINKS.length);
  });

  test('dot: Graphviz reads it back with every member, and every link between the right interfaces', () => {
    const r = spawnSync('dot', ['-Tjson0'], { input: renderDot(graph), encoding: 'utf8' });
    assert.equal(r.status, 0, `dot failed (is graphviz installed?): ${r.error?.message ?? r.stderr}`);
    const parsed = JSON.parse(r.stdout) as {
      objects: { name: string; label: string }[];
      edges: { tail: number; head: number; tailport: string; headport: string; label: string }[];
    };
    assert.deepEqual(
      parsed.objects.map((o) => o.name),
      graph.members.map((m) => m.name),
    );
    const name = (i: number) => parsed.objects[i]!.name;
    assert.deepEqual(
      sortRows(parsed.edges.map((e) => [name(e.tail), e.tailport, name(e.head), e.headport, e.label])),
      sortRows(ARTICLE_LINKS.map(([um, ui, , dm, di, , subnet]) => [um, `${ui}:s`, dm, `${di}:n`, subnet])),
    );
    // Each interface, with its address, sits in its own member's table.
    const label = (member: string) => parsed.objects.find((o) => o.name === member)!.label;
    for (const [um, ui, ua, dm, di, da] of ARTICLE_LINKS) {
      assert.ok(label(um!).includes(`PORT="${ui}"`) && label(um!).includes(ua!), `${um}: ${ui} ${ua}`);
      assert.ok(label(dm!).includes(`PORT="${di}"`) && label(dm!).includes(da!), `${dm}: ${di} ${da}`);
    }
    assert.ok(label('c1-nat').includes('NAT restricted-cone (EIM+ADF)'));
  });

  test("README's Graph section shows what labctl graph writes for the article's lab", () => {
    const readme = readFileSync(fileURLToPath(new URL('../../README.md', import.meta.url)), 'utf8');
    const section = readme.slice(readme.indexOf('\n## Graph\n'));
    const block = /```mermaid\n([\s\S]*?)```/.exec(section)?.[1];
    assert.equal(block, renderMermaid(graph), "README.md's Graph section is stale: put `labctl graph` (its output) in its mermaid block");
  });

  test('json: the graph model itself', () => {
    assert.deepEqual(JSON.parse(renderJson(graph)), graph);
  });

  test("a link's impairment shows in every format: the lab file's, or a live change from the state of the lab that is up", () => {
    const text = readFileSync(fileURLToPath(new URL('../../machines/article.yaml', import.meta.url)), 'utf8');
    const declared = parseLab(`${text}links:\n  - { between: [inet, c0-nat], delay: 40ms, jitter: 5ms, loss: 1% }\n`, 'impaired.yaml');
    const impaired = labGraph(declared);
    const uplink = impaired.links.find((l) => l.downstream.member === 'c0-nat')!;
    const line = 'delay 40ms jitter 5ms loss 1%';
    assert.deepEqual(uplink.impairment, { upstream: { delayMs: 40, jitterMs: 5, lossPercent: 1 }, downstream: { delayMs: 40, jitterMs: 5, lossPercent: 1 } });
    assert.ok(renderMermaid(impaired).includes(line));
    assert.ok(renderDot(impaired).includes(line));
    assert.deepEqual(JSON.parse(renderJson(impaired)).links.find((l: GraphLink) => l.downstream.member === 'c0-nat').impairment, uplink.impairment);
    assert.ok(!renderMermaid(graph).includes('delay'));
    // Up, with live changes: c0-nat's uplink reset, c1's LAN link rate-limited upstream and down.
    const state = {
      lab: 'article',
      source: 'impaired.yaml',
      planHash: '',
      status: 'up' as const,
      createdAt: '',
      namespaces: [],
      nats: [],
      links: [
        { link: 'c0-nat--inet', impairment: { upstream: {}, downstream: {} } },
        { link: 'c1--c1-nat', impairment: { upstream: { rateKbit: 5000 }, downstream: {} }, down: true },
      ],
    };
    const live = labGraph(declared, state);
    assert.equal(live.links.find((l) => l.downstream.member === 'c0-nat')!.impairment, undefined);
    const lan = live.links.find((l) => l.downstream.member === 'c1')!;
    assert.equal(lan.down, true);
    assert.ok(renderMermaid(live).includes('DOWN, upstream: rate 5mbit; downstream: none'));
  });
});

describe('svg (the real Graphviz dot)', () => {
  /** What an SVG says: its node titles and its texts, Graphviz's entities undone. */
  function svgText(svg: string): { titles: string[]; texts: string[] } {
    const decode = (s: string) => s.replace(/&#45;/g, '-').replace(/&gt;/g, '>').replace(/&lt;/g, '<').replace(/&amp;/g, '&');
    return {
      titles: [...svg.matchAll(/<title>([^<]*)<\/title>/g)].map((m) => decode(m[1]!)),
      texts: [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => decode(m[1]!)),
    };
  }

  test("the article's lab: every member, every interface and address", async () => {
    const svg = await renderSvg(graph);
    assert.match(svg, /^<\?xml[\s\S]*<svg[\s\S]*<\/svg>\s*$/);
    const { titles, texts } = svgText(svg);
    for (const m of graph.members) {
      assert.ok(titles.includes(m.name), `no node titled ${m.name}`);
      assert.ok(texts.includes(m.name), `no text ${m.name}`);
    }
    for (const [, ui, ua, , di, da, subnet] of ARTICLE_LINKS) for (const t of [ui, ua, di, da, subnet]) assert.ok(texts.includes(t!), `no text ${t}`);
    assert.ok(texts.includes('NAT full-cone (EIM+EIF)') && texts.includes('NAT restricted-cone (EIM+ADF)'));
  });

  test('the fifty-sites lab: every member', async () => {
    const g = labGraph(loadLab(join(GOOD, 'fifty-sites.yaml')));
    assert.equal(g.members.length, 101);
    const { titles } = svgText(await renderSvg(g));
    for (const m of g.members) assert.ok(titles.includes(m.name), `no node titled ${m.name}`);
  });

  test('without dot on PATH: exit 1, and how to install it', async () => {
    const path = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      await assert.rejects(renderSvg(graph), (e: unknown) => {
        assert.ok(e instanceof LabctlError);
        assert.equal(e.exitCode, 1);
        assert.equal(e.message, GRAPHVIZ_MISSING);
        assert.match(e.message, /install graphviz \(apt-get install graphviz\)/);
        return true;
      });
    } finally {
      process.env.PATH = path;
    }
  });
});
