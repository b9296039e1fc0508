// The lab-file corpora: every file in test/fixtures/bad-labs/ must be rejected with the
// messages its `# expect:` lines name; every file in test/fixtures/good-labs/ must
// resolve to the shape asserted below.
//
// Expectation format (first lines of each bad lab):
//   # expect: <field path>: <substring of the message>
// The error must have a line `<file>: <field path>: <message>` whose message contains
// the substring. The field path is everything up to the first ": " of the expectation;
// `.` stands for a problem with the whole file (a line `<file>: <message>`).
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadLab } from '../../src/lab/load.js';
import type { Lab } from '../../src/lab/model.js';

const here = dirname(fileURLToPath(import.meta.url));
const BAD = resolve(here, '..', 'fixtures', 'bad-labs');
const GOOD = resolve(here, '..', 'fixtures', 'good-labs');

interface Expectation {
  path: string;
  substring: string;
  raw: string;
}

function expectations(file: string): Expectation[] {
  const out: Expectation[] = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^# expect:\s*(.*?)\s*$/.exec(line);
    if (!m) continue;
    const raw = m[1]!;
    const sep = raw.indexOf(': ');
    assert.ok(sep > 0, `${file}: malformed expectation "${raw}" (want "<field path>: <substring>")`);
    out.push({ path: raw.slice(0, sep), substring: raw.slice(sep + 2), raw });
  }
  return out;
}

function loadError(file: string): Error & { file?: string; issues?: { path: string; message: string }[] } {
  try {
    loadLab(file);
  } catch (e) {
    assert.ok(e instanceof Error, `${file}: threw a non-Error: ${String(e)}`);
    return e;
  }
  assert.fail(`${file}: loaded without error`);
}

const badFiles = readdirSync(BAD)
  .filter((f) => f.endsWith('.yaml'))
  .sort();

describe('bad-labs corpus', () => {
  test('has at least 40 files, each named NN-short-name.yaml with at least one expectation', () => {
    assert.ok(badFiles.length >= 40, `only ${badFiles.length} files in ${BAD}`);
    for (const f of badFiles) {
      assert.match(f, /^\d{2,3}-[a-z0-9-]+\.yaml$/, `${f}: not named NN-short-name.yaml`);
      assert.ok(expectations(join(BAD, f)).length > 0, `${f}: no "# expect:" line`);
    }
    const numbers = badFiles.map((f) => f.split('-')[0]);
    assert.equal(new Set(numbers).size, numbers.length, 'two corpus files share a number');
  });

  for (const f of badFiles) {
    test(f, () => {
      const file = join(BAD, f);
      const err = loadError(file);
      assert.equal(err.name, 'UsageError', `${f}: threw ${err.name}: ${err.message}`);
      assert.ok(err.message.includes(file), `${f}: message does not name the file:\n${err.message}`);
      const lines = err.message.split('\n');
      for (const line of lines) assert.ok(line.startsWith(`${file}: `), `${f}: a message line does not start with the file path: ${line}`);
      for (const x of expectations(file)) {
        const head = x.path === '.' ? `${file}: ` : `${file}: ${x.path}: `;
        const hit = lines.some((l) => l.startsWith(head) && l.slice(head.length).includes(x.substring));
        assert.ok(hit, `${f}: expected "${x.raw}" in:\n${err.message}`);
      }
    });
  }
});

const good = (f: string): Lab => loadLab(join(GOOD, f));

describe('good-labs corpus', () => {
  test('every file resolves', () => {
    const files = readdirSync(GOOD).filter((f) => f.endsWith('.yaml'));
    assert.ok(files.length >= 6);
    for (const f of files) assert.doesNotThrow(() => good(f), f);
  });

  test('article.yaml is the built-in article lab', () => {
    const copy = good('article.yaml');
    const builtin = loadLab('article');
    assert.deepEqual({ ...copy, source: '' }, { ...builtin, source: '' });
  });

  test('bridged-lan: several nodes behind one NAT share br-lan', () => {
    const lab = good('bridged-lan.yaml');
    assert.equal(lab.nats.length, 1);
    const nat = lab.nats[0]!;
    assert.equal(nat.lan.bridged, true);
    assert.equal(nat.lan.ifname, 'br-lan');
    assert.deepEqual(nat.lan.members, ['desk1', 'desk2', 'printer']);
    assert.equal(nat.lan.address, '10.0.1.100');
    // desk2 took 10.0.1.1 explicitly; the others are planned around it.
    assert.deepEqual(
      lab.nodes.map((n) => [n.name, n.link.address, n.link.gateway]),
      [
        ['desk1', '10.0.1.2', '10.0.1.100'],
        ['desk2', '10.0.1.1', '10.0.1.100'],
        ['printer', '10.0.1.3', '10.0.1.100'],
      ],
    );
    const ports = lab.links.filter((l) => l.b.netns === nat.netns && l.bBridge);
    assert.equal(ports.length, 3);
    for (const p of ports) {
      assert.equal(p.bBridge, 'br-lan');
      assert.ok(Buffer.byteLength(p.b.ifname) <= 15, p.b.ifname);
    }
    assert.deepEqual(
      ports.map((p) => p.a.owner),
      ['desk1', 'desk2', 'printer'],
    );
    assert.equal(new Set(ports.map((p) => p.b.ifname)).size, 3);
    assert.equal(nat.behaviour.hairpinning, true);
    assert.equal(nat.behaviour.filtering, 'address-and-port-dependent');
  });

  test('cgn: a home site behind a carrier-grade NAT site', () => {
    const lab = good('cgn.yaml');
    const cgn = lab.nats.find((n) => n.name === 'cgn')!;
    const home = lab.nats.find((n) => n.name === 'home-nat')!;
    const cafe = lab.nats.find((n) => n.name === 'cafe-nat')!;
    assert.equal(cgn.site, 'isp');
    assert.equal(cgn.outside.upstream, 'inet');
    assert.equal(cgn.outside.subnet, '203.0.113.0/24');
    assert.equal(cgn.outside.address, '203.0.113.100');
    assert.equal(cgn.outside.gateway, '203.0.113.254');
    assert.equal(cgn.lan.subnet, '100.100.0.0/16');
    assert.equal(cgn.lan.address, '100.100.0.100');
    // Its LAN has a node and the home NAT: two members, so a bridge.
    assert.deepEqual(cgn.lan.members, ['neighbour', 'home-nat']);
    assert.equal(cgn.lan.bridged, true);
    // The home NAT's uplink is an address on the cgn LAN, routed via the cgn NAT.
    assert.equal(home.outside.upstream, 'cgn');
    assert.equal(home.outside.subnet, '100.100.0.0/16');
    assert.equal(home.outside.prefix, 16);
    assert.equal(home.outside.address, '100.100.0.1');
    assert.equal(home.outside.gateway, '100.100.0.100');
    assert.equal(home.outside.ifname, 've-home-nat-up');
    assert.equal(lab.nodes.find((n) => n.name === 'neighbour')!.link.address, '100.100.0.2');
    // Only internet-attached NATs have a link into the internet namespace.
    assert.deepEqual(
      lab.internet.links.map((l) => l.peer),
      ['cgn', 'cafe-nat'],
    );
    assert.ok(!lab.links.some((l) => l.a.owner === 'home-nat' && l.b.netns === lab.internet.netns));
    const homeUp = lab.links.find((l) => l.a.owner === 'home-nat')!;
    assert.equal(homeUp.b.netns, 'ns-cgn');
    assert.equal(homeUp.bBridge, 'br-lan');
    // Default subnets skip nothing here: the home LAN is 10.0.1.0/24, the cafe 10.0.2.0/24.
    assert.equal(home.lan.subnet, '10.0.1.0/24');
    assert.equal(cafe.lan.subnet, '10.0.2.0/24');
    assert.equal(cafe.outside.subnet, '100.64.1.0/24');
  });

  test('internet-node: nodes on the internet have no NAT', () => {
    const lab = good('internet-node.yaml');
    assert.equal(lab.prefix, 'rv-');
    assert.equal(lab.internet.name, 'wan');
    assert.equal(lab.internet.netns, 'ns-rv-wan');
    const server = lab.nodes.find((n) => n.name === 'server')!;
    const relay = lab.nodes.find((n) => n.name === 'relay')!;
    assert.equal(server.site, undefined);
    assert.equal(server.router, 'wan');
    assert.equal(server.machine, false);
    assert.equal(server.netns, 'ns-rv-server');
    // Sites' uplinks are planned before internet nodes' ones: home gets 100.64.1.0/24.
    assert.equal(lab.nats[0]!.outside.subnet, '100.64.1.0/24');
    assert.equal(server.link.subnet, '100.64.2.0/24');
    assert.equal(server.link.address, '100.64.2.100');
    assert.equal(server.link.gateway, '100.64.2.254');
    assert.equal(relay.link.address, '198.51.100.10');
    assert.equal(relay.link.gateway, '198.51.100.254');
    assert.equal(relay.machine, true);
    assert.deepEqual(
      lab.internet.links.map((l) => [l.peer, l.address, l.subnet]),
      [
        ['server', '100.64.2.254', '100.64.2.0/24'],
        ['relay', '198.51.100.254', '198.51.100.0/24'],
        ['home-nat', '100.64.1.254', '100.64.1.0/24'],
      ],
    );
    assert.ok(!lab.nats.some((n) => n.lan.members.includes('server')));
  });

  test('rfc4787: mapping and filtering instead of a type', () => {
    const lab = good('rfc4787.yaml');
    const [a, b, c] = lab.nats;
    assert.equal(a!.behaviour.declaredAs, undefined);
    assert.equal(a!.behaviour.mapping, 'address-dependent');
    assert.equal(a!.behaviour.filtering, 'endpoint-independent');
    assert.equal(a!.behaviour.portPreservation, false);
    assert.deepEqual(a!.behaviour.udpTimeouts, { unreplied: 15, stream: 60 });
    assert.equal(a!.behaviour.tcpMappingTimeout, 3600);
    assert.equal(b!.behaviour.mapping, 'endpoint-independent');
    assert.equal(b!.behaviour.filtering, 'address-and-port-dependent');
    assert.equal(b!.behaviour.portPreservation, false);
    assert.deepEqual(b!.behaviour.forwards, [{ protocol: 'tcp', port: 8080, to: 'b1', toAddress: '10.0.2.1', toPort: 80, public: true }]);
    assert.equal(c!.behaviour.mapping, 'endpoint-independent');
    assert.equal(c!.behaviour.filtering, 'address-dependent');
    assert.equal(c!.behaviour.portPreservation, true);
    assert.deepEqual(c!.behaviour.udpTimeouts, { unreplied: 30, stream: 120 });
    assert.equal(c!.behaviour.tcpMappingTimeout, 7440);
  });

  test('fifty-sites: every subnet and address planned by default', () => {
    const lab = good('fifty-sites.yaml');
    assert.equal(lab.nats.length, 50);
    assert.equal(lab.nodes.length, 50);
    lab.nats.forEach((nat, i) => {
      const k = i + 1;
      assert.equal(nat.name, `s${k}-nat`);
      assert.equal(nat.lan.subnet, `10.0.${k}.0/24`);
      assert.equal(nat.lan.address, `10.0.${k}.100`);
      assert.equal(nat.outside.subnet, `100.64.${k}.0/24`);
      assert.equal(nat.outside.address, `100.64.${k}.100`);
      assert.equal(nat.outside.gateway, `100.64.${k}.254`);
      assert.equal(lab.nodes[i]!.link.address, `10.0.${k}.1`);
    });
    assert.equal(lab.links.length, 100);
    const perNs = new Map<string, Set<string>>();
    for (const l of lab.links) {
      for (const end of [l.a, l.b]) {
        assert.ok(Buffer.byteLength(end.ifname) <= 15, end.ifname);
        const s = perNs.get(end.netns) ?? new Set<string>();
        assert.ok(!s.has(end.ifname), `${end.ifname} twice in ${end.netns}`);
        s.add(end.ifname);
        perNs.set(end.netns, s);
      }
    }
    assert.equal(perNs.get('ns-inet')!.size, 50);
  });
});
