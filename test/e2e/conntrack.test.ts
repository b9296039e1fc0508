// `labctl conntrack`: the article's experiment 3 watched through `labctl conntrack c1-nat
// --follow --json` on the default lab with short UDP timeouts (no machines booted), then
// the listing, the human formats, and how following ends (signals, the lab going down).
//
// It brings up the default lab's namespace names (ns-c0 ... ns-inet), which other test
// files share: run it under `flock /tmp/labctl-article-names.lock`.
import { after, afterEach, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, isRoot, labctl, labctlOk, netnsList, ROOT } from '../support/cli.js';
import { statePath } from '../../src/host/state.js';

const ARTICLE_NS = ['ns-c0', 'ns-c0-nat', 'ns-c1', 'ns-c1-nat', 'ns-inet'];
const skip = isRoot ? false : 'needs root';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Proc {
  child: ChildProcess;
  out: () => string;
  err: () => string;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  write: (s: string) => void;
}

const running = new Set<ChildProcess>();

function start(file: string, args: string[]): Proc {
  const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  running.add(child);
  child.stdin!.on('error', () => {}); // it may have exited before we write
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += String(d)));
  child.stderr!.on('data', (d) => (err += String(d)));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.on('close', (code, signal) => {
      running.delete(child);
      r({ code, signal });
    }),
  );
  return { child, out: () => out, err: () => err, done, write: (s) => child.stdin!.write(s) };
}

/** `ip netns exec NS argv...`, as the article types it. */
const startIn = (netns: string, argv: string[]) => start('ip', ['netns', 'exec', netns, ...argv]);
/** labctl itself, as a user runs it. */
const startLabctl = (args: string[]) => start(process.execPath, [BIN, ...args]);

async function waitFor(what: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (what()) return true;
    await sleep(50);
  }
  return what();
}

/** Pids of a process's children (from /proc). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(d));
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

/** A follower is ready once it said so and conntrack had a moment to subscribe. */
async function ready(p: Proc): Promise<void> {
  assert.ok(await waitFor(() => /following the conntrack events/.test(p.err()), 10_000), `the follower starts (stderr: ${p.err()})`);
  await sleep(400);
}

interface Tuple {
  src: string;
  dst: string;
  sport?: number;
  dport?: number;
  srcName?: string;
  dstName?: string;
}
interface Ev {
  event?: string;
  time?: string;
  protocol: string;
  timeout?: number;
  state?: string;
  flags: string[];
  original: Tuple;
  reply: Tuple;
  id?: number;
  translation: { kind: string; text: string };
}

const jsonLines = (text: string): Ev[] =>
  text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Ev);

const dir = mkdtempSync(join(tmpdir(), 'labctl-conntrack-'));
const file = join(dir, 'article-short.yaml');

before(() => {
  // The article lab with conntrack UDP timeouts of 3 s (unreplied) and 5 s (stream).
  const text = readFileSync(join(ROOT, 'machines', 'article.yaml'), 'utf8').replace(
    /fixed-port: 54321\n/g,
    'fixed-port: 54321\n      udp-timeouts: { unreplied: 3, stream: 5 }\n',
  );
  assert.equal(text.match(/udp-timeouts/g)?.length, 2, 'both NATs get short UDP timeouts');
  writeFileSync(file, text);
  if (isRoot)
    assert.deepEqual(
      netnsList().filter((n) => ARTICLE_NS.includes(n)),
      [],
      'the article lab must not be up before this test (run it under flock /tmp/labctl-article-names.lock)',
    );
});

// A failed assertion must not leave nc, labctl or conntrack running.
afterEach(async () => {
  for (const c of running) c.kill('SIGTERM');
  await sleep(running.size ? 300 : 0);
  for (const c of running) c.kill('SIGKILL');
});

after(async () => {
  if (isRoot) await labctl(['net', 'down', file]);
  rmSync(dir, { recursive: true, force: true });
});

test('an unknown NAT is bad input (exit 2) and the message names the valid choices', async () => {
  const r = await labctl(['conntrack', 'c9-nat', file]);
  assert.equal(r.exitCode, 2, r.stderr);
  assert.match(r.stderr, /lab "article" has no NAT or other member "c9-nat" \(NATs: c0-nat, c1-nat; other members: c0, c1, inet\)/);
  const builtin = await labctl(['conntrack', 'nope']);
  assert.equal(builtin.exitCode, 2);
  assert.match(builtin.stderr, /NATs: c0-nat, c1-nat/);
  const badFile = await labctl(['conntrack', 'c1-nat', join(dir, 'missing.yaml')]);
  assert.equal(badFile.exitCode, 2);
  assert.match(badFile.stderr, /no such lab file/);
});

test('a lab that is not up: a clear message, exit 1', { skip }, async () => {
  for (const args of [
    ['conntrack', 'c1-nat', file],
    ['conntrack', 'c1-nat', file, '--follow'],
  ]) {
    const r = await labctl(args);
    assert.equal(r.exitCode, 1, r.stderr);
    assert.match(r.stderr, /^labctl: lab "article" is not up; bring it up with `labctl net up .*article-short\.yaml`/);
    assert.equal(r.stdout, '');
  }
});

test('experiment 3 followed with --follow --json: NEW, UPDATE, UPDATE ASSURED, DESTROY, named and translated', { skip }, async (t: TestContext) => {
  await labctlOk(['net', 'up', file]);
  const follow = startLabctl(['conntrack', 'c1-nat', file, '--follow', '--json']);
  await ready(follow);

  const c0 = startIn('ns-c0', ['nc', '-l', '12345', '-u']);
  await sleep(300);
  const c1 = startIn('ns-c1', ['nc', '100.64.1.100', '54321', '-u']);
  c1.write('abc\n');
  assert.ok(await waitFor(() => c0.out().includes('abc'), 2000), 'c0 gets abc');
  c0.write('reply 1\n');
  assert.ok(await waitFor(() => c1.out().includes('reply 1'), 2000), 'c1 prints reply 1');
  await sleep(2300); // past the kernel's 2 s mark: the next packet makes the flow ASSURED
  c0.write('reply 2\n');
  assert.ok(await waitFor(() => c1.out().includes('reply 2'), 2000), 'c1 prints reply 2');

  const events = () => jsonLines(follow.out()).filter((e) => e.protocol === 'udp' && e.original.src === '10.0.2.1' && e.original.dport === 54321);
  assert.ok(await waitFor(() => events().some((e) => e.flags.includes('ASSURED')), 2000), `an ASSURED update (got ${follow.out()})`);
  // Each event is printed as it happens (line-buffered), not when the follower ends.
  assert.equal(events().length, 3, `NEW, UPDATE, UPDATE ASSURED so far (got ${follow.out()})`);

  // The stream timeout is 5 s: the entry expires, and the kernel reports DESTROY when its
  // garbage collector gets to the entry, which can be a while after the timeout.
  let destroyed = await waitFor(() => events().some((e) => e.event === 'DESTROY'), 15_000);
  if (!destroyed) {
    // A dump of the table removes expired entries at once (and so reports them).
    t.diagnostic('no DESTROY 15 s after the last packet: listing the table to have the kernel reap the expired entry');
    await labctlOk(['conntrack', 'c1-nat', file]);
    destroyed = await waitFor(() => events().some((e) => e.event === 'DESTROY'), 5000);
  }
  assert.ok(destroyed, `DESTROY after the stream timeout (got ${follow.out()})`);

  const flow = events();
  assert.deepEqual(
    flow.map((e) => [e.event, e.timeout, e.flags.join(' ')]),
    [
      ['NEW', 3, 'UNREPLIED'],
      ['UPDATE', 3, ''],
      ['UPDATE', 5, 'ASSURED'],
      ['DESTROY', undefined, 'ASSURED'],
    ],
  );
  assert.equal(new Set(flow.map((e) => e.id)).size, 1, 'one conntrack entry');
  const port = flow[0]!.original.sport!;
  for (const e of flow) {
    assert.match(e.time ?? '', /^\d{4}-\d\d-\d\dT/);
    assert.deepEqual([e.original.srcName, e.original.dstName, e.reply.srcName, e.reply.dstName], ['c1', 'c0-nat', 'c0-nat', 'c1-nat']);
    assert.equal(e.translation.kind, 'snat');
    assert.equal(e.translation.text, `c1 10.0.2.1:${port} -> 100.64.2.100:54321 -> 100.64.1.100:54321 c0-nat`);
  }

  follow.child.kill('SIGTERM');
  const end = await follow.done;
  assert.equal(end.code, 0, `SIGTERM stops it cleanly (stderr: ${follow.err()})`);
  c0.child.kill();
  c1.child.kill();
});

test('the listing: a table and --json; in c0-nat the port forward shows as DNAT', { skip }, async () => {
  // A TCP connection c1 -> c0-nat's forwarded port (c0:12345), held open while listing.
  const watchC0 = startLabctl(['conntrack', 'c0-nat', file, '--follow']);
  await ready(watchC0);
  const c0 = startIn('ns-c0', ['nc', '-l', '12345']);
  await sleep(300);
  const c1 = startIn('ns-c1', ['nc', '100.64.1.100', '54321']);
  c1.write('hello\n');
  assert.ok(await waitFor(() => c0.out().includes('hello'), 3000), 'c0 gets hello over TCP');

  const table = await labctlOk(['conntrack', 'c1-nat', file]);
  const lines = table.stdout.trimEnd().split('\n');
  assert.match(lines[0]!, /^PROTO\s+STATE\s+TIMEOUT\s+TRANSLATION$/);
  assert.ok(
    lines.some((l) => /^tcp\s+ESTABLISHED ASSURED\s+\d+s\s+c1 10\.0\.2\.1:\d+ -> 100\.64\.2\.100:54321 -> 100\.64\.1\.100:54321 c0-nat$/.test(l)),
    table.stdout,
  );

  const json = await labctlOk(['conntrack', 'c1-nat', file, '--json']);
  const entries = jsonLines(json.stdout);
  assert.equal(entries.length, json.stdout.trim().split('\n').length, 'one JSON object per line');
  const tcp = entries.find((e) => e.protocol === 'tcp' && e.original.src === '10.0.2.1');
  assert.ok(tcp, json.stdout);
  assert.equal(tcp.event, undefined);
  assert.equal(tcp.state, 'ESTABLISHED');
  assert.deepEqual(tcp.flags, ['ASSURED']);
  assert.ok((tcp.timeout ?? 0) > 0);
  assert.equal(tcp.original.srcName, 'c1');
  assert.equal(tcp.reply.dstName, 'c1-nat');

  const inbound = await labctlOk(['conntrack', 'c0-nat', file]);
  assert.match(inbound.stdout, /^tcp\s+ESTABLISHED ASSURED\s+\d+s\s+c1-nat 100\.64\.2\.100:54321 -> 100\.64\.1\.100:54321 -> 10\.0\.1\.1:12345 c0$/m);

  // The human --follow line: time of day, event, protocol, timeout, state, translation. A
  // SYN_SENT flow has the NAT's transitory TCP timer (labctl's default, RFC 5382's 240 s).
  assert.match(
    watchC0.out(),
    /^\d\d:\d\d:\d\d\.\d{3} NEW +tcp +240s SYN_SENT UNREPLIED +c1-nat 100\.64\.2\.100:54321 -> 100\.64\.1\.100:54321 -> 10\.0\.1\.1:12345 c0$/m,
  );
  assert.match(watchC0.out(), /^\d\d:\d\d:\d\d\.\d{3} UPDATE +tcp +\d+s ESTABLISHED ASSURED +c1-nat /m);
  watchC0.child.kill('SIGINT');
  assert.equal((await watchC0.done).code, 0, `SIGINT stops it cleanly (stderr: ${watchC0.err()})`);

  // Any lab member has a table; an empty one says so.
  const empty = await labctlOk(['conntrack', 'c0', file]);
  assert.equal(empty.stdout.trim(), 'no connection tracking entries in c0 (ns-c0)');
  c1.child.kill();
  c0.child.kill();
});

test('following stops by itself when the lab goes down; nothing is left', { skip }, async () => {
  const follow = startLabctl(['conntrack', 'c1-nat', 'article', '--follow', '--json']); // the lab by its name
  await ready(follow);
  const conntrackPids = childrenOf(follow.child.pid!);
  assert.equal(conntrackPids.length, 1, 'labctl runs one conntrack');
  await labctlOk(['net', 'down', file]);
  const end = await Promise.race([follow.done, sleep(5000).then(() => undefined)]);
  assert.ok(end, 'the follower ends within 5 s of `net down`');
  assert.equal(end.code, 0, follow.err());
  assert.match(follow.err(), /namespace ns-c1-nat is gone/);
  assert.deepEqual(
    netnsList().filter((n) => ARTICLE_NS.includes(n)),
    [],
  );
  assert.equal(existsSync(statePath('article')), false, 'no state file');
  for (const pid of conntrackPids) assert.equal(existsSync(`/proc/${pid}`), false, `its conntrack (pid ${pid}) is gone`);
  assert.equal(running.size, 0, 'no process of this test is left');
  const r = await labctl(['conntrack', 'c1-nat', 'article']);
  assert.equal(r.exitCode, 1);
  assert.match(r.stderr, /lab "article" is not up/);
});
