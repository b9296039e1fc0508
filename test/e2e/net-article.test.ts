// The article's lab and its three experiments, typed as the article types them
// (`ip netns exec` + nc + conntrack -E), against `labctl net up` of the default lab.
import { after, afterEach, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hostNetworkFingerprint, inNs, isRoot, labctl, labctlOk, netnsList, ROOT } from '../support/cli.js';

const ARTICLE_NS = ['ns-c0', 'ns-c0-nat', 'ns-c1', 'ns-c1-nat', 'ns-inet'];
const skip = isRoot ? false : 'needs root';

interface Proc {
  out: () => string;
  done: Promise<number | null>;
  kill: () => void;
  write: (s: string) => void;
  end: () => void;
}

const running = new Set<import('node:child_process').ChildProcess>();

/** Starts argv in a namespace: `ip netns exec NS argv...` */
function startIn(netns: string, argv: string[]): Proc {
  const child = spawn('ip', ['netns', 'exec', netns, ...argv], { stdio: ['pipe', 'pipe', 'pipe'] });
  running.add(child);
  child.on('exit', () => running.delete(child));
  child.stdin.on('error', () => {}); // the process may have exited before we write
  let out = '';
  child.stdout.on('data', (d) => (out += String(d)));
  child.stderr.on('data', (d) => (out += String(d)));
  const done = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { out: () => out, done, kill: () => child.kill('SIGTERM'), write: (s) => child.stdin.write(s), end: () => child.stdin.end() };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitForText(p: Proc, text: string, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (p.out().includes(text)) return true;
    await sleep(50);
  }
  return p.out().includes(text);
}

/** `echo MSG | nc HOST PORT -u` in a namespace, as the article types it. */
async function ncSend(netns: string, host: string, port: number, msg: string): Promise<void> {
  const p = startIn(netns, ['timeout', '1', 'nc', host, String(port), '-u']);
  p.write(`${msg}\n`);
  await p.done;
}

let hostBefore = '';

before(async () => {
  if (!isRoot) return;
  assert.deepEqual(
    netnsList().filter((n) => ARTICLE_NS.includes(n)),
    [],
    'the article lab must not be up before this test',
  );
  hostBefore = hostNetworkFingerprint();
});

// A failed assertion must not leave nc or conntrack running (nor keep this process alive).
afterEach(() => {
  for (const c of running) c.kill('SIGKILL');
});

after(async () => {
  if (!isRoot) return;
  await labctl(['net', 'down']);
  await labctl(['net', 'down', join(tmpdir(), 'labctl-short', 'article-short.yaml')]);
  // Nothing of the lab stays: no namespace, and the host's own interfaces, addresses and routes as before.
  assert.deepEqual(
    netnsList().filter((n) => ARTICLE_NS.includes(n)),
    [],
    'no namespace of the article lab is left',
  );
  assert.equal(hostNetworkFingerprint(), hostBefore, "the host's namespace is as it was");
});

test("the default lab comes up with the article's names, addresses and routes", { skip }, async () => {
  const r = await labctlOk(['net', 'up']);
  assert.match(r.stdout, /lab "article" is up: 5 namespaces/);
  for (const ns of ARTICLE_NS) assert.ok(netnsList().includes(ns), `${ns} exists`);
  assert.match(inNs('ns-c0', ['ip', '-o', 'addr', 'show', 've-c0']), /10\.0\.1\.1\/24/);
  assert.match(inNs('ns-c0-nat', ['ip', '-o', 'addr', 'show', 've-c0-nat-node']), /10\.0\.1\.100\/24/);
  assert.match(inNs('ns-c0-nat', ['ip', '-o', 'addr', 'show', 've-c0-nat-inet']), /100\.64\.1\.100\/24/);
  assert.match(inNs('ns-inet', ['ip', '-o', 'addr', 'show', 've-c0-inet']), /100\.64\.1\.254\/24/);
  assert.match(inNs('ns-inet', ['ip', '-o', 'addr', 'show', 've-c1-inet']), /100\.64\.2\.254\/24/);
  assert.match(inNs('ns-c1-nat', ['ip', '-o', 'addr', 'show', 've-c1-nat-inet']), /100\.64\.2\.100\/24/);
  assert.match(inNs('ns-c1-nat', ['ip', '-o', 'addr', 'show', 've-c1-nat-node']), /10\.0\.2\.100\/24/);
  assert.match(inNs('ns-c1', ['ip', '-o', 'addr', 'show', 've-c1']), /10\.0\.2\.1\/24/);
  assert.match(inNs('ns-c0', ['ip', 'route']), /default via 10\.0\.1\.100 dev ve-c0/);
  assert.match(inNs('ns-c1-nat', ['ip', 'route']), /default via 100\.64\.2\.254 dev ve-c1-nat-inet/);
  assert.equal(inNs('ns-inet', ['sysctl', '-n', 'net.ipv4.ip_forward']).trim(), '1');
  assert.equal(inNs('ns-c0-nat', ['sysctl', '-n', 'net.netfilter.nf_conntrack_udp_timeout']).trim(), '30');
  assert.equal(inNs('ns-c0-nat', ['sysctl', '-n', 'net.netfilter.nf_conntrack_udp_timeout_stream']).trim(), '120');
  // The host's own namespace gained nothing: no veth, route, rule or sysctl.
  assert.equal(hostNetworkFingerprint(), hostBefore);
});

test('a second `net up` changes nothing', { skip }, async () => {
  const rules = inNs('ns-c1-nat', ['nft', 'list', 'ruleset']);
  const r = await labctlOk(['net', 'up']);
  assert.match(r.stdout, /already up; nothing changed/);
  assert.equal(inNs('ns-c1-nat', ['nft', 'list', 'ruleset']), rules);
});

test('`net status --json` shows namespaces, interfaces, addresses and NAT modes', { skip }, async () => {
  const r = await labctlOk(['net', 'status', 'article', '--json']);
  const [lab] = JSON.parse(r.stdout) as { lab: string; namespaces: { netns: string; nat?: string; interfaces: { name: string; addresses: string[] }[] }[] }[];
  assert.equal(lab!.lab, 'article');
  const c1nat = lab!.namespaces.find((n) => n.netns === 'ns-c1-nat')!;
  assert.equal(c1nat.nat, 'EIM+ADF (restricted-cone)');
  assert.deepEqual(c1nat.interfaces.map((i) => i.name).sort(), ['ve-c1-nat-inet', 've-c1-nat-node']);
  const table = await labctlOk(['net', 'status']);
  assert.match(table.stdout, /c0-nat\s+ns-c0-nat\s+nat\s+ve-c0-nat-node\s+UP\s+10\.0\.1\.100\/24\s+EIM\+EIF \(full-cone\)/);
});

test('experiment 1: an unsolicited packet through the full cone arrives', { skip }, async () => {
  await labctlOk(['net', 'flush']);
  const events = startIn('ns-c0-nat', ['conntrack', '-E']);
  const c0 = startIn('ns-c0', ['nc', '-l', '12345', '-u']);
  await sleep(300);
  await ncSend('ns-c1', '100.64.1.100', 54321, 'abc');
  assert.ok(await waitForText(c0, 'abc', 2000), `c0 prints abc (got ${JSON.stringify(c0.out())})`);
  assert.ok(await waitForText(events, '[NEW]', 2000));
  events.kill();
  c0.kill();
  assert.match(
    events.out(),
    /\[NEW\] udp\s+17 30 src=100\.64\.2\.100 dst=100\.64\.1\.100 sport=54321 dport=54321 \[UNREPLIED\] src=10\.0\.1\.1 dst=100\.64\.2\.100 sport=12345 dport=54321/,
  );
});

test('experiment 2: through the restricted cone nothing arrives before the inside has sent', { skip }, async () => {
  await labctlOk(['net', 'flush']);
  const events = startIn('ns-c1-nat', ['conntrack', '-E']);
  // The control: c0's packet does leave c0-nat towards c1-nat (else "nothing arrives" proves nothing).
  const sent = startIn('ns-c0-nat', ['conntrack', '-E']);
  const c1 = startIn('ns-c1', ['nc', '-l', '12345', '-u']);
  await sleep(300);
  await ncSend('ns-c0', '100.64.2.100', 54321, 'xyz');
  assert.ok(await waitForText(sent, '[NEW]', 2000), `c0-nat forwarded c0's packet (got ${JSON.stringify(sent.out())})`);
  await sleep(700);
  for (const p of [events, sent, c1]) p.kill();
  await events.done;
  assert.match(
    sent.out(),
    /\[NEW\] udp\s+17 30 src=10\.0\.1\.1 dst=100\.64\.2\.100 sport=\d+ dport=54321 \[UNREPLIED\] src=100\.64\.2\.100 dst=100\.64\.1\.100 sport=54321 dport=54321/,
  );
  assert.equal(c1.out(), '', 'c1 receives nothing');
  assert.doesNotMatch(events.out(), /\[NEW\]/, 'c1-nat shows no conntrack event');
});

test("experiment 3: after c1 speaks first, c0's replies reach it, and conntrack shows NEW, UPDATE, UPDATE ASSURED", { skip }, async () => {
  await labctlOk(['net', 'flush']);
  const events = startIn('ns-c1-nat', ['conntrack', '-E']);
  const c0 = startIn('ns-c0', ['nc', '-l', '12345', '-u']);
  await sleep(300);
  const c1 = startIn('ns-c1', ['nc', '100.64.1.100', '54321', '-u']);
  c1.write('abc\n');
  assert.ok(await waitForText(c0, 'abc', 2000), 'c0 gets abc');
  c0.write('reply 1\n');
  assert.ok(await waitForText(c1, 'reply 1', 2000), 'c1 prints reply 1');
  await sleep(2300); // past the kernel's 2 s "stream" mark, so the next packet makes the flow ASSURED
  c0.write('reply 2\n');
  assert.ok(await waitForText(c1, 'reply 2', 2000), 'c1 prints reply 2');
  assert.ok(await waitForText(events, '[ASSURED]', 2000));
  events.kill();
  c0.kill();
  c1.kill();
  const ev = events.out();
  const flow = 'src=10\\.0\\.2\\.1 dst=100\\.64\\.1\\.100 sport=\\d+ dport=54321';
  const reply = 'src=100\\.64\\.1\\.100 dst=100\\.64\\.2\\.100 sport=54321 dport=54321';
  assert.match(ev, new RegExp(`\\[NEW\\] udp\\s+17 30 ${flow} \\[UNREPLIED\\] ${reply}`));
  assert.match(ev, new RegExp(`\\[UPDATE\\] udp\\s+17 30 ${flow} ${reply}\\n`));
  assert.match(ev, new RegExp(`\\[UPDATE\\] udp\\s+17 120 ${flow} ${reply} \\[ASSURED\\]`));
});

test('restricted cone is address-restricted: the peer gets in from another port of the same address', { skip }, async () => {
  await labctlOk(['net', 'flush']);
  // c1 sends to c0-nat's outside address; c0 then answers from a different port (a new
  // flow, not a conntrack reply): c1-nat must let it in, since only the address counts.
  const c1listen = startIn('ns-c1', ['nc', '-l', '12345', '-u']);
  await sleep(300);
  await ncSend('ns-c1', '100.64.1.100', 54321, 'hello');
  // From c0's side, any source port other than the fixed 54321: send from inet's link? No:
  // c0-nat maps every flow to 54321. Use the c0-nat router itself, from port 4000 of 100.64.1.100.
  const p = startIn('ns-c0-nat', ['timeout', '1', 'nc', '-u', '-p', '4000', '-s', '100.64.1.100', '100.64.2.100', '54321']);
  p.write('other-port\n');
  await p.done;
  assert.ok(
    await waitForText(c1listen, 'other-port', 2000),
    `c1 receives the packet from another port of the same address (got ${JSON.stringify(c1listen.out())})`,
  );
  c1listen.kill();
  // From another address (inet's 100.64.2.254), nothing gets in.
  await labctlOk(['net', 'flush']);
  const c1b = startIn('ns-c1', ['nc', '-l', '12345', '-u']);
  await sleep(300);
  await ncSend('ns-c1', '100.64.1.100', 54321, 'hello');
  const q = startIn('ns-inet', ['timeout', '1', 'nc', '-u', '-s', '100.64.1.254', '100.64.2.100', '54321']);
  q.write('stranger\n');
  await q.done;
  await sleep(500);
  c1b.kill();
  assert.doesNotMatch(c1b.out(), /stranger/);
});

test('`net down` removes everything and the host is as it was', { skip }, async () => {
  const r = await labctlOk(['net', 'down']);
  assert.match(r.stdout, /removed 5 namespaces/);
  assert.deepEqual(
    netnsList().filter((n) => ARTICLE_NS.includes(n)),
    [],
  );
  assert.equal(hostNetworkFingerprint(), hostBefore);
  const again = await labctlOk(['net', 'down']);
  assert.match(again.stdout, /not up; nothing to do/);
});

test('experiment 3 with short timeouts: the mapping expires and a later reply does not reach c1', { skip }, async () => {
  const dir = join(tmpdir(), 'labctl-short');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(dir, { recursive: true });
  const text = readFileSync(join(ROOT, 'machines', 'article.yaml'), 'utf8').replace(
    /fixed-port: 54321\n/g,
    'fixed-port: 54321\n      udp-timeouts: { unreplied: 3, stream: 5 }\n',
  );
  const file = join(dir, 'article-short.yaml');
  writeFileSync(file, text);
  await labctlOk(['net', 'up', file]);
  assert.equal(inNs('ns-c1-nat', ['sysctl', '-n', 'net.netfilter.nf_conntrack_udp_timeout_stream']).trim(), '5');
  const events = startIn('ns-c1-nat', ['conntrack', '-E']);
  const c0 = startIn('ns-c0', ['nc', '-l', '12345', '-u']);
  await sleep(300);
  const c1 = startIn('ns-c1', ['nc', '100.64.1.100', '54321', '-u']);
  c1.write('abc\n');
  assert.ok(await waitForText(c0, 'abc', 2000));
  c0.write('reply 1\n');
  assert.ok(await waitForText(c1, 'reply 1', 2000));
  await sleep(2200);
  c0.write('reply 2\n');
  assert.ok(await waitForText(c1, 'reply 2', 2000));
  assert.ok(await waitForText(events, '[ASSURED]', 2000));
  // Silence longer than the 5 s stream timeout: the entry has expired. The kernel reaps
  // expired entries lazily (its GC may report DESTROY tens of seconds later), but the next
  // packet that looks the flow up finds it expired, destroys it and is not a reply any more.
  // A listener on c1's forwarded port too: an expired mapping must not let the packet in
  // through the static forward either.
  const forwarded = startIn('ns-c1', ['nc', '-l', '12345', '-u']);
  await sleep(6000);
  c0.write('reply after destroy\n');
  assert.ok(await waitForText(events, '[DESTROY]', 4000), 'conntrack shows DESTROY');
  await sleep(800);
  assert.doesNotMatch(c1.out(), /reply after destroy/);
  assert.doesNotMatch(forwarded.out(), /reply after destroy/);
  forwarded.kill();
  events.kill();
  c0.kill();
  c1.kill();
  await labctlOk(['net', 'down', file]);
  assert.deepEqual(
    netnsList().filter((n) => ARTICLE_NS.includes(n)),
    [],
  );
});
