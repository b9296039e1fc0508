// Round trip: measure a NAT labctl did not build, get a lab, and measure that lab. The NAT
// is the article's own script's (bench/baseline/article-netns.sh: iptables, every flow from
// port 54321, forwarded to the node's 12345). `labctl stun-server` runs in the script's
// internet namespace on two addresses of its own, `labctl probe --namespace ns-c1` measures
// c1's NAT from inside and writes a lab with --lab-out; that lab comes up beside the script's
// namespaces (names of its own), and `labctl check` of it, coturn's turnutils_natdiscovery in
// it, and a second probe of it all measure what the first probe measured.
//
// It uses the article's namespace names (ns-c0, ns-c1, ns-inet...): run it under the lock
// every test of those names takes, as well as the e2e lock:
//   flock /tmp/labctl-e2e.lock flock /tmp/labctl-article-names.lock node --import tsx --test test/e2e/probe-roundtrip.test.ts
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { execa } from 'execa';
import { BIN, isRoot, labctl, labctlOk, netnsList, ROOT } from '../support/cli.js';
import { check, leftovers } from '../fixtures/check/support.js';
import { mappingFromReflexive, natdiscovery } from '../fixtures/check/natdiscovery.js';

const skip = isRoot ? false : 'needs root';
const ARTICLE_NS = ['ns-c0', 'ns-c0-nat', 'ns-c1', 'ns-c1-nat', 'ns-inet'];
const SCRIPT = `${ROOT}bench/baseline/article-netns.sh`;
const LINK = 'rtstun0';
const [A1, A2] = ['203.0.113.1', '203.0.113.2'];
const dir = mkdtempSync(join(tmpdir(), 'labctl-probe-roundtrip-'));
const labFile = join(dir, 'article-c1.yaml');
// The written lab's names: its name from the file's, its prefix from its name.
const PREFIX = 'article-';
const ours = () => netnsList().filter((n) => ARTICLE_NS.includes(n) || n.startsWith(`ns-${PREFIX}`));

interface Probe {
  measured: { mapping: string; filtering: string; hairpinning: unknown; port: unknown; allocation: { kind: string; port?: number } };
  rows: { test: string; measured: string; evidence: string }[];
  nat?: Record<string, unknown>;
  unmeasured: string[];
  labOut?: string;
}

let server: ChildProcess | undefined;
let serve: ChildProcess | undefined;

async function probe(args: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const r = await execa(process.execPath, [BIN, 'probe', ...args], { reject: false, env: {}, timeout: 120_000 });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** Starts a long-running labctl command and resolves with its first line of output (its "ready"). */
async function startReady(argv: string[]): Promise<{ proc: ChildProcess; first: string; stderr: () => string }> {
  const proc = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr += String(d)));
  const first = await new Promise<string>((resolve, reject) => {
    createInterface({ input: proc.stdout! }).once('line', resolve);
    proc.once('exit', (c) => reject(new Error(`${argv.join(' ')} exited ${c}: ${stderr}`)));
  });
  return { proc, first, stderr: () => stderr };
}

function script(cmd: 'create' | 'clean'): void {
  execFileSync('bash', [SCRIPT, cmd], { stdio: 'pipe' });
}

before(() => {
  if (!isRoot) return;
  assert.deepEqual(ours(), [], "neither the article's namespaces nor the written lab's exist before the test");
  script('create');
  // Two addresses for the server in the script's internet namespace, on a link of their own.
  execFileSync('ip', ['-n', 'ns-inet', 'link', 'add', LINK, 'type', 'veth', 'peer', 'name', 'rtstun1']);
  for (const a of [A1, A2]) execFileSync('ip', ['-n', 'ns-inet', 'addr', 'add', `${a}/32`, 'dev', LINK]);
  execFileSync('ip', ['-n', 'ns-inet', 'link', 'set', LINK, 'up']);
});

after(async () => {
  if (!isRoot) return;
  serve?.kill('SIGKILL');
  server?.kill('SIGKILL');
  await labctl(['net', 'down', labFile]);
  if (netnsList().some((n) => ARTICLE_NS.includes(n))) {
    try {
      script('clean');
    } catch {
      /* partly gone already */
    }
  }
  assert.deepEqual(ours(), [], 'nothing of the article script or the written lab is left');
  rmSync(dir, { recursive: true, force: true });
});

test("the article script's NAT: probe it, write its lab, and check, natdiscovery and probe of that lab measure the same", { skip }, async () => {
  ({ proc: server } = await startReady([
    'ip',
    'netns',
    'exec',
    'ns-inet',
    process.execPath,
    BIN,
    'stun-server',
    '--address',
    A1,
    '--alt-address',
    A2,
    '--json',
  ]));

  // Without --port, later flows to the server collide on the one outside port: probe says what to do.
  // (Then its flows hold the NAT's one port towards the server until the test makes the NAT forget them.)
  const noPort = await probe(['--namespace', 'ns-c1', '--server', A1]);
  assert.equal(noPort.exitCode, 1, noPort.stdout);
  assert.match(noPort.stdout, /this NAT may send every flow from one port; run again with --port PORT/);
  assert.match(noPort.stderr, /could not measure mapping \(/);

  try {
    execFileSync('ip', ['netns', 'exec', 'ns-c1-nat', 'conntrack', '-F'], { stdio: 'ignore' });
  } catch {
    /* "0 flow entries" exits 1 on some versions */
  }

  // c1's NAT ("restcone" in the script): every flow leaves from 54321, forwarded to 12345.
  const r = await probe(['--namespace', 'ns-c1', '--server', A1, '--port', '12345', '--lab-out', labFile, '--json']);
  assert.equal(r.exitCode, 0, `${r.stdout.slice(-4000)}\n${r.stderr}`);
  const p = JSON.parse(r.stdout) as Probe;
  const why = JSON.stringify(p.rows, null, 1);
  assert.equal(p.measured.mapping, 'endpoint-independent', why);
  assert.equal(p.measured.filtering, 'address-and-port-dependent', `the script's "restricted cone" is port-restricted\n${why}`);
  assert.equal(p.measured.hairpinning, false, why);
  assert.deepEqual(p.measured.allocation, { kind: 'fixed', port: 54321 }, why);
  assert.deepEqual(p.nat, {
    type: 'port-restricted-cone',
    hairpinning: false,
    'fixed-port': 54321,
    forwards: [{ protocol: 'udp', port: 54321, to: 'client', 'to-port': 12345 }],
  });
  assert.equal(p.labOut, labFile);
  assert.match(readFileSync(labFile, 'utf8'), /^# Written by `labctl probe --server 203\.0\.113\.1 --namespace ns-c1 --port 12345 --lab-out /m);

  // c0's NAT ("fullcone"): a full cone for inside port 12345, the one its rules name.
  const c0 = await probe(['--namespace', 'ns-c0', '--server', A1, '--port', '12345', '--json']);
  assert.equal(c0.exitCode, 0, `${c0.stdout.slice(-3000)}\n${c0.stderr}`);
  assert.equal((JSON.parse(c0.stdout) as Probe).nat?.type, 'full-cone');

  // The written lab comes up beside the script's namespaces, and measures as it was measured.
  await labctlOk(['net', 'up', labFile]);
  const lab = JSON.parse((await labctlOk(['validate', labFile, '--json'])).stdout) as {
    name: string;
    nodes: { name: string; netns: string; link: { address: string } }[];
  };
  assert.equal(lab.name, 'article-c1');
  const client = lab.nodes.find((n) => n.name === 'client')!;
  assert.equal(client.netns, `ns-${PREFIX}client`);
  const c = await check([labFile, '--json']);
  assert.equal(c.exitCode, 0, `labctl check of the written lab: it behaves as written\n${c.stdout.slice(-4000)}\n${c.stderr}`);
  const target = (JSON.parse(c.stdout) as { targets: { measured: Probe['measured'] }[] }).targets[0]!;
  assert.equal(target.measured.mapping, p.measured.mapping);
  assert.equal(target.measured.filtering, p.measured.filtering);
  assert.equal(target.measured.hairpinning, p.measured.hairpinning);
  assert.deepEqual(target.measured.port, { kind: 'fixed', port: 54321 });

  // coturn's natdiscovery, from the lab's client against labctl's server in the lab (check --serve).
  let first: string;
  ({ proc: serve, first } = await startReady([process.execPath, BIN, 'check', labFile, '--serve', '--json']));
  const served = (JSON.parse(first) as { server: { addresses: string[]; ports: number[] } }).server;
  const d = await natdiscovery(client.netns, client.link.address, served.addresses[0]!, 12345);
  assert.equal(mappingFromReflexive(d.mappingReflexive), p.measured.mapping, d.text);
  assert.equal(d.mappingVerdict, p.measured.mapping, d.text);
  assert.equal(d.filteringVerdict, p.measured.filtering, d.text);
  assert.equal(d.hairpinning, p.measured.hairpinning, d.text);
  // natdiscovery's flows from 12345 hold the NAT's one outside port towards the server: let them go.
  await labctlOk(['net', 'flush', labFile]);
  // And probe of the lab's NAT gives back the block it was written from.
  const again = await probe(['--namespace', client.netns, '--server', `${served.addresses[0]}:${served.ports[0]}`, '--port', '12345', '--json']);
  assert.equal(again.exitCode, 0, `${again.stdout.slice(-3000)}\n${again.stderr}`);
  assert.deepEqual((JSON.parse(again.stdout) as Probe).nat, p.nat, 'the lab probes as the NAT it was written from');
  serve!.kill('SIGINT');
  await new Promise((res) => serve!.once('exit', res));
  serve = undefined;
  await labctlOk(['net', 'down', labFile]);

  server!.kill('SIGTERM');
  await new Promise((res) => server!.once('exit', res));
  server = undefined;
  assert.deepEqual(leftovers('ns-inet', ARTICLE_NS), [], "probe left nothing in the script's namespaces");
});
