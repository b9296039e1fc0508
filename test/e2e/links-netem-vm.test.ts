// netem link impairments, where this machine's kernel cannot show them: in a VM with Debian's
// stock kernel (test/support/stock-kernel-vm.ts), labctl brings the default lab's network up
// with a 40 ms delay declared on both uplinks, and ping's round trip from each node to the
// internet's end of its uplink crosses that uplink twice: 2 x 40 = 80 ms more than without
// the delay (measured first: the VM is emulated, and its own round trip is some
// milliseconds), within ±10% + 2 ms.
// (Not to the other NAT's outside address: a NAT router answers no unsolicited ping, its
// input chain drops what is not established.) A live `link set` then changes one uplink's
// delay in one step. c1-nat's uplink also loses 5% of what c1 sends (declared upstream only, so
// that a lost reply does not count twice): of 1000 pings, 5% ±3 points lost.
// Then the CGNAT chain (test/fixtures/good-labs/impaired-cgn.yaml's lab, with its links
// replaced): 30 ms both ways on cgn--inet, and 20 ms ±10 ms jitter with 5% loss upstream on
// home-nat--cgn; the laptop pings the internet's router across both NATs: the delay, the jitter
// (a spread of the round trips) and the loss as declared, then again after a live `link set`
// (40 ms ±10 ms, 10% loss). (`check` over impaired links is check-impaired-vm.test.ts's.)
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, type TestContext, test } from 'node:test';
import { BIN, ROOT } from '../support/cli.js';
import { liveVmCount, type StockKernelSession, stockKernel, withStockKernelSession } from '../support/stock-kernel-vm.js';

const kernel = await stockKernel();
const skip = kernel.available ? false : kernel.reason;
const LAB = '/root/article-delay.yaml';
const LINKS =
  'links:\n  - { between: [c0-nat, inet], delay: 40ms }\n  - { between: [c1-nat, inet], delay: 40ms, direction: downstream }\n' +
  '  - { between: [c1-nat, inet], delay: 40ms, loss: 5%, direction: upstream }\n';
const CGN_LAB = '/root/cgn-netem.yaml';
const CGN_LINKS =
  'links:\n  - { between: [cgn, inet], delay: 30ms }\n  - { between: [home-nat, cgn], delay: 20ms, jitter: 10ms, loss: 5%, direction: upstream }\n';

after(() => {
  assert.equal(liveVmCount(), 0, 'a VM of this file is still running');
});

async function sh(t: TestContext, vm: StockKernelSession, argv: string[], input?: string): Promise<string> {
  const r = await vm.run(argv, { timeoutMs: 180_000, ...(input !== undefined ? { input } : {}) });
  t.diagnostic(`${r.durationMs} ms: ${argv.join(' ')} -> ${r.exitCode}`);
  if (r.exitCode !== 0) assert.fail(`${argv.join(' ')} exited ${r.exitCode}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

/**
 * ping's shortest round trip, in ms: under software emulation the guest's timers fire late
 * by a few milliseconds now and then, which the average takes in and the minimum does not.
 */
function pingMin(output: string): number {
  const m = /rtt min\/avg\/max\/mdev = ([\d.]+)\//.exec(output);
  assert.ok(m, `no rtt line in ping's output:\n${output}`);
  return Number(m[1]);
}

function pingStats(output: string): { sent: number; lostShare: number; min: number; mdev: number } {
  const c = /(\d+) packets transmitted, (\d+) received/.exec(output);
  assert.ok(c, `no summary in ping's output:\n${output}`);
  const m = /rtt min\/avg\/max\/mdev = ([\d.]+)\/[\d.]+\/[\d.]+\/([\d.]+)/.exec(output);
  assert.ok(m, `no rtt line in ping's output:\n${output}`);
  const sent = Number(c[1]);
  return { sent, lostShare: ((sent - Number(c[2])) / sent) * 100, min: Number(m[1]), mdev: Number(m[2]) };
}

/** 1000 pings 2 ms apart, waiting at most 1 s for the last replies; the namespace and address follow. */
const ping1000 = (ns: string, to: string) => ['ip', 'netns', 'exec', ns, 'ping', '-c', '1000', '-i', '0.002', '-W', '1', '-q', to];
const within = (measured: number, expected: number) => Math.abs(measured - expected) <= expected * 0.1 + 2;

test('netem as declared and as set live: delay on the default lab, loss on its uplink; delay, jitter and loss across a CGNAT chain', {
  skip,
  timeout: 900_000,
}, async (t) => {
  await withStockKernelSession(async (vm) => {
    t.diagnostic(`${vm.accel} VM with ${vm.version} booted in ${vm.bootMs} ms`);
    const labctl = (args: string[]) => sh(t, vm, [process.execPath, BIN, ...args]);
    await sh(t, vm, ['tee', LAB], `${readFileSync(join(ROOT, 'machines', 'article.yaml'), 'utf8')}${LINKS}`);
    const ping = async (ns: string, to: string) => pingMin(await sh(t, vm, ['ip', 'netns', 'exec', ns, 'ping', '-c', '10', '-i', '0.2', '-q', to]));
    // The emulated VM's own round trip, on the lab without delays.
    await labctl(['net', 'up', 'article']);
    const base0 = await ping('ns-c0', '100.64.1.254');
    const base1 = await ping('ns-c1', '100.64.2.254');
    await labctl(['net', 'down', 'article']);
    t.diagnostic(`without delay: shortest RTT c0 -> inet ${base0} ms, c1 -> inet ${base1} ms`);
    await labctl(['net', 'up', LAB]);
    assert.match(await sh(t, vm, ['tc', '-n', 'ns-c0-nat', 'qdisc', 'show', 'dev', 've-c0-nat-inet']), /netem 1: root .*delay 40ms/);
    assert.match(await sh(t, vm, ['tc', '-n', 'ns-inet', 'qdisc', 'show', 'dev', 've-c1-inet']), /netem 1: root .*delay 40ms/);
    assert.match(await sh(t, vm, ['tc', '-n', 'ns-c1-nat', 'qdisc', 'show', 'dev', 've-c1-nat-inet']), /netem 1: root .*delay 40ms loss 5%/);
    const c0 = (await ping('ns-c0', '100.64.1.254')) - base0;
    const c1 = (await ping('ns-c1', '100.64.2.254')) - base1;
    t.diagnostic(`declared 40 ms on both uplinks: the round trips grew by ${c0.toFixed(1)} ms (c0) and ${c1.toFixed(1)} ms (c1); expected 80`);
    assert.ok(within(c0, 80), `c0 -> inet: the round trip grew by ${c0} ms, not 80 ms ±10%+2`);
    assert.ok(within(c1, 80), `c1 -> inet: the round trip grew by ${c1} ms, not 80 ms ±10%+2`);
    // 1000 pings 2 ms apart (about 40 in flight over 80 ms): the share lost, ±3 points (the
    // binomial's standard deviation at 5% of 1000 is 0.7 points).
    const lossy = pingStats(await sh(t, vm, ping1000('ns-c1', '100.64.2.254')));
    t.diagnostic(`declared 5% loss upstream on c1-nat--inet: ${lossy.lostShare.toFixed(1)}% of ${lossy.sent} pings lost`);
    assert.equal(lossy.sent, 1000);
    assert.ok(Math.abs(lossy.lostShare - 5) <= 3, `${lossy.lostShare}% lost, not 5% ±3 points`);

    // Live: c0-nat's uplink to 10 ms each way, in one step; c1's stays.
    assert.match(await labctl(['link', 'set', 'c0-nat', 'inet', '--delay', '10ms']), /c0-nat--inet: delay 10ms/);
    const live = (await ping('ns-c0', '100.64.1.254')) - base0;
    t.diagnostic(`live 10 ms on c0-nat--inet: the round trip grew by ${live.toFixed(1)} ms; expected 20`);
    assert.ok(within(live, 20), `the round trip grew by ${live} ms, not 20 ms ±10%+2`);
    assert.match(await labctl(['link', 'show', 'article']), /c0-nat--inet .*delay 10ms\s+live/);
    await labctl(['net', 'down', 'article']);
    assert.equal(await sh(t, vm, ['ip', 'netns', 'list']), '');

    // The CGNAT chain: laptop -> home-nat -> cgn -> inet, and back. Every measurement is 1000
    // pings, so that the shortest round trip is as near the jitter's lower bound as the
    // declared loss leaves it: netem's jitter without a distribution is uniform over
    // delay ± jitter, so the shortest round trip of many is 2 x 30 (cgn--inet) + 20 - 10
    // (home-nat--cgn upstream, at its least) = 70 ms more than the ideal chain's. The shortest
    // rather than the average because under software emulation the guest's timers fire late
    // by a few milliseconds now and then, which the average takes in and the minimum does not.
    const cgnFixture = readFileSync(join(ROOT, 'test', 'fixtures', 'good-labs', 'impaired-cgn.yaml'), 'utf8');
    await sh(t, vm, ['tee', CGN_LAB], `${cgnFixture.slice(0, cgnFixture.indexOf('\nlinks:') + 1)}${CGN_LINKS}`);
    await labctl(['net', 'up', CGN_LAB]);
    assert.match(await sh(t, vm, ['tc', '-n', 'ns-ic-home-nat', 'qdisc', 'show', 'dev', 've-home-nat-up']), /netem 1: root .*delay 20ms\s+10ms loss 5%/);
    const chain = async () => pingStats(await sh(t, vm, ping1000('ns-ic-laptop', '100.64.1.254')));
    const declared = await chain();
    // The ideal chain, measured after (the same namespaces, every link reset), for the baseline.
    await labctl(['link', 'reset', '--all']);
    const ideal = await chain();
    t.diagnostic(`ideal chain: shortest RTT ${ideal.min} ms, mdev ${ideal.mdev} ms, ${ideal.lostShare.toFixed(1)}% lost`);
    const judge = (label: string, s: ReturnType<typeof pingStats>, expectedMs: number, lossPercent: number) => {
      const grew = s.min - ideal.min;
      t.diagnostic(
        `${label}: the shortest round trip grew by ${grew.toFixed(1)} ms (expected ${expectedMs}), mdev ${s.mdev} ms (ideal ${ideal.mdev}), ${s.lostShare.toFixed(1)}% lost (expected ${lossPercent}%)`,
      );
      assert.equal(s.sent, 1000);
      assert.ok(within(grew, expectedMs), `${label}: the round trip grew by ${grew} ms, not ${expectedMs} ms ±10%+2`);
      // Uniform ±10 ms: a standard deviation of 5.8 ms, one way.
      assert.ok(s.mdev >= 3 && s.mdev >= 2 * ideal.mdev, `${label}: mdev ${s.mdev} ms with jitter against ${ideal.mdev} ms without`);
      assert.ok(Math.abs(s.lostShare - lossPercent) <= 3, `${label}: ${s.lostShare}% lost, not ${lossPercent}% ±3 points`);
    };
    judge('declared (30 ms; 20 ms ±10 ms, 5% up)', declared, 70, 5);

    // Live: home-nat--cgn upstream to 40 ms ±10 ms and 10% loss; cgn--inet is still ideal
    // after the reset, so the shortest round trip grows by 40 - 10 = 30 ms.
    assert.match(
      await labctl(['link', 'set', 'home-nat', 'cgn', '--delay', '40ms', '--jitter', '10ms', '--loss', '10%', '--direction', 'upstream']),
      /home-nat--cgn/,
    );
    judge('live (40 ms ±10 ms, 10% up)', await chain(), 30, 10);
    await labctl(['net', 'down', 'impcgn']);
    assert.equal(await sh(t, vm, ['ip', 'netns', 'list']), '');
  });
});
