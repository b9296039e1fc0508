// The stock-kernel VM harness (test/support/stock-kernel-vm.ts) and what it is for: the
// guest runs Debian's stock kernel, not this machine's (which has no netem and no WireGuard
// module), with the host's own tools and this checkout. Checked here: the kernel is the
// Debian one; the harness's protocol (argv byte for byte, env, stdin, exit codes, stdout and
// stderr apart, cwd, timeouts) and that nothing the guest writes reaches the host; netem
// delays a veth pair between two namespaces in the guest by what it was told; labctl itself
// brings the article's lab's network up and down in the guest; WireGuard's kernel module
// makes interfaces and carries a tunnel between two namespaces. Where the harness cannot run
// (no qemu, no Debian archive, not x86-64), every test is skipped with the reason.
//
// Each VM's boot time and each command's time are printed as diagnostics (# lines): the
// guest is software-emulated, so they are the figures to watch.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { after, test, type TestContext } from 'node:test';
import { BIN, ROOT } from '../support/cli.js';
import {
  liveVmCount,
  type RunOptions,
  type RunResult,
  runInStockKernel,
  type StockKernelSession,
  stockKernel,
  strayVms,
  withStockKernelSession,
} from '../support/stock-kernel-vm.js';

const kernel = await stockKernel();
const skip = kernel.available ? false : kernel.reason;
const NODE = process.execPath;

after(() => {
  assert.equal(liveVmCount(), 0, 'a VM of this file is still running');
  assert.deepEqual(strayVms(), [], 'a stock-kernel qemu is still running');
  // The harness mounts nothing on the host: the guest's mounts are in the guest.
  assert.deepEqual(
    readFileSync('/proc/self/mounts', 'utf8')
      .split('\n')
      .filter((l) => l.includes('stock-kernel')),
    [],
  );
});

/** Runs argv in the session and prints what it took; fails with the command's output when it does not exit 0 (unless allowFail). */
async function sh(t: TestContext, vm: StockKernelSession, argv: string[], options: Partial<RunOptions> & { allowFail?: boolean } = {}): Promise<RunResult> {
  const r = await vm.run(argv, { timeoutMs: 60_000, ...options });
  t.diagnostic(`${r.durationMs} ms: ${argv.join(' ')} -> ${r.exitCode}`);
  if (!options.allowFail && r.exitCode !== 0) assert.fail(`${argv.join(' ')} exited ${r.exitCode}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

function bootDiagnostic(t: TestContext, vm: StockKernelSession): void {
  t.diagnostic(`${vm.accel} VM booted in ${vm.bootMs} ms (the kernel's part: ${vm.kernelBootMs} ms)`);
}

/** ping's round-trip times, one per reply ("64 bytes from ...: icmp_seq=1 ttl=64 time=101 ms"), and its summary's average. */
function pingTimes(output: string): { times: number[]; avg: number } {
  const times = [...output.matchAll(/ time=([\d.]+) ms/g)].map((m) => Number(m[1]));
  const avg = /rtt min\/avg\/max\/mdev = [\d.]+\/([\d.]+)\//.exec(output)?.[1];
  assert.ok(times.length && avg, `no round-trip times in ping's output:\n${output}`);
  return { times, avg: Number(avg) };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

test('uname -r in the guest is the Debian kernel, not the host`s (one VM for one command)', { skip, timeout: 300_000 }, async (t) => {
  assert.ok(kernel.available);
  const r = await runInStockKernel(['uname', '-r'], { timeoutMs: 30_000 });
  t.diagnostic(`${kernel.package}, ${kernel.accel}: boot ${r.bootMs} ms, uname ${r.durationMs} ms, whole run ${r.totalMs} ms`);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.equal(r.stdout.trim(), kernel.version);
  assert.equal(r.version, kernel.version);
  assert.notEqual(r.stdout.trim(), release());
  assert.match(kernel.version, /^\d+\.\d+\.\d+-\d+-amd64$/);
});

test('the harness: argv byte for byte, env, stdin, exit codes, stderr apart, cwd, timeouts, and the host untouched', { skip, timeout: 300_000 }, async (t) => {
  const probe = join(ROOT, `.stock-kernel-vm-probe-${process.pid}`);
  await withStockKernelSession(async (vm) => {
    bootDiagnostic(t, vm);
    const args = ['a b', "it's", 'line\nbreak', '$HOME', '*', '-n', '', 'ünïcode'];
    const printed = await sh(t, vm, ['printf', '%s\\0', ...args]);
    assert.deepEqual(printed.stdout.split('\0').slice(0, -1), args);

    const env = await sh(t, vm, ['env'], { env: { LABCTL_PROBE: 'x y=z' } });
    const vars = env.stdout.trim().split('\n').sort();
    assert.deepEqual(vars, ['HOME=/root', 'LABCTL_PROBE=x y=z', 'LANG=C.UTF-8', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']);

    assert.equal((await sh(t, vm, ['cat'], { input: 'from the host\n' })).stdout, 'from the host\n');
    assert.equal((await sh(t, vm, ['cat'])).stdout, '', 'no input: empty stdin');
    assert.equal((await sh(t, vm, ['pwd'], { cwd: '/tmp' })).stdout, '/tmp\n');

    const mixed = await sh(t, vm, ['sh', '-c', 'echo out; echo err >&2; exit 7'], { allowFail: true });
    assert.deepEqual([mixed.exitCode, mixed.stdout, mixed.stderr, mixed.timedOut], [7, 'out\n', 'err\n', false]);
    const missing = await sh(t, vm, ['/no/such/program'], { allowFail: true });
    assert.equal(missing.exitCode, 127);

    const slow = await sh(t, vm, ['sleep', '60'], { timeoutMs: 1500, allowFail: true });
    assert.equal(slow.timedOut, true);
    assert.equal(slow.exitCode, 124);
    assert.ok(slow.durationMs < 15_000, `the timeout took ${slow.durationMs} ms`);
    // The VM goes on after a timed-out command.
    assert.equal((await sh(t, vm, ['echo', 'still here'])).stdout, 'still here\n');

    // The host's files are the guest's: this checkout, and its labctl.
    await sh(t, vm, ['test', '-f', BIN]);
    // What the guest writes stays in the guest (a tmpfs over the host's read-only root).
    await sh(t, vm, ['touch', probe]);
    await sh(t, vm, ['test', '-f', probe]);
  });
  assert.equal(existsSync(probe), false, 'a file the guest wrote reached the host');
});

test('netem in the guest: 50 ms on each end of a veth between two namespaces adds 100 ms to ping`s RTT', { skip, timeout: 300_000 }, async (t) => {
  await withStockKernelSession(async (vm) => {
    bootDiagnostic(t, vm);
    await sh(t, vm, ['ip', 'netns', 'add', 'vm-a']);
    await sh(t, vm, ['ip', 'netns', 'add', 'vm-b']);
    await sh(t, vm, ['ip', 'link', 'add', 've-a', 'netns', 'vm-a', 'type', 'veth', 'peer', 'name', 've-b', 'netns', 'vm-b']);
    await sh(t, vm, ['ip', '-n', 'vm-a', 'addr', 'add', '10.99.0.1/24', 'dev', 've-a']);
    await sh(t, vm, ['ip', '-n', 'vm-b', 'addr', 'add', '10.99.0.2/24', 'dev', 've-b']);
    await sh(t, vm, ['ip', '-n', 'vm-a', 'link', 'set', 've-a', 'up']);
    await sh(t, vm, ['ip', '-n', 'vm-b', 'link', 'set', 've-b', 'up']);
    const ping = ['ip', 'netns', 'exec', 'vm-a', 'ping', '-c', '10', '-i', '0.2', '10.99.0.2'];
    const before = pingTimes((await sh(t, vm, ping)).stdout);
    await sh(t, vm, ['ip', 'netns', 'exec', 'vm-a', 'tc', 'qdisc', 'add', 'dev', 've-a', 'root', 'netem', 'delay', '50ms']);
    await sh(t, vm, ['ip', 'netns', 'exec', 'vm-b', 'tc', 'qdisc', 'add', 'dev', 've-b', 'root', 'netem', 'delay', '50ms']);
    assert.match((await sh(t, vm, ['tc', '-n', 'vm-a', 'qdisc', 'show', 'dev', 've-a'])).stdout, /qdisc netem .* delay 50ms/);
    const delayed = pingTimes((await sh(t, vm, ping)).stdout);
    t.diagnostic(
      `ping's RTT without netem: avg ${before.avg} ms, median ${median(before.times)} ms; with 50 ms on each end: avg ${delayed.avg} ms, median ${median(delayed.times)} ms, min ${Math.min(...delayed.times)} ms`,
    );
    // netem holds every packet 50 ms on each way: no reply comes sooner than 100 ms.
    assert.ok(Math.min(...delayed.times) >= 100, `a reply came in ${Math.min(...delayed.times)} ms, sooner than netem's 2 x 50 ms`);
    // The emulated guest adds its own latency, which grows when the host is busy (the round
    // trip without netem took several ms here under load, not the ~0.05 ms of real hardware),
    // and a busy host delays some replies much more: so the median, less the median without
    // netem, is what must be 100 ms (±10% + 2 ms). The average is printed above.
    const added = median(delayed.times) - median(before.times);
    assert.ok(Math.abs(added - 100) <= 100 * 0.1 + 2, `netem added ${added} ms to the median RTT, not 100 ms ±12`);
  });
});

test('labctl in the guest: net up, net status and net down of the article`s lab succeed and leave nothing', { skip, timeout: 600_000 }, async (t) => {
  await withStockKernelSession(async (vm) => {
    bootDiagnostic(t, vm);
    const labctl = (args: string[]) => sh(t, vm, [NODE, BIN, ...args], { timeoutMs: 180_000 });
    const lab = join(ROOT, 'machines', 'article.yaml');
    assert.match((await labctl(['net', 'up', lab])).stdout, /lab "article" is up: 5 namespaces/);
    assert.deepEqual(
      (await sh(t, vm, ['ip', 'netns', 'list'])).stdout
        .split('\n')
        .map((l) => l.split(' ')[0])
        .filter(Boolean)
        .sort(),
      ['ns-c0', 'ns-c0-nat', 'ns-c1', 'ns-c1-nat', 'ns-inet'],
    );
    const status = (await labctl(['net', 'status'])).stdout;
    assert.match(status, /lab article \(up/);
    assert.match(status, /c1-nat\s+ns-c1-nat\s+nat .*restricted-cone/);
    // The lab's routers forward: c0's node reaches the internet namespace through its NAT.
    await sh(t, vm, ['ip', 'netns', 'exec', 'ns-c0', 'ping', '-c', '1', '-W', '5', '100.64.1.254']);
    assert.match((await labctl(['net', 'down', lab])).stdout, /lab "article" is down: removed 5 namespaces/);
    assert.equal((await sh(t, vm, ['ip', 'netns', 'list'])).stdout, '');
    assert.equal((await sh(t, vm, ['nft', 'list', 'ruleset'])).stdout, '');
    assert.deepEqual((await sh(t, vm, ['ip', '-o', 'link', 'show'])).stdout.match(/^\d+: [^:@]+/gm), ['1: lo']);
  });
});

test('WireGuard`s kernel module in the guest: ip link add type wireguard, and a tunnel between two namespaces', { skip, timeout: 300_000 }, async (t) => {
  await withStockKernelSession(async (vm) => {
    bootDiagnostic(t, vm);
    const ns = ['vm-w1', 'vm-w2'] as const;
    const key = async (argv: string[], input?: string) => (await sh(t, vm, argv, { input })).stdout.trim();
    const priv = [await key(['wg', 'genkey']), await key(['wg', 'genkey'])];
    const pub = [await key(['wg', 'pubkey'], `${priv[0]}\n`), await key(['wg', 'pubkey'], `${priv[1]}\n`)];
    for (const n of ns) await sh(t, vm, ['ip', 'netns', 'add', n]);
    await sh(t, vm, ['ip', 'link', 'add', 've-w1', 'netns', ns[0], 'type', 'veth', 'peer', 'name', 've-w2', 'netns', ns[1]]);
    for (const i of [0, 1]) {
      const n = ns[i]!;
      const other = 1 - i;
      await sh(t, vm, ['ip', '-n', n, 'addr', 'add', `10.98.0.${i + 1}/24`, 'dev', `ve-w${i + 1}`]);
      await sh(t, vm, ['ip', '-n', n, 'link', 'set', `ve-w${i + 1}`, 'up']);
      await sh(t, vm, ['ip', '-n', n, 'link', 'add', 'wg0', 'type', 'wireguard']);
      // wg reads the private key from a file: the command's stdin, so it never lands on a disk.
      await sh(
        t,
        vm,
        [
          ...['ip', 'netns', 'exec', n, 'wg', 'set', 'wg0', 'listen-port', '51820', 'private-key', '/dev/stdin'],
          ...['peer', pub[other]!, 'allowed-ips', `10.97.0.${other + 1}/32`, 'endpoint', `10.98.0.${other + 1}:51820`],
        ],
        { input: `${priv[i]}\n` },
      );
      await sh(t, vm, ['ip', '-n', n, 'addr', 'add', `10.97.0.${i + 1}/24`, 'dev', 'wg0']);
      await sh(t, vm, ['ip', '-n', n, 'link', 'set', 'wg0', 'up']);
    }
    assert.match((await sh(t, vm, ['ip', '-d', '-n', ns[0], 'link', 'show', 'wg0'])).stdout, /\bwireguard\b/);
    await sh(t, vm, ['ip', 'netns', 'exec', ns[0], 'ping', '-c', '3', '-i', '0.2', '-W', '5', '10.97.0.2']);
    const handshakes = (await sh(t, vm, ['ip', 'netns', 'exec', ns[0], 'wg', 'show', 'wg0', 'latest-handshakes'])).stdout;
    assert.match(handshakes, new RegExp(`^${pub[1]!.replace(/[+/]/g, '\\$&')}\\t[1-9]\\d*$`, 'm'), `no handshake: ${handshakes}`);
    assert.match((await sh(t, vm, ['cat', '/proc/modules'])).stdout, /^wireguard /m);
  });
});
