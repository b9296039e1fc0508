// `labctl up` with the direct backend on this machine (PID 1 is not systemd): the
// article's lab booted from the shared bookworm test image, the article's experiments
// typed into the machines with `labctl exec`, then `labctl down` leaves nothing.
import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { BIN, isRoot, labctl, labctlOk, netnsList, ROOT } from '../support/cli.js';
import { getTestImage } from '../support/test-image.js';
import { driveShellInTmux } from '../support/tmux-shell.js';
import { execa } from 'execa';
import { cmdline as cmdlineOf, notifyReceiversIn, signalTree } from '../../src/machine/proc.js';
import { descendants, whichExecutable } from '../../src/util/process.js';

const skip = isRoot ? false : 'needs root';
const MACHINES = ['c0', 'c0-nat', 'c1', 'c1-nat'];
const ARTICLE_NS = ['ns-c0', 'ns-c0-nat', 'ns-c1', 'ns-c1-nat', 'ns-inet'];
let dataDir = '';
let rootfs = '';
const dir = join(tmpdir(), 'labctl-machines');
const shortLab = join(dir, 'article-short.yaml');

const running = new Set<ChildProcess>();
interface Proc {
  out: () => string;
  done: Promise<number | null>;
  write: (s: string) => void;
  kill: (sig?: NodeJS.Signals) => void;
  pid: number;
}
function start(args: string[], env: Record<string, string> = {}): Proc {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  running.add(child);
  let out = '';
  child.stdout!.on('data', (d) => (out += String(d)));
  child.stderr!.on('data', (d) => (out += String(d)));
  child.stdin!.on('error', () => {});
  const done = new Promise<number | null>((r) =>
    child.on('exit', (code) => {
      running.delete(child);
      r(code);
    }),
  );
  return { out: () => out, done, write: (s) => child.stdin!.write(s), kill: (sig = 'SIGTERM') => child.kill(sig), pid: child.pid! };
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
function tryKill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone */
  }
}
async function waitForText(p: Proc, text: string, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline && !p.out().includes(text)) await sleep(50);
  return p.out().includes(text);
}
/** nspawn processes labctl started for these machines (found independently of labctl's own lookup). */
function nspawnPids(names: string[]): number[] {
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .map(Number)
    .filter((pid) => {
      const argv = cmdlineOf(pid);
      return (argv[0] ?? '').endsWith('systemd-nspawn') && names.some((n) => argv.includes(`--machine=${n}`));
    });
}
function nspawnOf(names: string[]): string[] {
  return nspawnPids(names).map((pid) => cmdlineOf(pid).join(' '));
}
/** Waits until a UDP socket listens on port in netns (so a probe sent next finds it). */
async function waitListening(netns: string, port: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    try {
      if (execFileSync('ip', ['netns', 'exec', netns, 'ss', '-Hlun', `sport = :${port}`], { encoding: 'utf8' }).trim()) return;
    } catch {
      /* not yet */
    }
    await sleep(100);
  }
  throw new Error(`nothing listens on udp/${port} in ${netns}`);
}
/** Ends whatever still listens on udp/port in netns (an earlier experiment's nc), seen from the host. */
function killListeners(netns: string, port: number): void {
  const out = execFileSync('ip', ['netns', 'exec', netns, 'ss', '-Hlunp', `sport = :${port}`], { encoding: 'utf8' });
  for (const m of out.matchAll(/pid=(\d+)/g)) {
    try {
      process.kill(Number(m[1]), 'SIGKILL');
    } catch {
      /* gone */
    }
  }
}
function snapshotsLeft(): string[] {
  return readdirSync(dirname(rootfs)).filter((e) => e.startsWith('.#'));
}
function assertClean(what: string): void {
  assert.deepEqual(
    netnsList().filter((n) => ARTICLE_NS.includes(n)),
    [],
    `${what}: no namespace left`,
  );
  assert.deepEqual(nspawnOf(MACHINES), [], `${what}: no nspawn left`);
  assert.deepEqual(snapshotsLeft(), [], `${what}: no ephemeral snapshot left`);
  assert.ok(!existsSync('/run/labctl/article.json'), `${what}: no state file left`);
  assert.ok(!existsSync('/run/labctl/article'), `${what}: no console logs left`);
  const locks = existsSync('/run/labctl') ? readdirSync('/run/labctl').filter((f) => f.startsWith('article.lock')) : [];
  assert.deepEqual(locks, [], `${what}: no lock file (nor a killed labctl's pid file) left`);
  assert.deepEqual(notifyReceiversIn('/run/labctl/article'), [], `${what}: no readiness receiver (socat) left`);
}

before(async () => {
  if (!isRoot) return;
  const image = await getTestImage();
  dataDir = image.dataDir;
  rootfs = image.path;
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    shortLab,
    readFileSync(join(ROOT, 'machines', 'article.yaml'), 'utf8')
      .replace(/fixed-port: 54321\n/g, 'fixed-port: 54321\n      udp-timeouts: { unreplied: 3, stream: 5 }\n')
      // The article's lab boots noble; the suite boots the shared bookworm test image (test/e2e/noble-article.test.ts boots noble).
      .replace(/^image: noble$/m, 'image: bookworm'),
  );
});
afterEach(async () => {
  // SIGTERM first: labctl exec passes it on to the command in the machine. A SIGKILLed
  // labctl would leave nc running there, holding our pipes open and this process alive.
  for (const c of running) c.kill('SIGTERM');
  await sleep(500);
  for (const c of running) {
    c.kill('SIGKILL');
    c.stdout?.destroy();
    c.stderr?.destroy();
    c.stdin?.destroy();
  }
});
after(async () => {
  if (!isRoot) return;
  await labctl(['down', shortLab]);
  await labctl(['down']);
});

test('up boots the four article machines, status shows them, a second up changes nothing', { skip }, async () => {
  const r = await labctlOk(['up', shortLab, '--backend', 'direct', '--data-dir', dataDir], { env: { LABCTL_TRACE: '1' } });
  assert.match(r.stdout, /lab "article" is up: 4 machines \(direct backend\)/);
  // Readiness came from nspawn's READY=1 (socat is installed here), not from polling the machines.
  assert.doesNotMatch(r.stderr, /is-system-running/, 'up polled the machines instead of reading their READY=1');
  assert.deepEqual(notifyReceiversIn('/run/labctl/article'), [], 'the readiness receivers stopped once the machines were ready');
  type Row = { name: string; state: string; backend: string; netns: string; addresses: string[]; image: string; nat: string; uptime: string };
  const status = JSON.parse((await labctlOk(['status', '--json'])).stdout) as { lab: string; machines: Row[]; bareNamespaces: string[] }[];
  const lab = status.find((l) => l.lab === 'article')!;
  assert.deepEqual(lab.machines.map((m) => m.name).sort(), [...MACHINES].sort());
  for (const m of lab.machines) {
    assert.ok(['running', 'degraded'].includes(m.state), `${m.name} is ${m.state}`);
    assert.equal(m.backend, 'direct');
    assert.equal(m.netns, `ns-${m.name}`);
    assert.equal(m.image, 'bookworm');
    assert.match(m.uptime, /^\d+s$/, `${m.name} has been up for seconds`);
  }
  const row = (name: string) => lab.machines.find((m) => m.name === name)!;
  assert.deepEqual(row('c1-nat').addresses.sort(), ['10.0.2.100', '100.64.2.100']);
  assert.deepEqual(row('c0').addresses, ['10.0.1.1']);
  assert.equal(row('c0-nat').nat, 'EIM+EIF (full-cone)');
  assert.equal(row('c1-nat').nat, 'EIM+ADF (restricted-cone)');
  assert.equal(row('c0').nat, 'behind c0-nat: EIM+EIF (full-cone)');
  assert.equal(row('c1').nat, 'behind c1-nat: EIM+ADF (restricted-cone)');
  const text = (await labctlOk(['status'])).stdout;
  assert.match(text, /^c1\s+(running|degraded)\s+ns-c1\s+10\.0\.2\.1\s+bookworm\s+behind c1-nat: EIM\+ADF \(restricted-cone\)\s+\d+s\s+direct\s*$/m, text);
  assert.deepEqual(lab.bareNamespaces, ['ns-inet']);
  const again = await labctlOk(['up', shortLab, '--backend', 'direct', '--data-dir', dataDir]);
  assert.match(again.stdout, /already up with 4 machines; nothing changed$/m);
  // Asked for another image and backend: still nothing changed, and it says what runs.
  const other = await labctlOk(['up', shortLab, '--backend', 'systemd', '--image', 'trixie', '--data-dir', dataDir]);
  assert.match(
    other.stdout,
    /already up with 4 machines; nothing changed: it uses image bookworm \(not trixie\) and the direct backend \(not systemd\); `labctl down` first to change that/,
  );
  assert.equal(nspawnOf(MACHINES).length, 4, 'the same four machines run');
});

test("exec passes stdout, stderr and the exit code through, in the machine's own namespaces", { skip }, async () => {
  const host = await labctl(['exec', 'c0', '--', 'hostname']);
  assert.equal(host.stdout.trim(), 'c0');
  const code = await labctl(['exec', 'c1-nat', '--', 'sh', '-c', 'echo out; echo err >&2; exit 3']);
  assert.equal(code.exitCode, 3);
  assert.equal(code.stdout.trim(), 'out');
  assert.equal(code.stderr.trim(), 'err');
  const addr = await labctlOk(['exec', 'c1-nat', '--', 'ip', '-o', '-4', 'addr', 'show', 've-c1-nat-inet']);
  assert.match(addr.stdout, /100\.64\.2\.100\/24/);
  const ids = await Promise.all(['c0', 'c1'].map(async (m) => (await labctlOk(['exec', m, '--', 'cat', '/etc/machine-id'])).stdout.trim()));
  assert.notEqual(ids[0], ids[1], 'each booted copy gets its own machine-id');
  const missing = await labctl(['exec', 'nosuch', '--', 'true']);
  assert.equal(missing.exitCode, 2);
  assert.match(missing.stderr, /no running machine "nosuch"/);
});

test('shell: an interactive login shell in a terminal (tmux): prompt, resize, Ctrl-C, exit status', { skip }, async () => {
  const run = async (argv: string[]) => {
    const r = await execa(argv[0]!, argv.slice(1), { reject: false, stdin: 'ignore', timeout: 30_000 });
    return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
  };
  await driveShellInTmux(run, [process.execPath, BIN, 'shell', 'c1-nat'], {
    socket: `labctl-e2e-${process.pid}`,
    probe: 'hostname; ip -o -4 addr show ve-c1-nat-inet',
    expect: /ve-c1-nat-inet\s+inet 100\.64\.2\.100\/24/,
  });
});

test('experiment 1 typed into the machines: full cone delivers, c0-nat shows NEW ... UNREPLIED', { skip }, async () => {
  const events = start(['exec', 'c0-nat', '--', 'conntrack', '-E']);
  const c0 = start(['exec', 'c0', '--', 'nc', '-l', '12345', '-u']);
  await waitListening('ns-c0', 12345);
  await sleep(500); // conntrack -E subscribed
  await labctl(['exec', 'c1', '--', 'sh', '-c', 'echo abc | timeout 1 nc 100.64.1.100 54321 -u']); // timeout ends nc: exit 124
  assert.ok(await waitForText(c0, 'abc', 3000), `c0 prints abc (${JSON.stringify(c0.out())})`);
  assert.ok(await waitForText(events, '[NEW]', 3000));
  assert.match(
    events.out(),
    /\[NEW\] udp\s+17 3 src=100\.64\.2\.100 dst=100\.64\.1\.100 sport=54321 dport=54321 \[UNREPLIED\] src=10\.0\.1\.1 dst=100\.64\.2\.100 sport=12345 dport=54321/,
  );
  events.kill();
  c0.kill();
});

test('experiments 2 and 3 typed into the machines: restricted cone, then the full conntrack sequence', { skip }, async () => {
  await labctlOk(['net', 'flush', shortLab]);
  // 2: nothing reaches c1 before it has sent.
  const ev2 = start(['exec', 'c1-nat', '--', 'conntrack', '-E']);
  const c1l = start(['exec', 'c1', '--', 'nc', '-l', '12345', '-u']);
  await waitListening('ns-c1', 12345);
  await sleep(500);
  await labctl(['exec', 'c0', '--', 'sh', '-c', 'echo xyz | timeout 1 nc 100.64.2.100 54321 -u']);
  await sleep(800);
  assert.equal(c1l.out(), '', 'c1 receives nothing');
  assert.doesNotMatch(ev2.out(), /\[NEW\]/, 'c1-nat shows no event');
  ev2.kill();
  c1l.kill();
  await labctlOk(['net', 'flush', shortLab]);
  // 3: c1 speaks first. Nothing of experiments 1 and 2 may still listen.
  killListeners('ns-c0', 12345);
  killListeners('ns-c1', 12345);
  await sleep(300);
  const events = start(['exec', 'c1-nat', '--', 'conntrack', '-E']);
  const c0 = start(['exec', 'c0', '--', 'nc', '-l', '12345', '-u']);
  await waitListening('ns-c0', 12345);
  await sleep(500);
  // c1 types abc and keeps nc open for the replies.
  const c1 = start(['exec', 'c1', '--', 'sh', '-c', '(echo abc; sleep 20) | nc 100.64.1.100 54321 -u']);
  assert.ok(await waitForText(c0, 'abc', 3000), 'c0 gets abc');
  c0.write('reply 1\n');
  assert.ok(await waitForText(c1, 'reply 1', 3000), 'c1 prints reply 1');
  await sleep(2200);
  c0.write('reply 2\n');
  assert.ok(await waitForText(c1, 'reply 2', 3000), 'c1 prints reply 2');
  // Past the 5 s stream timeout the entry has expired; the next packet finds it so, and
  // conntrack reports DESTROY (the kernel's own GC may report it much later).
  await sleep(6000);
  c0.write('reply after destroy\n');
  assert.ok(await waitForText(events, '[DESTROY]', 4000), 'DESTROY once the stream timeout has passed');
  await sleep(800);
  assert.doesNotMatch(c1.out(), /reply after destroy/);
  const ev = events.out();
  const flow = 'src=10\\.0\\.2\\.1 dst=100\\.64\\.1\\.100 sport=\\d+ dport=54321';
  const reply = 'src=100\\.64\\.1\\.100 dst=100\\.64\\.2\\.100 sport=54321 dport=54321';
  assert.match(ev, new RegExp(`\\[NEW\\] udp\\s+17 3 ${flow} \\[UNREPLIED\\] ${reply}`));
  assert.match(ev, new RegExp(`\\[UPDATE\\] udp\\s+17 3 ${flow} ${reply}\\n`));
  assert.match(ev, new RegExp(`\\[UPDATE\\] udp\\s+17 5 ${flow} ${reply} \\[ASSURED\\]`));
  assert.match(ev, new RegExp(`\\[DESTROY\\] udp\\s+17 ${flow} ${reply} \\[ASSURED\\]`));
  for (const p of [events, c0, c1]) p.kill();
});

test('net down, and a net up that would rebuild the network, refuse while the machines run (exit 2) and change nothing', { skip }, async () => {
  const namespaces = netnsList()
    .filter((n) => ARTICLE_NS.includes(n))
    .sort();
  const state = readFileSync('/run/labctl/article.json', 'utf8');
  for (const lab of [shortLab, 'article']) {
    const r = await labctl(['net', 'down', lab]);
    assert.equal(r.exitCode, 2, `net down ${lab}: ${r.stdout}${r.stderr}`);
    assert.match(
      r.stderr,
      /cannot take down the network of lab "article": it has machines running \((c0|c0-nat|c1|c1-nat)(, (c0|c0-nat|c1|c1-nat)){3}\); use `labctl down`, which stops them too/,
    );
  }
  // A lost NAT table makes `net up` rebuild the network: the machines' namespaces would go.
  execFileSync('ip', ['netns', 'exec', 'ns-c1-nat', 'nft', 'delete', 'table', 'ip', 'labctl']);
  const up = await labctl(['net', 'up', shortLab]);
  assert.equal(up.exitCode, 2, up.stdout + up.stderr);
  assert.match(up.stderr, /cannot rebuild the network of lab "article": it has machines running \(.+\); use `labctl down`/);
  assert.deepEqual(
    netnsList()
      .filter((n) => ARTICLE_NS.includes(n))
      .sort(),
    namespaces,
    'every namespace is still there',
  );
  assert.equal(nspawnOf(MACHINES).length, 4, 'every machine still runs');
  assert.equal(readFileSync('/run/labctl/article.json', 'utf8'), state, 'the state file is as it was');
});

test('down stops every machine and leaves nothing behind', { skip }, async () => {
  const r = await labctlOk(['down', shortLab]);
  assert.match(r.stdout, /stopped 4 machines, removed 5 namespaces/);
  assertClean('after down');
});

test('net down of a lab whose recorded machines have stopped (not through labctl) removes its network', { skip }, async () => {
  await labctlOk(['up', shortLab, '--backend', 'direct', '--data-dir', dataDir]);
  // SIGTERM: each nspawn powers its machine off and removes its snapshot; the state file
  // still records the machines.
  for (const pid of nspawnPids(MACHINES)) process.kill(pid, 'SIGTERM');
  assert.ok(await until(() => nspawnOf(MACHINES).length === 0, 20_000), 'the machines stopped');
  assert.equal(articleState()?.machines?.length, 4, 'the state file still records them');
  const r = await labctl(['net', 'down', shortLab]);
  assert.equal(r.exitCode, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /lab "article" is down: removed 5 namespaces/);
  // What net down leaves of the machines (their console logs) goes with down.
  await labctlOk(['down', shortLab]);
  assertClean('after the machines stopped, net down and down');
});

test('up of a lab without machines: a second up says it is already up and changes nothing', { skip }, async () => {
  const bare = join(dir, 'no-machines.yaml');
  writeFileSync(
    bare,
    'name: bare\nprefix: mdb-\nsites:\n  - name: a\n    nat: { type: full-cone, machine: false }\n    nodes: [{ name: a1, machine: false }]\n',
  );
  const own = () =>
    netnsList()
      .filter((n) => n.startsWith('ns-mdb-'))
      .sort();
  try {
    const first = await labctlOk(['up', bare, '--backend', 'direct', '--data-dir', dataDir]);
    assert.match(first.stdout, /lab "bare" is up: 0 machines/);
    const namespaces = own();
    assert.equal(namespaces.length, 3, `its namespaces: ${namespaces.join(' ')}`);
    const state = readFileSync('/run/labctl/bare.json', 'utf8');
    const again = await labctlOk(['up', bare, '--backend', 'direct', '--data-dir', dataDir]);
    assert.match(again.stdout, /lab "bare" is already up with no machines; nothing changed$/m);
    assert.equal(readFileSync('/run/labctl/bare.json', 'utf8'), state, 'the state file is as it was (the network was not rebuilt)');
    assert.deepEqual(own(), namespaces);
  } finally {
    await labctl(['down', bare]);
    rmSync(bare, { force: true });
  }
  assert.deepEqual(own(), [], 'down removed its namespaces');
  assert.ok(!existsSync('/run/labctl/bare.json'), 'and its state file');
});

test('without a working socat, up asks each machine whether it has booted instead', { skip }, async () => {
  // A socat that cannot receive stands in for a host without one.
  const stubs = join(dir, 'no-socat');
  mkdirSync(stubs, { recursive: true });
  writeFileSync(join(stubs, 'socat'), '#!/bin/sh\necho "socat stand-in: not available" >&2\nexit 1\n', { mode: 0o755 });
  const r = await labctlOk(['up', shortLab, '--backend', 'direct', '--data-dir', dataDir], {
    env: { LABCTL_TRACE: '1', PATH: `${stubs}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}` },
  });
  assert.match(r.stdout, /lab "article" is up: 4 machines \(direct backend\)/);
  assert.match(r.stderr, /systemctl is-system-running --wait/, 'readiness came from asking the machines');
  const status = JSON.parse((await labctlOk(['status', '--json'])).stdout) as { lab: string; machines: { state: string }[] }[];
  for (const m of status.find((l) => l.lab === 'article')!.machines) assert.ok(['running', 'degraded'].includes(m.state), `a machine is ${m.state}`);
  await labctlOk(['down', shortLab]);
  assertClean('after up and down without socat');
});

test('a machine that does not boot in time fails up, says which and after how long, and up rolls back', { skip }, async () => {
  // 1 ms: no machine boots that fast (they can boot in under 300 ms here, which an earlier
  // timeout of 0.3 s let through some runs), so up must fail whatever the host's speed. At
  // 1 ms a machine has written no console line yet, so the message has none to show; the
  // systemd backend's test shows the journal lines of a machine that failed later.
  const r = await labctl(['up', shortLab, '--backend', 'direct', '--data-dir', dataDir, '--timeout', '0.001']);
  try {
    assert.equal(r.exitCode, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /machine c\d(-nat)?: not ready after 1 ms/);
    assert.match(r.stderr, /rolled back: nothing of lab "article" is left/);
    assertClean('after a failed up');
  } finally {
    // Had it come up after all, the next tests must not find it up.
    if (r.exitCode === 0) await labctl(['down', shortLab]);
  }
});

/** The article lab's state file as written so far, or undefined. */
function articleState(): { status: string; machines?: { name: string }[] } | undefined {
  try {
    return JSON.parse(readFileSync('/run/labctl/article.json', 'utf8')) as { status: string; machines?: { name: string }[] };
  } catch {
    return undefined;
  }
}
async function until(what: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline && !what()) await sleep(10);
  return what();
}

// Kill points by what up has reached on the host (checked before the kill, so that each
// point really tests a different leftover), not by the clock.
const KILL_POINTS: { label: string; reached: () => boolean }[] = [
  { label: 'while the network is made (its state file says creating)', reached: () => articleState()?.status === 'creating' },
  { label: 'once the namespaces exist', reached: () => ARTICLE_NS.every((n) => netnsList().includes(n)) },
  { label: 'while the machines boot (nspawn running, none recorded)', reached: () => nspawnOf(MACHINES).length > 0 && !articleState()?.machines?.length },
  { label: 'once a machine is recorded as started', reached: () => (articleState()?.machines?.length ?? 0) > 0 },
];
for (const point of KILL_POINTS) {
  test(`SIGKILL of up ${point.label}, then down: a clean host`, { skip }, async () => {
    const up = start(['up', shortLab, '--backend', 'direct', '--data-dir', dataDir]);
    const reached = await until(point.reached, 30_000);
    up.kill('SIGKILL');
    assert.ok(reached, `up reached the point "${point.label}" before it was killed: ${up.out()}`);
    assert.equal(await up.done, null, `up was killed before it finished: ${up.out()}`);
    const r = await labctl(['down', shortLab]);
    assert.equal(r.exitCode, 0, r.stderr);
    assertClean(`SIGKILL ${point.label}`);
  });
}

test("a machine of the same name started by hand (the article's -M) makes up refuse before it changes anything", { skip }, async () => {
  // The article's way: systemd-nspawn ... -M c0 (here read-only, in a network namespace of its own, running sleep).
  const byHand = spawn(
    'systemd-nspawn',
    ['--quiet', '--register=no', '--keep-unit', '--read-only', '--private-network', '-D', rootfs, '-M', 'c0', '/bin/sleep', '300'],
    { stdio: 'ignore' },
  );
  try {
    const sleeping = () => byHand.pid !== undefined && descendants([byHand.pid]).some((p) => cmdlineOf(p.pid)[0] === '/bin/sleep');
    assert.ok(await until(sleeping, 10_000), 'the hand-started machine runs');
    const r = await labctl(['up', shortLab, '--backend', 'direct', '--data-dir', dataDir]);
    assert.equal(r.exitCode, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /a machine named c0 is already running \(not started by lab "article"\)/);
    assert.deepEqual(
      netnsList().filter((n) => ARTICLE_NS.includes(n)),
      [],
      'no namespace was created',
    );
    assert.ok(!existsSync('/run/labctl/article.json'), 'no state file was written');
  } finally {
    byHand.kill('SIGTERM');
    await new Promise((r) => (byHand.exitCode !== null ? r(null) : byHand.once('exit', r)));
  }
  assertClean('after the refused up');
});

test('a second lab with a machine name the first holds (another prefix: c0- + nat = c0-nat) is refused before it changes anything', { skip }, async () => {
  // A prefix does not rule a clash out: it is prepended to names, so lab "clash" with prefix
  // c0- and a node nat plans machine c0-nat (in ns-c0-nat), the article's NAT c0-nat.
  const clashLab = join(dir, 'clash.yaml');
  writeFileSync(clashLab, 'name: clash\nprefix: c0-\nnodes:\n  - { name: nat }\n');
  await labctlOk(['up', shortLab, '--backend', 'direct', '--data-dir', dataDir]);
  try {
    const namespacesBefore = netnsList().sort();
    const r = await labctl(['up', clashLab, '--backend', 'direct', '--data-dir', dataDir]);
    assert.equal(r.exitCode, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /cannot bring lab "clash" up:\n\s+machine c0-nat is running in lab "article"; give this lab a different `prefix:`/);
    assert.deepEqual(netnsList().sort(), namespacesBefore, 'no namespace was created (nor ns-c0-inet) or removed');
    assert.ok(!existsSync('/run/labctl/clash.json'), 'no state file was written');
    assert.ok(!existsSync('/run/labctl/clash'), 'no console log directory was made');
    assert.deepEqual(
      readdirSync('/run/labctl').filter((f) => f.startsWith('clash.lock')),
      [],
      'its lock is released',
    );
    assert.equal(nspawnOf(MACHINES).length, 4, "the article's machines still run");
  } finally {
    await labctlOk(['down', shortLab]);
    rmSync(clashLab, { force: true });
  }
  assertClean('after the refused second lab and down');
});

test("after a host reboot (machines and namespaces gone, /run emptied), up sweeps the dead machines' snapshots", { skip }, async () => {
  await labctlOk(['up', shortLab, '--backend', 'direct', '--data-dir', dataDir]);
  // A reboot, as far as labctl can see: every process of the lab dies at once (no clean-up),
  // the namespaces and everything under /run go.
  const nspawns = nspawnPids(MACHINES);
  assert.equal(nspawns.length, 4);
  for (const pid of nspawns) signalTree(pid, 'SIGKILL');
  assert.ok(await until(() => nspawnOf(MACHINES).length === 0, 10_000), 'the machines died');
  for (const p of notifyReceiversIn('/run/labctl/article')) tryKill(p);
  for (const n of ARTICLE_NS) execFileSync('ip', ['netns', 'delete', n]);
  rmSync('/run/labctl/article.json', { force: true });
  rmSync('/run/labctl/article', { recursive: true, force: true });
  assert.equal(snapshotsLeft().filter((e) => !e.endsWith('.lck')).length, 4, `the dead machines' snapshots stay: ${snapshotsLeft().join(' ')}`);

  await labctlOk(['up', shortLab, '--backend', 'direct', '--data-dir', dataDir]);
  assert.equal(nspawnOf(MACHINES).length, 4, 'the lab runs again');
  assert.equal(snapshotsLeft().filter((e) => !e.endsWith('.lck')).length, 4, `only the running machines' snapshots are left: ${snapshotsLeft().join(' ')}`);
  await labctlOk(['down', shortLab]);
  assertClean('after the reboot, up and down');
});

test('SIGKILL of up, then up again recovers, then down', { skip }, async () => {
  const up = start(['up', shortLab, '--backend', 'direct', '--data-dir', dataDir]);
  assert.ok(await waitForText(up, 'c1-nat in ns-c1-nat', 20000), up.out());
  await sleep(150); // machines are booting
  up.kill('SIGKILL');
  assert.equal(await up.done, null, `up was killed before it finished: ${up.out()}`);
  const r = await labctlOk(['up', shortLab, '--backend', 'direct', '--data-dir', dataDir]);
  assert.match(r.stdout, /is up: 4 machines/);
  assert.equal(nspawnOf(MACHINES).length, 4, 'exactly one nspawn per machine');
  await labctlOk(['down', shortLab]);
  assertClean('after recovery');
});

test('Ctrl-C during up stops cleanly', { skip }, async () => {
  const up = start(['up', shortLab, '--backend', 'direct', '--data-dir', dataDir]);
  assert.ok(await waitForText(up, 'c1-nat in ns-c1-nat', 20000), up.out());
  await sleep(200); // machines are booting
  up.kill('SIGINT');
  const code = await up.done;
  assert.equal(code, 130, up.out());
  assertClean('after Ctrl-C');
});

test('Ctrl-C while the network is made: up waits for that step, then rolls back; a second Ctrl-C does not cut the rollback short', { skip }, async () => {
  // The rollback deletes the namespaces with `ip -force -batch`: a stand-in ip first on PATH
  // makes that step take 2 s, so that the second Ctrl-C surely comes while it runs (a fast
  // host otherwise finishes the rollback before it).
  const stubs = join(dir, 'slow-rollback');
  mkdirSync(stubs, { recursive: true });
  const realIp = whichExecutable('ip');
  assert.ok(realIp, 'ip is installed');
  writeFileSync(join(stubs, 'ip'), `#!/bin/sh\nif [ "$1" = -force ]; then sleep 2; fi\nexec ${realIp} "$@"\n`, { mode: 0o755 });
  const up = start(['up', shortLab, '--backend', 'direct', '--data-dir', dataDir], { PATH: `${stubs}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}` });
  assert.ok(await until(() => articleState()?.status === 'creating', 30_000), `up reached the network: ${up.out()}`);
  up.kill('SIGINT');
  assert.ok(await until(() => up.out().includes('SIGINT: stopping what was started'), 5_000), up.out());
  await sleep(300); // the rollback is under way, in the slowed step
  up.kill('SIGINT');
  const code = await up.done;
  assert.equal(code, 130, up.out());
  assert.match(up.out(), /SIGINT: stopping what was started/);
  assert.match(up.out(), /SIGINT: still cleaning up/);
  // Nothing of a step that was in flight appears after labctl has gone (a namespace, a state file saying up).
  await sleep(1000);
  assertClean('after Ctrl-C while the network was made, and a second one');
});
