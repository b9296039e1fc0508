// `labctl capture`: packets sent in a lab brought up with `net up` (no machines) read back
// from the pcapng files it writes (by tcpdump -r, and block by block by this test's own
// reader for the interfaces), streamed with -w - into a reader while it runs, the readable
// lines named after the lab's members; how it ends (--count, --duration, SIGTERM, Ctrl-C in
// a terminal, labctl killed) with the file complete and no tcpdump left; and bad input.
//
// Its lab is the article's under its own name and prefix (ns-cap-*), so it clashes with no
// other test's namespaces; run it under flock /tmp/labctl-e2e.lock all the same.
import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, isRoot, labctl, labctlOk, netnsList, ROOT } from '../support/cli.js';
import { readPcapng } from '../support/pcapng-reader.js';

const skip = isRoot ? false : 'needs root';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const NS = ['ns-cap-c0', 'ns-cap-c0-nat', 'ns-cap-c1', 'ns-cap-c1-nat', 'ns-cap-inet'];

const dir = mkdtempSync(join(tmpdir(), 'labctl-capture-'));
const file = join(dir, 'capture.yaml');

interface Proc {
  child: ChildProcess;
  out: () => Buffer;
  err: () => string;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const running = new Set<ChildProcess>();

function start(argv: string[], stdin: 'ignore' | NodeJS.ReadableStream = 'ignore'): Proc {
  const child = spawn(argv[0]!, argv.slice(1), { stdio: [stdin === 'ignore' ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
  if (stdin !== 'ignore') stdin.pipe(child.stdin!);
  running.add(child);
  const out: Buffer[] = [];
  let err = '';
  child.stdout!.on('data', (d: Buffer) => out.push(d));
  child.stderr!.on('data', (d) => (err += String(d)));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.on('close', (code, signal) => {
      running.delete(child);
      r({ code, signal });
    }),
  );
  return { child, out: () => Buffer.concat(out), err: () => err, done };
}

const startCapture = (args: string[]) => start([process.execPath, BIN, 'capture', ...args]);

async function waitFor(what: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (what()) return true;
    await sleep(50);
  }
  return what();
}

/** The capture has begun once labctl says so (every tcpdump listens). */
async function ready(p: Proc): Promise<void> {
  assert.ok(await waitFor(() => /capturing on /.test(p.err()), 15_000), `the capture starts (stderr: ${p.err()})`);
}

function statOf(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** tcpdumps started by that process (its children: setpriv and nsenter exec into tcpdump). */
function tcpdumpsOf(pid: number): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d) && Number(statOf(Number(d))?.[1]) === pid)
    .map(Number)
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'tcpdump';
      } catch {
        return false;
      }
    });
}

/** Gone, or a zombie (dead, waiting for PID 1 here, which reaps late). */
const gone = (pid: number) => {
  const state = statOf(pid)?.[0];
  return state === undefined || state === 'Z';
};

function isDescendant(pid: number, ancestor: number): boolean {
  for (let p = pid; p > 1; p = Number(statOf(p)?.[1] ?? 0)) if (p === ancestor) return true;
  return false;
}

const ping = (fromNs: string, to: string, count: number) =>
  execFileSync('ip', ['netns', 'exec', fromNs, 'ping', '-c', String(count), '-i', '0.2', '-W', '2', to], { encoding: 'utf8' });

/** tcpdump's reading of a capture file, one line per packet. */
function readBack(path: string): string[] {
  const r = spawnSync('tcpdump', ['-r', path, '-n'], { encoding: 'utf8' });
  assert.equal(r.status, 0, `tcpdump -r ${path}: ${r.stderr}`);
  return r.stdout.trim().split('\n').filter(Boolean);
}

/** The source address of an Ethernet frame carrying IPv4. */
const ipv4Source = (frame: Buffer) => (frame.readUInt16BE(12) === 0x0800 ? [...frame.subarray(26, 30)].join('.') : undefined);

before(async () => {
  const text = readFileSync(join(ROOT, 'machines', 'article.yaml'), 'utf8').replace(/^name: article$/m, 'name: capture\nprefix: cap-');
  assert.match(text, /prefix: cap-/);
  writeFileSync(file, text);
  if (isRoot) {
    assert.deepEqual(
      netnsList().filter((n) => NS.includes(n)),
      [],
      'no namespace of this test exists before it',
    );
    await labctlOk(['net', 'up', file]);
  }
});

afterEach(async () => {
  for (const c of running) c.kill('SIGTERM');
  await sleep(running.size ? 500 : 0);
  for (const c of running) c.kill('SIGKILL');
});

after(async () => {
  if (isRoot) await labctl(['net', 'down', file]);
  rmSync(dir, { recursive: true, force: true });
});

test('bad input: exit 2, each with its message, nothing started', { skip }, async () => {
  const cases: [string[], RegExp][] = [
    [['c9'], /^labctl: no lab that is up has a member "c9" \(.*capture: c0, c0-nat, c1, c1-nat, inet[;)]/m],
    [['c1-nat', '--lab', 'capture', '--link', 'c0'], /^labctl: c1-nat has no link to "c0" \(its links go to c1, inet\)$/m],
    [['c1', '--lab', 'capture', '--link', 'inet'], /^labctl: c1 has no link to "inet" \(its links go to c1-nat\)$/m],
    [['c1-nat', '--lab', 'nope'], /^labctl: lab "nope" is not up \(labs up: .*capture/m],
    [['c1-nat', '--lab', 'capture', '--count', '0'], /^labctl: --count must be a whole number of packets above 0, not "0"$/m],
    [['c1-nat', '--lab', 'capture', '--duration', 'soon'], /^labctl: --duration must be a number of seconds above 0/m],
    [['c1-nat', '--lab', 'capture', '--', 'udp', 'portt', '9'], /^labctl: bad filter "udp portt 9": can't parse filter expression: syntax error$/m],
    [['c1-nat', '--lab', 'capture', '-w', join(dir, 'no', 'such', 'dir.pcapng')], /^labctl: cannot write .*no\/such\/dir\.pcapng: ENOENT/m],
  ];
  for (const [args, message] of cases) {
    const r = await labctl(['capture', ...args]);
    assert.equal(r.exitCode, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message, args.join(' '));
    assert.doesNotMatch(r.stderr, /capturing on/);
    assert.equal(r.stdout, '');
  }
  // No lab up at all (a run dir of its own).
  const empty = mkdtempSync(join(dir, 'run-'));
  const none = await labctl(['capture', 'c1-nat'], { env: { LABCTL_RUN_DIR: empty } });
  assert.equal(none.exitCode, 2, none.stderr);
  assert.match(none.stderr, /^labctl: no lab is up: bring one up with `labctl net up \[FILE\]`/);
});

test('tcpdump missing: exit 1, and how to install it', { skip }, async () => {
  // In a mount namespace of its own, tcpdump's path holds /dev/null (not an executable).
  const tcpdump = execFileSync('sh', ['-c', 'command -v tcpdump'], { encoding: 'utf8' }).trim();
  const r = spawnSync(
    'unshare',
    [
      '--mount',
      '--propagation',
      'private',
      '--',
      'sh',
      '-c',
      'mount --bind /dev/null "$1" && shift && exec "$@"',
      'sh',
      tcpdump,
      process.execPath,
      BIN,
      'capture',
      'c1-nat',
      '--lab',
      'capture',
    ],
    { encoding: 'utf8', timeout: 30_000 },
  );
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /^labctl: tcpdump is not installed .*: apt-get install tcpdump$/m);
});

test('-w FILE --count: the packets sent, on both interfaces of the NAT, named in the file', { skip }, async () => {
  const path = join(dir, 'count.pcapng');
  // 3 echo requests and 3 replies, each seen on c1-nat's LAN link and on its uplink.
  const cap = startCapture(['c1-nat', '--lab', 'capture', '-w', path, '--count', '12', '--', 'icmp']);
  await ready(cap);
  assert.match(
    cap.err(),
    /capturing on c1-nat \(ns-cap-c1-nat\): ve-c1-nat-node \(to c1\), ve-c1-nat-inet \(to inet\); filter "icmp"; pcapng to .*count\.pcapng; Ctrl-C stops/,
  );
  const dumps = tcpdumpsOf(cap.child.pid!);
  assert.equal(dumps.length, 2, 'one tcpdump per interface');
  ping('ns-cap-c1', '100.64.2.254', 3);
  const end = await cap.done;
  assert.equal(end.code, 0, cap.err());
  assert.match(cap.err(), /12 packets captured on c1-nat \(.*count\.pcapng\)/);
  assert.ok(dumps.every(gone), 'no tcpdump left');

  const f = readPcapng(readFileSync(path));
  assert.equal(f.application, 'labctl');
  assert.deepEqual(
    f.interfaces.map((i) => [i.name, i.description, i.linktype, i.tsresol]),
    [
      ['ve-c1-nat-node', 'c1-nat: link to c1 (lab capture)', 1, 9],
      ['ve-c1-nat-inet', 'c1-nat: link to inet (lab capture)', 1, 9],
    ],
  );
  assert.equal(f.packets.length, 12);
  // Tagged with the right interface: the LAN side carries c1's address, the uplink the NAT's.
  const sources = f.packets.map((p) => `${f.interfaces[p.interfaceId]!.name} ${ipv4Source(p.data)}`);
  assert.equal(sources.filter((s) => s === 've-c1-nat-node 10.0.2.1').length, 3, sources.join('\n'));
  assert.equal(sources.filter((s) => s === 've-c1-nat-inet 100.64.2.100').length, 3, sources.join('\n'));
  assert.equal(sources.filter((s) => s.endsWith(' 100.64.2.254')).length, 6, sources.join('\n'));
  const times = f.packets.map((p) => p.time);
  assert.deepEqual(times, [...times].sort(), 'in capture order');
  assert.ok(Math.abs(times[0]! - Date.now() / 1000) < 60, 'timestamps are the capture times');

  const lines = readBack(path);
  assert.equal(lines.length, 12, lines.join('\n'));
  assert.equal(lines.filter((l) => / IP 10\.0\.2\.1 > 100\.64\.2\.254: ICMP echo request/.test(l)).length, 3, lines.join('\n'));
  assert.equal(lines.filter((l) => / IP 100\.64\.2\.100 > 100\.64\.2\.254: ICMP echo request/.test(l)).length, 3, lines.join('\n'));
  assert.equal(lines.filter((l) => / IP 100\.64\.2\.254 > 100\.64\.2\.100: ICMP echo reply/.test(l)).length, 3, lines.join('\n'));
  assert.equal(lines.filter((l) => / IP 100\.64\.2\.254 > 10\.0\.2\.1: ICMP echo reply/.test(l)).length, 3, lines.join('\n'));
});

test('--link and --duration: UDP through the internet, one interface, the file complete when the time is up', { skip }, async () => {
  const path = join(dir, 'duration.pcapng');
  const started = Date.now();
  // One flow (the same source port each time): c1-nat sends every flow from its fixed outside
  // port, so a second flow to the same destination would clash with the first and be dropped.
  const cap = startCapture(['inet', '--lab', 'capture', '--link', 'c1-nat', '-w', path, '--duration', '3', '--', 'udp']);
  await ready(cap);
  for (const word of ['one', 'two', 'three']) {
    execFileSync('ip', ['netns', 'exec', 'ns-cap-c1', 'socat', '-u', 'STDIN', 'UDP-SENDTO:100.64.1.100:54321,sourceport=40000'], { input: `${word}\n` });
  }
  const end = await cap.done;
  const took = (Date.now() - started) / 1000;
  assert.equal(end.code, 0, cap.err());
  assert.ok(took >= 3 && took < 10, `stopped after its 3 s (took ${took.toFixed(1)} s)`);
  const f = readPcapng(readFileSync(path));
  assert.deepEqual(
    f.interfaces.map((i) => [i.name, i.description]),
    [['ve-c1-inet', 'inet: link to c1-nat (lab capture)']],
  );
  const lines = readBack(path);
  // c1-nat sends every flow from its fixed port 54321.
  assert.deepEqual(
    lines.map((l) => l.replace(/^\S+ /, '')),
    [
      'IP 100.64.2.100.54321 > 100.64.1.100.54321: UDP, length 4',
      'IP 100.64.2.100.54321 > 100.64.1.100.54321: UDP, length 4',
      'IP 100.64.2.100.54321 > 100.64.1.100.54321: UDP, length 6',
    ],
  );
  // Ethernet (14), IPv4 (20) and UDP (8) headers, then what was sent.
  assert.deepEqual(
    f.packets.map((p) => p.data.subarray(42).toString()),
    ['one\n', 'two\n', 'three\n'],
  );
});

test('-w - streams: a reader prints the packets while the capture runs; SIGTERM ends both cleanly', { skip }, async () => {
  const cap = startCapture(['c0-nat', '--lab', 'capture', '--link', 'inet', '-w', '-', '--', 'icmp']);
  // tcpdump reads pcapng from a pipe, as wireshark -k -i - does.
  const reader = start(['tcpdump', '-r', '-', '-n', '-l'], cap.child.stdout!);
  await ready(cap);
  ping('ns-cap-c0', '100.64.1.254', 1);
  assert.ok(
    await waitFor(() => /IP 100\.64\.1\.254 > 100\.64\.1\.100: ICMP echo reply/.test(reader.out().toString()), 5000),
    `the reader has the packets before the capture ends (reader: ${reader.out().toString()} ${reader.err()})`,
  );
  const dumps = tcpdumpsOf(cap.child.pid!);
  assert.equal(dumps.length, 1);
  cap.child.kill('SIGTERM');
  assert.equal((await cap.done).code, 0, cap.err());
  assert.equal((await reader.done).code, 0, `the reader sees a complete stream: ${reader.err()}`);
  assert.match(cap.err(), /2 packets captured on c0-nat \(standard output\)/);
  assert.ok(dumps.every(gone), 'no tcpdump left');
});

test('without -w: readable lines, after their interface, the lab members named', { skip }, async () => {
  const cap = startCapture(['c1-nat', '--lab', 'capture', '--count', '4', '--', 'icmp']);
  await ready(cap);
  ping('ns-cap-c1', '100.64.2.254', 1);
  const end = await cap.done;
  assert.equal(end.code, 0, cap.err());
  const lines = cap.out().toString().trimEnd().split('\n');
  assert.equal(lines.length, 4, lines.join('\n'));
  const shape = lines.map((l) => l.replace(/ \d\d:\d\d:\d\d\.\d+ /, ' T ').replace(/, id \d+/, ''));
  for (const want of [
    've-c1-nat-node  T IP 10.0.2.1 (c1) > 100.64.2.254 (inet): ICMP echo request, seq 1, length 64',
    've-c1-nat-inet  T IP 100.64.2.100 (c1-nat) > 100.64.2.254 (inet): ICMP echo request, seq 1, length 64',
    've-c1-nat-inet  T IP 100.64.2.254 (inet) > 100.64.2.100 (c1-nat): ICMP echo reply, seq 1, length 64',
    've-c1-nat-node  T IP 100.64.2.254 (inet) > 10.0.2.1 (c1): ICMP echo reply, seq 1, length 64',
  ]) {
    assert.ok(shape.includes(want), `${want}\nin:\n${shape.join('\n')}`);
  }
});

test('labctl killed (SIGKILL): its tcpdumps die with it', { skip }, async () => {
  const cap = startCapture(['c1', '--lab', 'capture', '-w', join(dir, 'killed.pcapng')]);
  await ready(cap);
  const dumps = tcpdumpsOf(cap.child.pid!);
  assert.equal(dumps.length, 1);
  cap.child.kill('SIGKILL');
  await cap.done;
  assert.ok(await waitFor(() => dumps.every(gone), 3000), 'the parent-death signal took the tcpdump along');
});

test('Ctrl-C in a terminal: exit 0, the file complete, no tcpdump left', { skip }, async () => {
  const path = join(dir, 'ctrl-c.pcapng');
  // A private tmux server whose socket lives in this test's directory (removed after it).
  const socket = join(dir, 'tmux.sock');
  const tmux = (...args: string[]) => spawnSync('tmux', ['-S', socket, '-f', '/dev/null', ...args], { encoding: 'utf8' });
  const screen = () => tmux('capture-pane', '-p', '-t', 'cap').stdout;
  // A small sh runs labctl and then prints its exit status on the screen.
  const made = tmux(
    'new-session',
    '-d',
    '-s',
    'cap',
    '-x',
    '200',
    '-y',
    '50',
    '--',
    'sh',
    '-c',
    // (The trap: Ctrl-C reaches the whole foreground process group, and a sh that does
    // not catch SIGINT dies of it; a caught signal is reset to its default in labctl.)
    'trap : INT; "$@"; echo "labctl-exit=$?"; exec sleep 600',
    'sh',
    process.execPath,
    BIN,
    'capture',
    'c1-nat',
    '--lab',
    'capture',
    '-w',
    path,
  );
  assert.equal(made.status, 0, made.stderr);
  try {
    assert.ok(await waitFor(() => /capturing on c1-nat/.test(screen()), 15_000), `the capture starts:\n${screen()}`);
    const panePid = Number(tmux('display-message', '-p', '-t', 'cap', '#{pane_pid}').stdout.trim());
    const labctlPid = readdirSync('/proc')
      .map(Number)
      .find((p) => Number(statOf(p)?.[1]) === panePid && tcpdumpsOf(p).length > 0);
    assert.ok(labctlPid, 'labctl runs in the pane');
    const dumps = tcpdumpsOf(labctlPid);
    assert.equal(dumps.length, 2);
    ping('ns-cap-c1', '100.64.2.254', 2);
    // Soon after: the packets tcpdump has when it is stopped are all written.
    await sleep(100);
    tmux('send-keys', '-t', 'cap', 'C-c');
    assert.ok(await waitFor(() => /^labctl-exit=0\s*$/m.test(screen()), 10_000), `labctl ends with 0 after Ctrl-C:\n${screen()}`);
    assert.match(screen(), /\d+ packets captured on c1-nat/);
    assert.ok(dumps.every(gone), 'no tcpdump left');
    const f = readPcapng(readFileSync(path));
    assert.equal(f.interfaces.length, 2);
    const echoes = readBack(path).filter((l) => /ICMP echo (request|reply)/.test(l));
    assert.equal(echoes.length, 8, echoes.join('\n'));
  } finally {
    tmux('kill-server');
  }
});

test('-w - into a reader that goes away: the next packet ends the capture, exit 0', { skip }, async () => {
  // labctl's standard output straight into head (as in a shell pipeline), which leaves after 100 bytes.
  const pipeline = start([
    'sh',
    '-c',
    '{ "$@"; echo "labctl-exit=$?" >&2; } | head -c 100 >/dev/null',
    'sh',
    process.execPath,
    BIN,
    'capture',
    'c0',
    '--lab',
    'capture',
    '-w',
    '-',
    '--',
    'icmp',
  ]);
  await ready(pipeline);
  const labctlPid = readdirSync('/proc')
    .map(Number)
    .find((p) => isDescendant(p, pipeline.child.pid!) && tcpdumpsOf(p).length > 0);
  assert.ok(labctlPid, 'labctl runs');
  const dumps = tcpdumpsOf(labctlPid);
  assert.equal(dumps.length, 1);
  ping('ns-cap-c0', '100.64.1.254', 2);
  const end = await Promise.race([pipeline.done, sleep(10_000).then(() => undefined)]);
  assert.ok(end, `the capture ends once its output is closed (stderr: ${pipeline.err()})`);
  assert.match(pipeline.err(), /^labctl-exit=0$/m);
  assert.ok(dumps.every(gone), 'no tcpdump left');
});

// Last: it takes the lab down.
test('the lab goes down while capturing: the capture ends, exit 0, the file complete', { skip }, async () => {
  const path = join(dir, 'down.pcapng');
  const cap = startCapture(['inet', '--lab', 'capture', '-w', path, '--', 'icmp']);
  await ready(cap);
  const dumps = tcpdumpsOf(cap.child.pid!);
  ping('ns-cap-c0', '100.64.1.254', 1);
  await labctlOk(['net', 'down', file]);
  const end = await Promise.race([cap.done, sleep(10_000).then(() => undefined)]);
  assert.ok(end, `the capture ends when the namespace goes (stderr: ${cap.err()})`);
  assert.equal(end.code, 0, cap.err());
  assert.match(cap.err(), /namespace ns-cap-inet is gone \(the lab went down\); stopped/);
  assert.ok(dumps.every(gone), 'no tcpdump left');
  assert.equal(readBack(path).filter((l) => /ICMP echo/.test(l)).length, 2);
});
