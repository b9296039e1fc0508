// Every NAT profile's timers, shortened (as root): one lab with one site per profile in
// NAT_PROFILES, each with its own short UDP and TCP timers given beside the profile (values
// that differ from site to site and from every profile's own, so that a value of the
// profile, of another site, or of the other timer, is caught), and a server on the lab's
// internet. `labctl check --lifetime` measures every NAT's unreplied and stream UDP
// lifetimes; a TCP connection through every NAT at once shows its ESTABLISHED and TIME_WAIT
// timers in `conntrack -L` of the NAT. Every packet goes to addresses inside the lab.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, type ChildProcessWithoutNullStreams, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { parseConntrackListing } from '../../src/conntrack/parse.js';
import { NAT_PROFILES } from '../../src/lab/nat-profiles.js';
import { hostNetworkFingerprint, isRoot, labctl, labctlOk, netnsList } from '../support/cli.js';
import { check, leftovers } from '../fixtures/check/support.js';

const skip = isRoot ? false : 'needs root';
const PREFIX = 'npt-';
const PROFILES = Object.values(NAT_PROFILES);
const SRV = '100.64.211.100';
const TCP_PORT = 7100;

/**
 * Site i's timers. UDP: unreplied 3-5 s and stream 6-8 s, neighbours differing (check
 * brackets a lifetime to within a second). TCP: established 400 + 70 i s and transitory
 * 35 + 10 i s, each further from every other site's than the assertions' windows (60 s and
 * 10 s), and none a profile's own (30, 120, 240, 350, 1200, 7440, 86400, 432000).
 * `check --lifetime` makes 2 x (cap(unreplied) + cap(stream)) mappings from the one node at
 * once (cap: 1.5 x the lifetime or 5 s more, so at most 46 here), and its checks new flows
 * from one more socket: far under cgnat-rfc6888's quota of 1024 per inside address. Past
 * the quota, checks held back and retransmitted read as mappings gone early (a 3 s lifetime
 * measured as 1 s). The 64-port blocks of the gcp profiles do not limit it: each probe
 * talks to its own server port pair, so the kernel may give two mappings one port.
 */
const timersOf = (i: number) => ({ unreplied: 3 + (i % 3), stream: 6 + ((i + 1) % 3), established: 400 + 70 * i, transitory: 35 + 10 * i });
const SITES = PROFILES.map((p, i) => ({ profile: p.name, site: `t${i}`, nat: `t${i}-nat`, node: `t${i}-n`, ...timersOf(i) }));

const lab = {
  name: 'nat-profile-timers',
  prefix: PREFIX,
  sites: SITES.map((s) => ({
    name: s.site,
    nat: {
      profile: s.profile,
      'udp-timeouts': { unreplied: s.unreplied, stream: s.stream },
      'tcp-timeouts': { established: s.established, transitory: s.transitory },
    },
    nodes: [{ name: s.node }],
  })),
  nodes: [{ name: 'srv', uplink: { subnet: '100.64.211.0/24', address: SRV } }],
};

const dir = mkdtempSync(join(tmpdir(), 'labctl-nat-profile-timers-'));
const file = join(dir, 'timers.yaml');
const ours = () => netnsList().filter((n) => n.startsWith(`ns-${PREFIX}`));
let hostBefore = '';

before(async () => {
  if (!isRoot) return;
  hostBefore = hostNetworkFingerprint();
  writeFileSync(file, stringify(lab));
  const t0 = Date.now();
  await labctlOk(['net', 'up', file]);
  process.stderr.write(`# net up of ${SITES.length} profiles took ${Date.now() - t0} ms\n`);
});

after(async () => {
  if (!isRoot) return;
  await labctl(['net', 'down', file]);
  assert.deepEqual(ours(), [], 'no namespace of the lab is left');
  assert.equal(hostNetworkFingerprint(), hostBefore, "the host's interfaces, addresses, routes and rules are as they were");
  rmSync(dir, { recursive: true, force: true });
});

interface Kind {
  kind: string;
  expected?: number;
  match?: boolean;
  estimate: { seconds?: number; aliveUpTo?: number; goneFrom?: number; verdict: string; detail: string };
}
interface Doc {
  exitCode: number;
  lifetime: { targets: { name: string; path: string[]; match?: boolean; kinds: Kind[] }[]; unmeasured: string[]; unconfirmed: string[] };
}

test("`check --lifetime` measures every profile's shortened UDP timers", { skip }, async () => {
  const t0 = Date.now();
  const r = await check([file, '--lifetime', '--json'], 180_000);
  const took = Date.now() - t0;
  const doc = JSON.parse(r.stdout || '{}') as Doc;
  assert.ok(doc.lifetime?.targets?.length, `check reported\n${r.stdout.slice(0, 3000)}\n${r.stderr}`);
  const lines: string[] = [];
  for (const s of SITES) {
    const t = doc.lifetime.targets.find((x) => x.name === s.nat);
    assert.ok(t, `${s.profile} (${s.nat}) measured`);
    assert.deepEqual(t.path, [s.nat]);
    for (const kind of ['unreplied', 'stream'] as const) {
      const want = s[kind];
      const k: Kind = t.kinds.find((x) => x.kind === kind)!;
      const what = `${s.profile} (${s.nat}) ${kind}: ${JSON.stringify(k)}`;
      assert.equal(k.expected, want, `${what}: declared`);
      assert.equal(k.estimate.verdict, 'measured', what);
      assert.ok(Math.abs(k.estimate.seconds! - want) <= 1, `${what}: ${k.estimate.seconds} s measured, ${want} s declared`);
      // The two checks at the first idle time past the lifetime (30 ms past) may straddle the
      // expiry on a loaded host (seen in a CI run: cgnat-port-blocks, alive and gone at 3.031 s),
      // which check itself takes as the end (src/check/lifetime.ts estimateLifetime).
      assert.ok(
        k.estimate.aliveUpTo! < want + 0.1 && k.estimate.goneFrom! > want - 0.05 && k.estimate.goneFrom! - k.estimate.aliveUpTo! <= 1.2,
        `${what}: bracketed within about a second`,
      );
      assert.equal(k.match, true, what);
      lines.push(`${s.profile} ${kind} ${want} s: alive ${k.estimate.aliveUpTo!.toFixed(2)} s, gone ${k.estimate.goneFrom!.toFixed(2)} s`);
    }
  }
  assert.deepEqual(doc.lifetime.unmeasured, []);
  assert.deepEqual(doc.lifetime.unconfirmed, []);
  assert.equal(r.exitCode, 0, `${r.stdout.slice(0, 3000)}\n${r.stderr}`);
  process.stderr.write(`# check --lifetime of ${SITES.length} NATs took ${took} ms\n${lines.map((l) => `#   ${l}\n`).join('')}`);
  assert.deepEqual(leftovers(`ns-${PREFIX}inet`, ours()), [], 'check left nothing behind');
});

/** A client in a node's namespace: connects, sends, prints "echoed" at the echo, closes at "close" on stdin. */
function tcpClient(node: string): ChildProcessWithoutNullStreams {
  const code = [
    `const s = require('net').connect(${TCP_PORT}, '${SRV}', () => s.write('x'));`,
    `s.once('data', () => process.stdout.write('echoed\\n'));`,
    `s.on('error', (e) => { process.stdout.write('error ' + e.message + '\\n'); process.exit(1); });`,
    `s.on('close', () => process.exit(0));`,
    `process.stdin.once('data', () => s.end());`,
  ].join(' ');
  return spawn('ip', ['netns', 'exec', `ns-${PREFIX}${node}`, process.execPath, '-e', code], { stdio: ['pipe', 'pipe', 'pipe'] });
}

const line = (p: ChildProcessWithoutNullStreams, ms: number) =>
  new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no output within ${ms} ms`)), ms);
    p.stdout.once('data', (d: Buffer) => {
      clearTimeout(timer);
      resolve(String(d).trim());
    });
  });

const exited = (p: ChildProcess) => new Promise<number | null>((resolve) => (p.exitCode !== null ? resolve(p.exitCode) : p.once('exit', (c) => resolve(c))));

/** The NAT's conntrack entry of the TCP connection to the server. */
function tcpEntry(nat: string) {
  const out = execFileSync('ip', ['netns', 'exec', `ns-${PREFIX}${nat}`, 'conntrack', '-L', '-p', 'tcp'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const entries = parseConntrackListing(out).filter((e) => e.protocol === 'tcp' && e.original.dport === TCP_PORT && e.original.dst === SRV);
  assert.equal(entries.length, 1, `${nat}: one TCP entry to the server: ${out}`);
  return entries[0]!;
}

test("every profile's shortened TCP timers: ESTABLISHED and TIME_WAIT in conntrack -L of its NAT", { skip }, async () => {
  const t0 = Date.now();
  const server = spawn(
    'ip',
    [
      'netns',
      'exec',
      `ns-${PREFIX}srv`,
      process.execPath,
      '-e',
      `require('net').createServer((s) => s.pipe(s)).listen(${TCP_PORT}, () => console.log('listening'))`,
    ],
    {
      stdio: ['ignore', 'pipe', 'ignore'],
    },
  );
  const clients: ChildProcessWithoutNullStreams[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      server.stdout.once('data', () => resolve());
      server.once('exit', (c) => reject(new Error(`the server exited ${c}`)));
    });
    for (const s of SITES) clients.push(tcpClient(s.node));
    const said = await Promise.all(clients.map((c) => line(c, 5000)));
    assert.deepEqual(said, Array(SITES.length).fill('echoed'), 'every connection is up and echoed');
    // The client's ACK of the echo follows within a delayed-ACK time: the entry then holds the established timer.
    await new Promise((r) => setTimeout(r, 300));
    const lines: string[] = [];
    for (const s of SITES) {
      const e = tcpEntry(s.nat);
      assert.equal(e.state, 'ESTABLISHED', `${s.profile} (${s.nat}): ${JSON.stringify(e)}`);
      assert.ok(
        e.timeout! <= s.established && e.timeout! > s.established - 60,
        `${s.profile} (${s.nat}): established timer ${e.timeout}, declared ${s.established}`,
      );
      lines.push(`${s.profile} established ${e.timeout}/${s.established} s`);
    }
    for (const c of clients) c.stdin.write('close\n');
    const codes = await Promise.all(clients.map(exited));
    assert.deepEqual(codes, Array(SITES.length).fill(0), 'every client closed its connection');
    // The server's FIN and the client's last ACK are through: the client's side waits in TIME_WAIT, a transitory state.
    await new Promise((r) => setTimeout(r, 300));
    for (const [i, s] of SITES.entries()) {
      const e = tcpEntry(s.nat);
      assert.equal(e.state, 'TIME_WAIT', `${s.profile} (${s.nat}): ${JSON.stringify(e)}`);
      assert.ok(
        e.timeout! <= s.transitory && e.timeout! > s.transitory - 10,
        `${s.profile} (${s.nat}): TIME_WAIT timer ${e.timeout}, declared ${s.transitory}`,
      );
      lines[i] += `, time_wait ${e.timeout}/${s.transitory} s`;
    }
    process.stderr.write(`# TCP timers of ${SITES.length} NATs read in ${Date.now() - t0} ms\n${lines.map((l) => `#   ${l}\n`).join('')}`);
  } finally {
    for (const c of clients) if (c.exitCode === null) c.kill();
    server.kill();
    await exited(server);
  }
});
