// netem link impairments, where this machine's kernel cannot show them: in a VM with Debian's
// stock kernel (test/support/stock-kernel-vm.ts), labctl brings the default lab's network up
// with a 40 ms delay declared on both uplinks, and ping's round trip from each node to the
// internet's end of its uplink crosses that uplink twice: 2 x 40 = 80 ms more than without
// the delay (measured first: the VM is emulated, and its own round trip is some
// milliseconds), within ±10% + 2 ms.
// (Not to the other NAT's outside address: a NAT router answers no unsolicited ping, its
// input chain drops what is not established.) A live `link set` then changes one uplink's
// delay in one step. (The accuracy of loss and jitter,
// and `check` over impaired links, are for the tests that build on this.)
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, type TestContext, test } from 'node:test';
import { BIN, ROOT } from '../support/cli.js';
import { liveVmCount, type StockKernelSession, stockKernel, withStockKernelSession } from '../support/stock-kernel-vm.js';

const kernel = await stockKernel();
const skip = kernel.available ? false : kernel.reason;
const LAB = '/root/article-delay.yaml';
const LINKS = 'links:\n  - { between: [c0-nat, inet], delay: 40ms }\n  - { between: [c1-nat, inet], delay: 40ms }\n';

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

const within = (measured: number, expected: number) => Math.abs(measured - expected) <= expected * 0.1 + 2;

test('a 40 ms delay on both uplinks of the default lab: each node pings the internet in 80 ms; link set changes it live', {
  skip,
  timeout: 600_000,
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
    const c0 = (await ping('ns-c0', '100.64.1.254')) - base0;
    const c1 = (await ping('ns-c1', '100.64.2.254')) - base1;
    t.diagnostic(`declared 40 ms on both uplinks: the round trips grew by ${c0.toFixed(1)} ms (c0) and ${c1.toFixed(1)} ms (c1); expected 80`);
    assert.ok(within(c0, 80), `c0 -> inet: the round trip grew by ${c0} ms, not 80 ms ±10%+2`);
    assert.ok(within(c1, 80), `c1 -> inet: the round trip grew by ${c1} ms, not 80 ms ±10%+2`);

    // Live: c0-nat's uplink to 10 ms each way, in one step; c1's stays.
    assert.match(await labctl(['link', 'set', 'c0-nat', 'inet', '--delay', '10ms']), /c0-nat--inet: delay 10ms/);
    const live = (await ping('ns-c0', '100.64.1.254')) - base0;
    t.diagnostic(`live 10 ms on c0-nat--inet: the round trip grew by ${live.toFixed(1)} ms; expected 20`);
    assert.ok(within(live, 20), `the round trip grew by ${live} ms, not 20 ms ±10%+2`);
    assert.match(await labctl(['link', 'show', 'article']), /c0-nat--inet .*delay 10ms\s+live/);
    await labctl(['net', 'down', 'article']);
    assert.equal(await sh(t, vm, ['ip', 'netns', 'list']), '');
  });
});
