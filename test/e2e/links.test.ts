// Link impairments on this host, as root: rate limits (tbf, which this kernel has) measured
// with iperf3, declared in a lab file and changed live; outages (`labctl link down|up`)
// that pass nothing while conntrack entries and NAT mappings stay, on the default lab and
// on a CGNAT chain; bad input refused with its message before anything is created; and,
// this kernel having no sch_netem, a lab or a change that needs it stopped before anything
// is created. After every test no namespace, qdisc or process of these tests is left.
// (netem itself is measured in a VM with a stock kernel: links-netem-vm.test.ts.)
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { UdpAgent } from '../support/agents.js';
import { hostNetworkFingerprint, inNs, isRoot, labctl, labctlOk, netnsList, ROOT } from '../support/cli.js';

const skip = isRoot ? false : 'needs root';
const ARTICLE_NS = ['ns-c0', 'ns-c0-nat', 'ns-c1', 'ns-c1-nat', 'ns-inet'];
const CGN_NS = ['ns-lk-inet', 'ns-lk-cgn', 'ns-lk-neighbour', 'ns-lk-home-nat', 'ns-lk-laptop'];
const ARTICLE_TEXT = readFileSync(join(ROOT, 'machines', 'article.yaml'), 'utf8');
const dir = mkdtempSync(join(tmpdir(), 'labctl-links-'));

/** The default lab with `links:` added (still lab "article", its namespaces and addresses). */
function articleWith(name: string, links: string): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, `${ARTICLE_TEXT}links:\n${links}`);
  return file;
}

/** A home NAT behind a carrier-grade NAT (a symmetric one, so the outside ports are its own choice). */
const CGN_FILE = join(dir, 'cgn.yaml');
writeFileSync(
  CGN_FILE,
  `name: lkcgn
prefix: lk-
sites:
  - name: isp
    nat: { name: cgn, type: symmetric }
    lan: { subnet: 100.100.0.0/16 }
    nodes: [{ name: neighbour }]
  - name: home
    upstream: isp
    nat: { type: full-cone }
    nodes: [{ name: laptop }]
links:
  - { between: [home-nat, cgn], rate: 4mbit }
`,
);

const hasNetem = (() => {
  try {
    execFileSync('unshare', ['--net', 'tc', 'qdisc', 'add', 'dev', 'lo', 'root', 'netem', 'delay', '1ms'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

const children = new Set<ChildProcess>();
const agents = new Set<UdpAgent>();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The qdiscs of every namespace of ours that exists: none may be left after a test. */
function ourNamespaces(): string[] {
  return netnsList().filter((n) => [...ARTICLE_NS, ...CGN_NS].includes(n));
}

function qdiscs(netns: string, dev: string): string {
  return inNs(netns, ['tc', 'qdisc', 'show', 'dev', dev]);
}

/**
 * A bulk TCP transfer with iperf3 from clientNs to a one-off server in serverNs at
 * serverAddr (`reverse`: the server sends), in Mbit/s as the receiver counted it. The
 * first second (TCP's slow start filling the queue) is left out.
 */
async function iperf(serverNs: string, serverAddr: string, clientNs: string, options: { reverse?: boolean; seconds?: number } = {}): Promise<number> {
  const server = spawn('ip', ['netns', 'exec', serverNs, 'iperf3', '-s', '-1', '-B', serverAddr, '-p', '5299'], { stdio: 'ignore' });
  children.add(server);
  server.on('exit', () => children.delete(server));
  await sleep(300);
  const args = ['-c', serverAddr, '-p', '5299', '-t', String(options.seconds ?? 4), '-O', '1', '-J', ...(options.reverse ? ['-R'] : [])];
  const out = execFileSync('ip', ['netns', 'exec', clientNs, 'iperf3', ...args], { encoding: 'utf8', timeout: 30_000 });
  const result = JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } };
  await new Promise((r) => (server.exitCode !== null ? r(undefined) : server.once('exit', r)));
  return result.end.sum_received.bits_per_second / 1e6;
}

function assertRate(measured: number, declaredMbit: number, what: string): void {
  const off = Math.abs(measured - declaredMbit) / declaredMbit;
  assert.ok(off <= 0.15, `${what}: measured ${measured.toFixed(2)} Mbit/s, declared ${declaredMbit} Mbit/s (${(off * 100).toFixed(1)}% off; ±15% allowed)`);
}

/** The conntrack entries of UDP flows from this inside port, as conntrack lists them. */
function udpEntries(netns: string, sport: number): string[] {
  const out = inNs(netns, ['conntrack', '-L', '-p', 'udp', '--orig-port-src', String(sport)]);
  return out.split('\n').filter((l) => l.startsWith('udp'));
}

let hostBefore = '';
const measured: string[] = [];

before(() => {
  if (!isRoot) return;
  assert.deepEqual(ourNamespaces(), [], 'none of these labs may be up before this test');
  hostBefore = hostNetworkFingerprint();
});

afterEach(async () => {
  if (!isRoot) return;
  for (const c of children) c.kill('SIGKILL');
  for (const a of agents) await a.stop();
  agents.clear();
  await labctl(['net', 'down', 'article']);
  await labctl(['net', 'down', 'lkcgn']);
  assert.deepEqual(ourNamespaces(), [], 'every namespace (and so every qdisc) of the test is gone');
  const left = spawnSync('pgrep', ['-a', '-x', 'iperf3'], { encoding: 'utf8' }).stdout.trim();
  assert.equal(left, '', 'no iperf3 is left');
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
  if (!isRoot) return;
  assert.equal(hostNetworkFingerprint(), hostBefore, "the host's own namespace is as it was: nothing was put on its interfaces");
  if (measured.length) process.stderr.write(`# measured: ${measured.join('; ')}\n`);
});

describe('rate limits (tbf)', () => {
  test('declared in the lab file on the default lab, then changed live: each direction within ±15%', { skip }, async () => {
    const file = articleWith('rate', '  - { between: [c0-nat, inet], rate: 5mbit }\n');
    await labctlOk(['net', 'up', file]);
    assert.match(qdiscs('ns-c0-nat', 've-c0-nat-inet'), /tbf 1: root .*rate 5Mbit/);
    assert.match(qdiscs('ns-inet', 've-c0-inet'), /tbf 1: root .*rate 5Mbit/);
    // Other links have none.
    assert.doesNotMatch(qdiscs('ns-c1-nat', 've-c1-nat-inet'), /tbf|netem/);
    const up5 = await iperf('ns-inet', '100.64.1.254', 'ns-c0-nat');
    const down5 = await iperf('ns-inet', '100.64.1.254', 'ns-c0-nat', { reverse: true });
    assertRate(up5, 5, 'declared 5mbit, upstream');
    assertRate(down5, 5, 'declared 5mbit, downstream');

    const set = await labctlOk(['link', 'set', 'inet', 'c0-nat', '--rate', '2mbit', '--direction', 'upstream', '--lab', 'article']);
    assert.match(set.stdout, /c0-nat--inet: upstream: rate 2mbit; downstream: rate 5mbit/);
    await labctlOk(['link', 'set', 'c0-nat', 'inet', '--rate', '20mbit', '--direction', 'downstream', '--lab', 'article']);
    const up2 = await iperf('ns-inet', '100.64.1.254', 'ns-c0-nat');
    const down20 = await iperf('ns-inet', '100.64.1.254', 'ns-c0-nat', { reverse: true });
    assertRate(up2, 2, 'live 2mbit upstream');
    assertRate(down20, 20, 'live 20mbit downstream');
    measured.push(
      `default lab c0-nat--inet: declared 5mbit up ${up5.toFixed(2)}, down ${down5.toFixed(2)}; live 2mbit up ${up2.toFixed(2)}, 20mbit down ${down20.toFixed(2)} Mbit/s`,
    );

    // The state has it: link show, status --json, graph; a second net up keeps it.
    const show = JSON.parse((await labctlOk(['link', 'show', 'article', '--json'])).stdout) as {
      links: { link: string; from: string; impairment: unknown }[];
    }[];
    const uplink = show[0]!.links.find((l) => l.link === 'c0-nat--inet')!;
    assert.equal(uplink.from, 'live');
    assert.deepEqual(uplink.impairment, { upstream: { rateKbit: 2000 }, downstream: { rateKbit: 20000 } });
    const status = JSON.parse((await labctlOk(['status', 'article', '--json'])).stdout) as { links: { link: string; from: string }[] }[];
    assert.equal(status[0]!.links.find((l) => l.link === 'c0-nat--inet')!.from, 'live');
    assert.match((await labctlOk(['graph', 'article'])).stdout, /upstream: rate 2mbit; downstream: rate 20mbit/);
    assert.match((await labctlOk(['net', 'up', file])).stdout, /already up; nothing changed/);
    assert.match(qdiscs('ns-c0-nat', 've-c0-nat-inet'), /rate 2Mbit/);
    assert.match((await labctlOk(['link', 'show', 'article'])).stdout, /c0-nat--inet .*upstream: rate 2mbit; downstream: rate 20mbit\s+live\s+up/);

    // Every link in one command: both ends of all four links, recorded live.
    const all = await labctlOk(['link', 'set', '--all', '--rate', '8mbit', '--lab', 'article']);
    assert.equal(all.stdout.trim().split('\n').length, 4, all.stdout);
    for (const [ns, dev] of [
      ['ns-c0-nat', 've-c0-nat-inet'],
      ['ns-inet', 've-c0-inet'],
      ['ns-c1-nat', 've-c1-nat-inet'],
      ['ns-inet', 've-c1-inet'],
      ['ns-c0', 've-c0'],
      ['ns-c0-nat', 've-c0-nat-node'],
      ['ns-c1', 've-c1'],
      ['ns-c1-nat', 've-c1-nat-node'],
    ])
      assert.match(qdiscs(ns!, dev!), /tbf .*rate 8Mbit/, `${ns} ${dev}`);
    const allShown = JSON.parse((await labctlOk(['link', 'show', 'article', '--json'])).stdout) as { links: { from: string; impairment: unknown }[] }[];
    assert.deepEqual(
      allShown[0]!.links.map((l) => [l.from, l.impairment]),
      Array(4).fill(['live', { upstream: { rateKbit: 8000 }, downstream: { rateKbit: 8000 } }]),
    );

    // Reset: an ideal link, whatever the file declares; the qdiscs are gone.
    await labctlOk(['link', 'reset', '--all', '--lab', 'article']);
    assert.doesNotMatch(qdiscs('ns-c0-nat', 've-c0-nat-inet'), /tbf/);
    assert.doesNotMatch(qdiscs('ns-inet', 've-c0-inet'), /tbf/);
  });

  test('on a CGNAT chain: the access link between the home NAT and the CGN (a port of its LAN bridge)', { skip }, async () => {
    await labctlOk(['net', 'up', CGN_FILE]);
    assert.match(qdiscs('ns-lk-cgn', 've-home-nat-lan'), /tbf 1: root .*rate 4Mbit/);
    // End to end, through both NATs (a NAT router's own input is closed): the laptop and a server on the internet.
    const up4 = await iperf('ns-lk-inet', '100.64.1.254', 'ns-lk-laptop');
    const down4 = await iperf('ns-lk-inet', '100.64.1.254', 'ns-lk-laptop', { reverse: true });
    assertRate(up4, 4, 'CGN access link, declared 4mbit upstream');
    assertRate(down4, 4, 'CGN access link, declared 4mbit downstream');
    await labctlOk(['link', 'set', 'cgn', 'home-nat', '--rate', '1mbit', '--lab', 'lkcgn']);
    const up1 = await iperf('ns-lk-inet', '100.64.1.254', 'ns-lk-laptop');
    assertRate(up1, 1, 'CGN access link, live 1mbit');
    measured.push(`CGN home-nat--cgn: declared 4mbit up ${up4.toFixed(2)}, down ${down4.toFixed(2)}; live 1mbit up ${up1.toFixed(2)} Mbit/s`);
  });
});

/**
 * An outage of the link between `nat` and its upstream: the node's flow to a server on the
 * internet keeps its conntrack entries and its outside address and port through it.
 */
async function outage(opts: { node: string; nodeNs: string; natNs: string[]; server: string; serverNs: string; a: string; b: string; lab: string }) {
  const server = await UdpAgent.start(opts.serverNs, [7000]);
  agents.add(server);
  const node = await UdpAgent.start(opts.nodeNs, [40000]);
  agents.add(node);
  node.send(40000, opts.server, 7000, 'before');
  const first = await server.waitFor('before', 2000);
  assert.ok(first, 'the flow works before the outage');
  const entriesBefore = opts.natNs.map((ns) => udpEntries(ns, 40000));
  for (const e of entriesBefore) assert.equal(e.length >= 1, true, 'a conntrack entry in each NAT on the way');

  const lab = ['--lab', opts.lab];
  await labctlOk(['link', 'down', opts.a, opts.b, ...lab]);
  node.send(40000, opts.server, 7000, 'during');
  server.send(7000, first.from, first.fromPort, 'during-in');
  assert.equal(await server.waitFor('during', 1500), undefined, 'nothing passes during the outage (outbound)');
  assert.equal(await node.waitFor('during-in', 500), undefined, 'nothing passes during the outage (inbound)');
  // The entries are still there, as in a router whose uplink went down.
  opts.natNs.forEach((ns, i) => {
    const during = udpEntries(ns, 40000);
    assert.equal(during.length, entriesBefore[i]!.length, `the conntrack entries in ${ns} stay during the outage`);
  });
  const shown = JSON.parse((await labctlOk(['link', 'show', opts.lab, '--json'])).stdout) as {
    links: { link: string; down: boolean }[];
  }[];
  assert.equal(shown[0]!.links.find((l) => l.link === `${opts.a}--${opts.b}`)?.down, true, 'link show says it is down');

  await labctlOk(['link', 'up', opts.b, opts.a, ...lab]);
  node.send(40000, opts.server, 7000, 'after');
  const again = await server.waitFor('after', 2000);
  assert.ok(again, 'the flow works again after `link up` (routes put back)');
  assert.deepEqual([again.from, again.fromPort], [first.from, first.fromPort], 'the same outside address and port: the mapping survived');
  server.send(7000, again.from, again.fromPort, 'reply');
  assert.ok(await node.waitFor('reply', 2000), 'and inbound through it');
  return first;
}

describe('outages (link down / link up)', () => {
  test('default lab: c1-nat--inet down passes nothing, its routes come back, the same UDP mapping works after', { skip }, async () => {
    await labctlOk(['net', 'up']);
    const routes = inNs('ns-c1-nat', ['ip', 'route']);
    const first = await outage({
      node: 'c1',
      nodeNs: 'ns-c1',
      natNs: ['ns-c1-nat'],
      server: '100.64.2.254',
      serverNs: 'ns-inet',
      a: 'c1-nat',
      b: 'inet',
      lab: 'article',
    });
    assert.deepEqual([first.from, first.fromPort], ['100.64.2.100', 54321]);
    assert.equal(inNs('ns-c1-nat', ['ip', 'route']), routes, "c1-nat's routes are as the plan made them");
    // No outage left behind in the state.
    const show = JSON.parse((await labctlOk(['link', 'show', 'article', '--json'])).stdout) as { links: { down: boolean }[] }[];
    assert.ok(show[0]!.links.every((l) => !l.down));
  });

  test('default lab: while down, the default route is gone (the kernel removes it with the link)', { skip }, async () => {
    await labctlOk(['net', 'up']);
    await labctlOk(['link', 'down', 'c0', 'c0-nat', '--lab', 'article']);
    assert.doesNotMatch(inNs('ns-c0', ['ip', 'route']), /default/);
    assert.match(inNs('ns-c0', ['ip', '-o', 'link', 'show', 've-c0']), /state DOWN/);
    assert.match(inNs('ns-c0-nat', ['ip', '-o', 'link', 'show', 've-c0-nat-node']), /state DOWN/);
    assert.match((await labctlOk(['status', 'article'])).stdout, /impaired links .*c0--c0-nat \(DOWN\)/);
    await labctlOk(['link', 'up', 'c0', 'c0-nat', '--lab', 'article']);
    assert.match(inNs('ns-c0', ['ip', 'route']), /default via 10\.0\.1\.100 dev ve-c0/);
    // Twice is the same (ip route replace).
    await labctlOk(['link', 'up', 'c0', 'c0-nat', '--lab', 'article']);
    assert.equal(inNs('ns-c0', ['ip', 'route']).match(/default/g)?.length, 1);
  });

  test('CGNAT chain: the home NAT behind the CGN loses its uplink; both NATs keep their entries and the CGN its port', { skip }, async () => {
    await labctlOk(['net', 'up', CGN_FILE]);
    const first = await outage({
      node: 'laptop',
      nodeNs: 'ns-lk-laptop',
      natNs: ['ns-lk-home-nat', 'ns-lk-cgn'],
      server: '100.64.1.254',
      serverNs: 'ns-lk-inet',
      a: 'home-nat',
      b: 'cgn',
      lab: 'lkcgn',
    });
    assert.equal(first.from, '100.64.1.100', "the CGN's outside address");
    // The rate limit declared on that link stayed through the outage.
    assert.match(qdiscs('ns-lk-cgn', 've-home-nat-lan'), /tbf 1: root .*rate 4Mbit/);
  });
});

describe('bad input: each with its message, nothing created or changed', () => {
  test('a lab file whose links are wrong: net up refuses it before creating anything', { skip }, async () => {
    const cases: [string, RegExp][] = [
      [
        '  - { between: [c1, inet], delay: 40ms }\n',
        /links\[0\]\.between: c1 and inet are not linked; the lab's links are: c0--c0-nat, c0-nat--inet, c1--c1-nat, c1-nat--inet/,
      ],
      ['  - { between: [c0-nat, inet], loss: 150% }\n', /links\[0\]\.loss: \(150%\) must be at most 100%/],
      ['  - { between: [c0-nat, inet], rate: 5mbps }\n', /links\[0\]\.rate: must be a rate .*bytes per second/],
      ['  - { between: [c0-nat, inet], reorder: 1% }\n', /links\[0\]\.reorder: needs a delay/],
      ['  - { between: [c0-nat, inet], delay: 1ms, jitter: 2ms }\n', /links\[0\]\.jitter: \(2ms\) must not be more than the delay \(1ms\)/],
      ['  - { between: [c0-nat, inet], profile: 4g }\n', /links\[0\]\.profile: unknown profile "4g"; the profiles are: .*lte/],
      ['  - { between: [c0-nat, inet], rate: 1mbit }\n  - { between: [inet, c0-nat], rate: 2mbit }\n', /links\[1\]\.between: c0-nat--inet is listed twice/],
    ];
    for (const [links, message] of cases) {
      const r = await labctl(['net', 'up', articleWith('bad', links)]);
      assert.equal(r.exitCode, 2, `${links}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.deepEqual(ourNamespaces(), [], `${links}: nothing was created`);
    }
  });

  test('link commands: bad options, unknown links, nothing to set, no lab up', { skip }, async () => {
    const none = await labctl(['link', 'set', 'c1-nat', 'inet', '--rate', '1mbit', '--lab', 'article']);
    assert.equal(none.exitCode, 2);
    assert.match(none.stderr, /lab "article" is not up/);
    await labctlOk(['net', 'up']);
    const before = qdiscs('ns-c1-nat', 've-c1-nat-inet');
    const cases: [string[], RegExp][] = [
      [['set', 'c1', 'inet', '--rate', '1mbit'], /A B: c1 and inet are not linked; the lab's links are: /],
      [['set', 'c1-nat', 'nope', '--rate', '1mbit'], /A B: no member named "nope"/],
      [['set', 'c1-nat', 'inet', '--loss', '200%'], /--loss: \(200%\) must be at most 100%/],
      [['set', 'c1-nat', 'inet', '--rate', '5mbps'], /--rate: must be a rate .*bytes per second/],
      [['set', 'c1-nat', 'inet', '--delay', '40'], /--delay: needs a unit: 40ms/],
      [['set', 'c1-nat', 'inet'], /link set: gives no impairment/],
      [['set', 'c1-nat', 'inet', '--jitter', '5ms'], /--jitter: \(5ms\) must not be more than the delay \(none\)/],
      [['set', 'c1-nat', 'inet', '--profile', 'nope'], /--profile: unknown profile "nope"/],
      [['set', 'c1-nat', 'inet', '--rate', '1mbit', '--direction', 'up'], /--direction: must be one of both, upstream, downstream/],
      [['set', 'c1-nat', 'inet', '--rate', '1mbit', '--lab', 'nope'], /lab "nope" is not up \(up: .*article/],
      [['reset'], /give the two members the link joins \(A B\), or --all/],
      [['set', '--rate', '1mbit'], /link set: give the two members the link joins \(A B\), or --all/],
      [['set', 'c1-nat', 'inet', '--all', '--rate', '1mbit'], /link set: give either two members \(A B\) or --all, not both/],
      [['set', '--all', '--loss', '200%'], /--loss: \(200%\) must be at most 100%/],
      [['down', 'c0', 'inet'], /A B: c0 and inet are not linked/],
    ];
    for (const [args, message] of cases) {
      const r = await labctl(['link', ...args, ...(args.includes('--lab') ? [] : ['--lab', 'article'])]);
      assert.equal(r.exitCode, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message, args.join(' '));
    }
    assert.equal(qdiscs('ns-c1-nat', 've-c1-nat-inet'), before, 'no qdisc changed');
    assert.equal(
      JSON.parse((await labctlOk(['link', 'show', 'article', '--json'])).stdout)[0].links.filter((l: { from: string }) => l.from !== 'none').length,
      0,
    );
  });
});

describe('netem on a kernel without it', () => {
  const noNetem = !isRoot ? 'needs root' : hasNetem ? 'this kernel has sch_netem (the VM test covers it)' : false;

  test('net up of a lab that needs netem stops before creating anything, naming the fields', { skip: noNetem }, async () => {
    const file = articleWith('netem', '  - { between: [c0-nat, inet], delay: 40ms, loss: 1%, rate: 5mbit }\n  - { between: [c1, c1-nat], rate: 1mbit }\n');
    const r = await labctl(['net', 'up', file]);
    assert.equal(r.exitCode, 1, r.stderr);
    assert.match(
      r.stderr,
      /cannot bring lab "article" up: c0-nat--inet \(delay, loss\) need the kernel's netem queueing discipline \(sch_netem\), which this kernel lacks/,
    );
    assert.match(r.stderr, /module sch_netem/);
    assert.match(r.stderr, /Rate limits \(rate, done with tbf\) and outages .* work without it/);
    assert.deepEqual(ourNamespaces(), [], 'nothing was created');
  });

  test('a live change that needs netem changes nothing; a rate alone works', { skip: noNetem }, async () => {
    await labctlOk(['net', 'up']);
    const r = await labctl(['link', 'set', 'c1-nat', 'inet', '--delay', '40ms', '--rate', '1mbit', '--lab', 'article']);
    assert.equal(r.exitCode, 1, r.stderr);
    assert.match(r.stderr, /c1-nat--inet \(delay\) needs the kernel's netem/);
    assert.doesNotMatch(qdiscs('ns-c1-nat', 've-c1-nat-inet'), /tbf|netem/);
    await labctlOk(['link', 'set', 'c1-nat', 'inet', '--rate', '1mbit', '--lab', 'article']);
    assert.match(qdiscs('ns-c1-nat', 've-c1-nat-inet'), /tbf/);
  });
});
