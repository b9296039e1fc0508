// `labctl probe` and `labctl stun-server` on lab NATs: the server runs in the lab's internet
// namespace on two addresses of its own (as on a cloud VM), the probe runs from a node's
// namespace, and what it measures agrees with the lab's declaration for each NAT (one per
// classic type, hairpinning, no port preservation, address-dependent mapping, the article's
// fixed port); with --lifetime it measures the declared timers; against coturn's turnserver
// it measures the same; without root it runs in the current namespace (stun-server too);
// bad input is refused before anything runs.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { execa } from 'execa';
import { stringify } from 'yaml';
import { BIN, isRoot, labctl, labctlOk, netnsList } from '../support/cli.js';

const skip = isRoot ? false : 'needs root';
const PREFIX = 'prb-';
const INET = `ns-${PREFIX}inet`;
const LINK = 'prbstun0';
const [A1, A2] = ['198.51.100.1', '198.51.100.2'];
const [T1, T2] = ['192.0.2.1', '192.0.2.2'];
const dir = mkdtempSync(join(tmpdir(), 'labctl-probe-'));
const file = join(dir, 'probe.yaml');
const ours = () => netnsList().filter((n) => n.startsWith(`ns-${PREFIX}`));

interface Site {
  name: string;
  nat: Record<string, unknown>;
  /** What probe must measure, and the nat: block it must print. */
  expect: { mapping: string; filtering: string; hairpinning: boolean; allocation: string; pooling?: string; nat: Record<string, unknown> };
  port?: number;
}
const SITES: Site[] = [
  {
    name: 'fc',
    nat: { type: 'full-cone' },
    expect: {
      mapping: 'endpoint-independent',
      filtering: 'endpoint-independent',
      hairpinning: false,
      allocation: 'preserved',
      nat: { type: 'full-cone', hairpinning: false, 'port-preservation': true },
    },
  },
  {
    name: 'rc',
    nat: { type: 'restricted-cone', hairpinning: true },
    expect: {
      mapping: 'endpoint-independent',
      filtering: 'address-dependent',
      hairpinning: true,
      allocation: 'preserved',
      nat: { type: 'restricted-cone', hairpinning: true, 'port-preservation': true },
    },
  },
  {
    name: 'prc',
    nat: { type: 'port-restricted-cone' },
    expect: {
      mapping: 'endpoint-independent',
      filtering: 'address-and-port-dependent',
      hairpinning: false,
      allocation: 'preserved',
      nat: { type: 'port-restricted-cone', hairpinning: false, 'port-preservation': true },
    },
  },
  {
    name: 'sym',
    nat: { type: 'symmetric' },
    expect: {
      mapping: 'address-and-port-dependent',
      filtering: 'address-and-port-dependent',
      hairpinning: false,
      allocation: 'random',
      nat: { type: 'symmetric', hairpinning: false },
    },
  },
  {
    name: 'npp',
    nat: { type: 'port-restricted-cone', 'port-preservation': false },
    expect: {
      mapping: 'endpoint-independent',
      filtering: 'address-and-port-dependent',
      hairpinning: false,
      allocation: 'random',
      nat: { type: 'port-restricted-cone', hairpinning: false, 'port-preservation': false },
    },
  },
  {
    name: 'adm',
    nat: { mapping: 'address-dependent', filtering: 'endpoint-independent' },
    expect: {
      mapping: 'address-dependent',
      filtering: 'endpoint-independent',
      hairpinning: false,
      allocation: 'random',
      nat: { mapping: 'address-dependent', filtering: 'endpoint-independent', hairpinning: false },
    },
  },
  {
    name: 'seq',
    nat: { type: 'symmetric', 'port-allocation': 'sequential', outside: 2, pooling: 'arbitrary' },
    expect: {
      mapping: 'address-and-port-dependent',
      filtering: 'address-and-port-dependent',
      hairpinning: false,
      allocation: 'sequential (+1)',
      pooling: 'arbitrary',
      nat: { type: 'symmetric', hairpinning: false, 'port-allocation': 'sequential', outside: 2, pooling: 'arbitrary' },
    },
  },
  {
    name: 'fx',
    nat: { type: 'restricted-cone', 'fixed-port': 54321, forwards: [{ protocol: 'udp', port: 54321, to: 'fx-n', 'to-port': 12345 }] },
    port: 12345,
    expect: {
      mapping: 'endpoint-independent',
      filtering: 'address-dependent',
      hairpinning: false,
      allocation: 'fixed 54321',
      nat: { type: 'restricted-cone', hairpinning: false, 'fixed-port': 54321, forwards: [{ protocol: 'udp', port: 54321, to: 'client', 'to-port': 12345 }] },
    },
  },
  {
    name: 'short',
    nat: { type: 'full-cone', 'udp-timeouts': { unreplied: 3, stream: 5 } },
    expect: {
      mapping: 'endpoint-independent',
      filtering: 'endpoint-independent',
      hairpinning: false,
      allocation: 'preserved',
      nat: { type: 'full-cone', hairpinning: false, 'port-preservation': true },
    },
  },
];

interface Probe {
  measured: { mapping: string; filtering: string; hairpinning: unknown; port: unknown; allocation: { kind: string; port?: number }; pooling: string };
  rows: { test: string; measured: string }[];
  nat?: Record<string, unknown>;
  lifetime?: { kinds: { kind: string; estimate: { seconds?: number } }[]; keepalive?: number };
  server: { other: { address: string; port: number }; otherFrom: string };
  unmeasured: string[];
  labOut?: string;
}

let server: ChildProcess | undefined;
let turnserver: ChildProcess | undefined;

function addAddresses(link: string, addresses: string[]): void {
  execFileSync('ip', ['-n', INET, 'link', 'add', link, 'type', 'veth', 'peer', 'name', `${link.slice(0, -1)}1`]);
  for (const a of addresses) execFileSync('ip', ['-n', INET, 'addr', 'add', `${a}/32`, 'dev', link]);
  execFileSync('ip', ['-n', INET, 'link', 'set', link, 'up']);
}

/** Starts a long-running command and resolves at its first line of output that `ready` accepts. */
async function startReady(argv: string[], ready: (line: string) => boolean, stdout = true): Promise<{ proc: ChildProcess; output: () => string }> {
  const proc = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  proc.stderr!.on('data', (d) => (text += String(d)));
  const lines = createInterface({ input: stdout ? proc.stdout! : proc.stderr! });
  if (!stdout) proc.stdout!.on('data', (d) => (text += String(d)));
  await new Promise<void>((resolve, reject) => {
    lines.on('line', (l) => {
      text += `${l}\n`;
      if (ready(l)) resolve();
    });
    proc.once('exit', (c) => reject(new Error(`${argv.join(' ')} exited ${c}: ${text}`)));
  });
  return { proc, output: () => text };
}

async function probe(args: string[], timeout = 120_000): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const r = await execa(process.execPath, [BIN, 'probe', ...args], { reject: false, env: {}, timeout });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

before(async () => {
  if (!isRoot) return;
  assert.deepEqual(ours(), [], 'no namespace of the probe lab exists before the test');
  writeFileSync(
    file,
    stringify({ name: 'probe-e2e', prefix: PREFIX, sites: SITES.map((s) => ({ name: s.name, nat: s.nat, nodes: [{ name: `${s.name}-n` }] })) }),
  );
  await labctlOk(['net', 'up', file]);
  addAddresses(LINK, [A1, A2]);
  // labctl stun-server in the internet namespace, as on any host with two addresses.
  ({ proc: server } = await startReady(
    ['ip', 'netns', 'exec', INET, process.execPath, BIN, 'stun-server', '--address', A1, '--alt-address', A2, '--json'],
    (l) => l.includes('"ready"'),
  ));
});

after(async () => {
  if (!isRoot) return;
  server?.kill('SIGKILL');
  turnserver?.kill('SIGKILL');
  await labctl(['net', 'down', file]);
  assert.deepEqual(ours(), [], 'no namespace of the probe lab is left');
  rmSync(dir, { recursive: true, force: true });
});

test('probe of each lab NAT (one per classic type, and more) agrees with its declaration', { skip }, async () => {
  const results = await Promise.all(
    SITES.map(async (s) => ({
      s,
      r: await probe(['--namespace', `ns-${PREFIX}${s.name}-n`, '--server', A1, ...(s.port ? ['--port', String(s.port)] : []), '--json']),
    })),
  );
  for (const { s, r } of results) {
    assert.equal(r.exitCode, 0, `${s.name}: ${r.stdout.slice(-3000)}\n${r.stderr}`);
    const p = JSON.parse(r.stdout) as Probe;
    const why = `${s.name}: ${JSON.stringify(p.rows, null, 1)}`;
    assert.equal(p.measured.mapping, s.expect.mapping, why);
    assert.equal(p.measured.filtering, s.expect.filtering, why);
    assert.equal(p.measured.hairpinning, s.expect.hairpinning, why);
    assert.equal(p.rows.find((x) => x.test === 'port allocation')?.measured, s.expect.allocation, why);
    assert.equal(p.measured.pooling, s.expect.pooling ?? 'paired', `${why}: one outside address, or an arbitrary pool of two`);
    assert.deepEqual(p.nat, s.expect.nat, why);
    assert.deepEqual(p.server.other, { address: A2, port: 3479 }, "the server's OTHER-ADDRESS");
  }
  // The text: evidence for people, and the nat: block.
  const text = await probe(['--namespace', `ns-${PREFIX}rc-n`, '--server', `${A1}:3478`]);
  assert.equal(text.exitCode, 0, text.stderr);
  assert.match(
    text.stdout,
    /^labctl probe: the NAT between namespace ns-prb-rc-n \(10\.0\.\d+\.1\) and the STUN server 198\.51\.100\.1:3478, other address 198\.51\.100\.2:3479 \(from OTHER-ADDRESS\)/,
  );
  assert.match(
    text.stdout,
    /^ {2}filtering +address-dependent +answers let in after sending to A1:P1: run 1: :\d+ same yes, other port 198\.51\.100\.1:3479 yes, other address no, both no/m,
  );
  assert.match(
    text.stdout,
    /^The nat: block that behaves the same \(lab-file syntax\):\n {2}nat:\n {4}type: restricted-cone\n {4}hairpinning: true\n {4}port-preservation: true$/m,
  );
});

test('--lab-out writes a lab that labctl validate takes as it is', { skip }, async () => {
  const out = join(dir, 'probed-sym.yaml');
  const r = await probe(['--namespace', `ns-${PREFIX}sym-n`, '--server', A1, '--lab-out', out]);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`wrote the lab to ${out.replaceAll('.', '\\.')}`));
  const v = await labctl(['validate', out]);
  assert.equal(v.exitCode, 0, v.stderr);
  assert.match(v.stdout, /lab "probed-sym" is valid/);
  assert.match(v.stdout, /nat probed-nat \(ns-probeds-probed-nat\): symmetric mapping address-and-port-dependent, filtering address-and-port-dependent/);
  assert.match(readFileSync(out, 'utf8'), /^# {3}port allocation: random$/m);
});

test('--lifetime measures the declared UDP timers and the keepalive, into udp-timeouts', { skip }, async () => {
  const r = await probe(['--namespace', `ns-${PREFIX}short-n`, '--server', A1, '--lifetime', '--lifetime-max', '8', '--json']);
  assert.equal(r.exitCode, 0, `${r.stdout.slice(-3000)}\n${r.stderr}`);
  const p = JSON.parse(r.stdout) as Probe;
  assert.deepEqual(
    p.lifetime?.kinds.map((k) => [k.kind, k.estimate.seconds]),
    [
      ['unreplied', 3],
      ['stream', 5],
    ],
  );
  assert.equal(p.lifetime?.keepalive, 2);
  assert.deepEqual(p.nat?.['udp-timeouts'], { unreplied: 3, stream: 5 });
});

test("probe against coturn's turnserver measures what it measures against labctl's server", { skip }, async () => {
  addAddresses('prbturn0', [T1, T2]);
  ({ proc: turnserver } = await startReady(
    [
      'ip',
      'netns',
      'exec',
      INET,
      'turnserver',
      '-n',
      '-L',
      T1,
      '-L',
      T2,
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
    () => {
      const ss = execFileSync('ip', ['netns', 'exec', INET, 'ss', '-unl'], { encoding: 'utf8' });
      return [`${T1}:3478`, `${T1}:3479`, `${T2}:3478`, `${T2}:3479`].every((e) => ss.includes(e));
    },
  ));
  try {
    for (const name of ['rc', 'sym']) {
      const s = SITES.find((x) => x.name === name)!;
      const r = await probe(['--namespace', `ns-${PREFIX}${name}-n`, '--server', T1, '--json']);
      assert.equal(r.exitCode, 0, `${name} against coturn: ${r.stdout.slice(-3000)}\n${r.stderr}`);
      const p = JSON.parse(r.stdout) as Probe;
      assert.deepEqual(p.server.other, { address: T2, port: 3479 }, "coturn's OTHER-ADDRESS");
      assert.deepEqual(p.nat, s.expect.nat, `${name}: the same nat: block as against labctl's server`);
    }
    // coturn names its second -L address as OTHER-ADDRESS whatever address was asked: pointed there, probe says what to do.
    const wrong = await probe(['--namespace', `ns-${PREFIX}rc-n`, '--server', T2]);
    assert.equal(wrong.exitCode, 1);
    assert.match(wrong.stderr, /names its own address as its other address \(192\.0\.2\.2:3479\); point --server at its first address/);
  } finally {
    turnserver!.kill('SIGTERM');
    await new Promise((res) => turnserver!.once('exit', res));
    turnserver = undefined;
    execFileSync('ip', ['-n', INET, 'link', 'del', 'prbturn0']);
  }
});

test('without root: probe in the current namespace, and a stun-server of its own on ports above 1024', { skip }, async () => {
  const nobody = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, BIN];
  const r = await execa('ip', ['netns', 'exec', `ns-${PREFIX}prc-n`, ...nobody, 'probe', '--server', A1, '--json'], { reject: false, env: {} });
  assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
  assert.deepEqual((JSON.parse(String(r.stdout)) as Probe).nat, SITES.find((s) => s.name === 'prc')!.expect.nat);
  // A second server beside the first, as nobody, on other ports; stopped by SIGTERM, it says how many requests it answered.
  const { proc, output } = await startReady(
    ['ip', 'netns', 'exec', INET, ...nobody, 'stun-server', '--address', A1, '--alt-address', A2, '--port', '5000'],
    (l) => l.startsWith("labctl's STUN server"),
  );
  const p = await probe(['--namespace', `ns-${PREFIX}fc-n`, '--server', `${A1}:5000`, '--json']);
  assert.equal(p.exitCode, 0, p.stderr);
  assert.deepEqual((JSON.parse(p.stdout) as Probe).server.other, { address: A2, port: 5001 });
  proc.kill('SIGTERM');
  const code = await new Promise((res) => proc.once('exit', res));
  assert.equal(code, 0, output());
  assert.match(output(), /is listening on 198\.51\.100\.1:5000, 198\.51\.100\.1:5001, 198\.51\.100\.2:5000 and 198\.51\.100\.2:5001\n/);
  assert.match(output(), /stopped after \d+ request\(s\)\n$/);
  const root = await execa('ip', ['netns', 'exec', `ns-${PREFIX}prc-n`, ...nobody, 'probe', '--namespace', 'ns-x', '--server', A1], { reject: false, env: {} });
  assert.equal(root.exitCode, 2);
  assert.match(String(root.stderr), /probe --namespace needs root \(it runs the probes inside another network namespace\)/);
});

test('bad input is refused before anything runs, naming the option', { skip }, async () => {
  const cases: [string[], RegExp][] = [
    [[], /--server HOST\[:PORT\] is needed/],
    [['--server', 'stun example'], /--server wants HOST or HOST:PORT, HOST an IPv4 address or a name \(got "stun example"\)/],
    [['--server', '198.51.100.1:99999'], /--server wants HOST or HOST:PORT/],
    [['--server', '198.51.100'], /--server wants HOST or HOST:PORT/],
    [['--server', A1, '--alt-server', A1], /--alt-server must name the server's second address, not 198\.51\.100\.1 again/],
    [['--server', 'no-such-host.invalid'], /--server: cannot resolve "no-such-host\.invalid" to an IPv4 address/],
    [['--server', A1, '--runs', '0'], /--runs wants a whole number from 1 to 10/],
    [['--server', A1, '--lifetime-max', '10'], /--lifetime-max goes with --lifetime/],
    [['--server', A1, '--namespace', 'ns-prb-nosuch'], /no network namespace "ns-prb-nosuch"/],
  ];
  for (const [args, re] of cases) {
    const r = await probe(args);
    assert.equal(r.exitCode, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re, args.join(' '));
  }
  // No server there: an error of the operation (1), said as such.
  const none = await probe(['--namespace', `ns-${PREFIX}fc-n`, '--server', '198.51.100.9']);
  assert.equal(none.exitCode, 1);
  assert.match(none.stderr, /no answer from the STUN server at 198\.51\.100\.9 from ns-prb-fc-n/);
  const server = (args: string[]) =>
    execa('ip', ['netns', 'exec', INET, process.execPath, BIN, 'stun-server', ...args], { reject: false, env: {}, timeout: 20_000 });
  const serverCases: [string[], number, RegExp][] = [
    [['--address', A1, '--alt-address', A1], 2, /--alt-address must differ from --address/],
    [['--address', A1], 2, /--address and --alt-address are both needed/],
    [['--address', A1, '--alt-address', A2, '--port', '3478', '--alt-port', '3478'], 2, /--alt-port must differ from --port/],
    [
      ['--address', '203.0.113.77', '--alt-address', '203.0.113.78'],
      2,
      /cannot listen on 203\.0\.113\.77:3478: 203\.0\.113\.77 is not an address of this host/,
    ],
    [['--address', A1, '--alt-address', A2], 1, /cannot listen on 198\.51\.100\.1:3478: the port is in use/],
  ];
  for (const [args, code, re] of serverCases) {
    const r = await server(args);
    assert.equal(r.exitCode, code, `stun-server ${args.join(' ')}: ${r.stderr}`);
    assert.match(String(r.stderr), re);
  }
});
