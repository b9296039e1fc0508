// Interoperability with coturn (Debian's coturn 4.6.1): its clients against labctl's STUN
// server (`labctl check --serve`), and labctl's client against its server (`turnserver -n`
// with two -L addresses and --alt-listening-port, `labctl check --server`). Both must agree
// with what labctl measures with its own server and client.
//
// coturn's quirks, met while writing these tests: without -n, turnserver reads Debian's
// /etc/turnserver.conf, which turns on syslog (nothing is printed where no syslog daemon
// runs) and no-rfc5780 (only the primary port opens and no OTHER-ADDRESS is sent). It
// reports its second -L address as OTHER-ADDRESS whatever address a request came to, so
// clients are pointed at the first. turnutils_natdiscovery's own quirks are with the code
// that runs and reads it (test/fixtures/check/natdiscovery.ts).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { BIN, isRoot, labctl, labctlOk, netnsList } from '../support/cli.js';
import { check, leftovers } from '../fixtures/check/support.js';
import { type Discovery, mappingFromReflexive, natdiscovery } from '../fixtures/check/natdiscovery.js';

const run = promisify(execFile);
const skip = isRoot ? false : 'needs root';
const PREFIX = 'ckc-';
const INET = `ns-${PREFIX}inet`;
const TURN_LINK = 'ckturn0';
const TURN_A1 = '198.51.100.1';
const TURN_A2 = '198.51.100.2';

interface Site {
  name: string;
  nat: Record<string, unknown>;
  /** Inside port natdiscovery must use (-l): a NAT that maps one fixed inside port. */
  port?: number;
}
const SITES: Site[] = [
  { name: 'fc', nat: { type: 'full-cone' } },
  { name: 'rc', nat: { type: 'restricted-cone', hairpinning: true } },
  { name: 'prc', nat: { type: 'port-restricted-cone' } },
  { name: 'sym', nat: { type: 'symmetric' } },
  { name: 'fx', nat: { type: 'full-cone', 'fixed-port': 54321, forwards: [{ protocol: 'udp', port: 54321, to: 'fx-n', 'to-port': 12345 }] }, port: 12345 },
];
const dir = mkdtempSync(join(tmpdir(), 'labctl-check-coturn-'));
const file = join(dir, 'coturn.yaml');
const ours = () => netnsList().filter((n) => n.startsWith(`ns-${PREFIX}`));

interface Target {
  name: string;
  probe: { netns: string };
  measured: { mapping: string; filtering: string; hairpinning: unknown; port: unknown; outsideAddress?: string };
}
let baseline: Target[] = [];
const nodeAddress = new Map<string, string>();
let turnserver: ChildProcess | undefined;
let serve: ChildProcess | undefined;

before(async () => {
  if (!isRoot) return;
  writeFileSync(
    file,
    stringify({ name: 'check-coturn', prefix: PREFIX, sites: SITES.map((s) => ({ name: s.name, nat: s.nat, nodes: [{ name: `${s.name}-n` }] })) }),
  );
  await labctlOk(['net', 'up', file]);
  const lab = JSON.parse((await labctlOk(['validate', file, '--json'])).stdout) as { nodes: { name: string; link: { address: string } }[] };
  for (const n of lab.nodes) nodeAddress.set(n.name, n.link.address);
  // What labctl measures with its own server and client.
  const r = await check([file, '--json']);
  assert.equal(r.exitCode, 0, `labctl's own check of the coturn lab: ${r.stdout}\n${r.stderr}`);
  baseline = (JSON.parse(r.stdout) as { targets: Target[] }).targets;
});

after(async () => {
  if (!isRoot) return;
  serve?.kill('SIGKILL');
  turnserver?.kill('SIGKILL');
  try {
    execFileSync('ip', ['-n', INET, 'link', 'del', TURN_LINK], { stdio: 'ignore' });
  } catch {
    /* not there */
  }
  await labctl(['net', 'down', file]);
  assert.deepEqual(ours(), [], 'no namespace of the coturn lab is left');
  rmSync(dir, { recursive: true, force: true });
});

/** natdiscovery from a site's node, bound to its address (and the port a fixed-port NAT forwards). */
function discover(site: Site, server: string): Promise<Discovery> {
  return natdiscovery(`ns-${PREFIX}${site.name}-n`, nodeAddress.get(`${site.name}-n`)!, server, site.port);
}

test("coturn's clients against labctl's server (labctl check --serve) agree with labctl", { skip }, async () => {
  serve = spawn(process.execPath, [BIN, 'check', file, '--serve', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  serve.stderr!.on('data', (d) => (stderr += String(d)));
  const lines = createInterface({ input: serve.stdout! });
  const ready = await new Promise<{ server: { addresses: string[]; ports: number[] } }>((resolve, reject) => {
    lines.once('line', (l) => resolve(JSON.parse(l) as { server: { addresses: string[]; ports: number[] } }));
    serve!.once('exit', (c) => reject(new Error(`labctl check --serve exited ${c}: ${stderr}`)));
  });
  const [a1, a2] = ready.server.addresses;
  assert.deepEqual(ready.server.ports, [3478, 3479]);
  try {
    // turnutils_stunclient: the reflexive address labctl's server reports is the NAT's outside
    // address. After an RFC 5780 answer it asks for RESPONSE-PORT = its own port + 1 and waits
    // without a timeout: behind a NAT nothing is mapped there (coturn's server answers the same
    // way), so it is stopped after its first answer.
    for (const t of baseline) {
      const site = SITES.find((s) => `${s.name}-nat` === t.name)!;
      const r = await run('ip', ['netns', 'exec', t.probe.netns, 'timeout', '3', 'turnutils_stunclient', '-L', nodeAddress.get(`${site.name}-n`)!, a1!], {
        encoding: 'utf8',
      }).catch((e: { stdout?: string; code?: number }) => ({ stdout: e.stdout ?? '', code: e.code }));
      const out = r.stdout;
      assert.match(out, /RFC 5780 response 1/, `${t.name}: coturn's client sees an RFC 5780 server\n${out}`);
      assert.match(out, new RegExp(`Other addr: ?: ${a2!.replaceAll('.', '\\.')}:3479`), `${t.name}: OTHER-ADDRESS\n${out}`);
      assert.match(out, new RegExp(`Response origin: ?: ${a1!.replaceAll('.', '\\.')}:3478`), `${t.name}: RESPONSE-ORIGIN\n${out}`);
      assert.match(
        out,
        new RegExp(`UDP reflexive addr: ?${t.measured.outsideAddress!.replaceAll('.', '\\.')}:\\d+`),
        `${t.name}: the reflexive address is the NAT's outside address\n${out}`,
      );
    }

    // stunclient's flows would collide with natdiscovery's on the fixed-port NAT (every flow to
    // the server leaves from 54321): let the NATs forget them.
    await labctlOk(['net', 'flush', file]);
    // turnutils_natdiscovery: mapping, filtering and hairpinning, twice per NAT (one after the
    // other: two at once from one fixed inside port would collide), all NATs at once.
    const perSite = await Promise.all(
      SITES.map(async (s) => [
        { site: s, d: await discover(s, a1!) },
        { site: s, d: await discover(s, a1!) },
      ]),
    );
    const results = perSite.flat();
    for (const { site, d } of results) {
      const t = baseline.find((x) => x.name === `${site.name}-nat`)!;
      const why = `${site.name}: labctl measured ${JSON.stringify(t.measured)}; natdiscovery said\n${d.text}`;
      assert.equal(
        mappingFromReflexive(d.mappingReflexive),
        t.measured.mapping,
        `mapping from the reflexive addresses natdiscovery printed (${d.mappingReflexive.join(', ')})\n${why}`,
      );
      assert.equal(d.mappingVerdict, t.measured.mapping, `natdiscovery's mapping verdict\n${why}`);
      assert.equal(d.filteringVerdict, t.measured.filtering, `natdiscovery's filtering verdict\n${why}`);
      assert.equal(d.hairpinning, t.measured.hairpinning, `natdiscovery's hairpinning\n${why}`);
    }
  } finally {
    serve.kill('SIGINT');
  }
  const code = await new Promise<number | null>((r) => (serve!.exitCode !== null ? r(serve!.exitCode) : serve!.once('exit', (c) => r(c))));
  assert.equal(code, 0, `--serve stops cleanly on SIGINT: ${stderr}`);
  serve = undefined;
  assert.deepEqual(leftovers(INET, ours()), [], '--serve removed its addresses');
});

test("labctl's client against coturn's turnserver (labctl check --server) agrees with labctl", { skip }, async () => {
  for (const cmd of [
    ['link', 'add', TURN_LINK, 'type', 'veth', 'peer', 'name', 'ckturn1'],
    ['addr', 'add', `${TURN_A1}/32`, 'dev', TURN_LINK],
    ['addr', 'add', `${TURN_A2}/32`, 'dev', TURN_LINK],
    ['link', 'set', TURN_LINK, 'up'],
    ['link', 'set', 'ckturn1', 'up'],
  ])
    execFileSync('ip', ['-n', INET, ...cmd]);
  turnserver = spawn(
    'ip',
    [
      'netns',
      'exec',
      INET,
      'turnserver',
      '-n',
      '-L',
      TURN_A1,
      '-L',
      TURN_A2,
      '--listening-port',
      '3478',
      '--alt-listening-port',
      '3479',
      '--no-tcp',
      '--no-tls',
      '--no-dtls',
      '--no-cli',
      '--stun-only',
      '--log-file',
      'stdout',
      '--simple-log',
      '--pidfile',
      join(dir, 'turnserver.pid'),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let log = '';
  turnserver.stdout!.on('data', (d) => (log += String(d)));
  // Wait until it listens on all four sockets.
  for (let i = 0; i < 100; i++) {
    const ss = execFileSync('ip', ['netns', 'exec', INET, 'ss', '-unl'], { encoding: 'utf8' });
    if ([`${TURN_A1}:3478`, `${TURN_A1}:3479`, `${TURN_A2}:3478`, `${TURN_A2}:3479`].every((e) => ss.includes(e))) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const r = await check([file, '--server', `${TURN_A1}:3478`, '--json']);
  assert.equal(r.exitCode, 0, `every NAT as declared, measured against coturn\n${r.stdout}\n${r.stderr}\n${log.slice(-2000)}`);
  const doc = JSON.parse(r.stdout) as { server: { external: boolean; addresses: string[]; ports: number[] }; targets: Target[] };
  assert.deepEqual(
    doc.server,
    { netns: INET, addresses: [TURN_A1, TURN_A2], ports: [3478, 3479], portPairs: 1, external: true },
    'OTHER-ADDRESS learned from coturn',
  );
  for (const t of doc.targets) {
    const b = baseline.find((x) => x.name === t.name)!;
    const { outsideAddress: _o, ...mine } = b.measured;
    const { outsideAddress: _p, ...theirs } = t.measured;
    assert.deepEqual(theirs, mine, `${t.name}: same measurement with coturn's server as with labctl's`);
  }
  turnserver.kill('SIGTERM');
  await new Promise((res) => turnserver!.once('exit', res));
  turnserver = undefined;
  execFileSync('ip', ['-n', INET, 'link', 'del', TURN_LINK]);
  assert.deepEqual(leftovers(INET, ours()), []);
});
