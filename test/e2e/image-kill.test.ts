// `labctl image build` killed with SIGKILL while debootstrap runs, for real (root): a killed
// labctl cleans up nothing, so what it started must die with it (the parent-death signal of
// the commands run() starts) or be stopped by the next build of the image before that one
// touches the stale build (image/steps.ts removeNewBuild). The next build then succeeds, and
// from the moment it is past its clean-up, no process of the killed build runs.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { imagePaths, imageState, loopsUnder, mountsUnder } from '../../src/image/index.js';
import { detachLoops, unmountTree } from '../../src/image/mount.js';
import { killProcessesUsing } from '../../src/image/procs.js';
import { descendants, pids, processId, stillRunning, type ProcessId } from '../../src/util/process.js';
import { BIN } from '../support/cli.js';
import { TEST_CACHE_DIR, TEST_MIRROR, makeScratchDataDir } from '../support/test-image.js';

const isRoot = process.getuid?.() === 0;
const ROOT = new URL('../../', import.meta.url).pathname;
const NAME = 'stale';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Started {
  child: ChildProcess;
  output: () => string;
  /** resolves with the exit status (null: killed by a signal) */
  exited: Promise<number | null>;
}

function startCli(args: string[]): Started {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (output += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (output += d));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return { child, output: () => output, exited };
}

function cmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return [];
  }
}

function describeProcess(p: ProcessId): string {
  return `${p.pid} (${cmdline(p.pid).join(' ').slice(0, 100) || '?'})`;
}

/** Polls until fn returns a value (not undefined), or fails after ms. */
async function waitFor<T>(what: string, ms: number, fn: () => T | undefined, pollMs = 100): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(pollMs);
  }
}

describe('image build killed with SIGKILL (root, real)', { skip: !isRoot && 'needs root' }, () => {
  let dataDir: string;
  let paths: ReturnType<typeof imagePaths>;
  const started: Started[] = [];
  const firstBuild: ProcessId[] = [];

  before(() => {
    dataDir = makeScratchDataDir('image-kill');
    paths = imagePaths(dataDir, NAME);
  });

  after(async () => {
    // Whatever happened: no labctl of this test, no process of its builds, no mount, no loop device, no data dir.
    for (const s of started) s.child.kill('SIGKILL');
    for (const p of firstBuild) if (stillRunning(p)) process.kill(p.pid, 'SIGKILL');
    await killProcessesUsing([dataDir], 1000);
    for (const m of mountsUnder(dataDir).reverse()) await unmountTree(m.mountPoint, { killUsers: true, step: 'test cleanup' }).catch(() => undefined);
    for (const l of loopsUnder(dataDir)) await detachLoops(l.backingFile).catch(() => undefined);
    if (!mountsUnder(dataDir).length && !loopsUnder(dataDir).length) rmSync(dataDir, { recursive: true, force: true });
    else process.stderr.write(`# left for inspection: ${dataDir}\n`);
  });

  it('the next build stops what the killed one left running, then builds', { timeout: 240_000 }, async () => {
    // 1. A cold build: --no-cache and its own empty cache dir (DATA/cache), so debootstrap runs, from the mirror.
    const first = startCli(['image', 'build', 'bookworm', '--name', NAME, '--data-dir', dataDir, '--no-cache', '--mirror', TEST_MIRROR, '--verbose']);
    started.push(first);
    const labctl = first.child.pid!;
    const target = join(paths.newMountDir, 'rootfs');
    const debootstrap = await waitFor('debootstrap to run', 120_000, () =>
      pids().find((pid) => cmdline(pid).some((a) => a.endsWith('debootstrap')) && cmdline(pid).includes(target)),
    );
    // Let it get to work (its shell forks wget, gpgv, perl...), then kill labctl at once.
    await waitFor('debootstrap to be at work', 60_000, () => (/I: Retriev|I: Validat/.test(first.output()) ? true : undefined));
    await sleep(1500);
    firstBuild.push(...[processId(labctl), ...descendants([labctl])].filter((p): p is ProcessId => p !== undefined));
    const direct = firstBuild.filter((p) => parentOf(p.pid) === labctl);
    assert.ok(direct.length, 'labctl runs a command');
    assert.ok(
      firstBuild.some((p) => p.pid === debootstrap),
      `debootstrap ${debootstrap} is in labctl's tree`,
    );
    first.child.kill('SIGKILL');
    assert.equal(await first.exited, null, 'labctl was killed');

    // 2. The commands labctl started die with it (parent-death signal): debootstrap itself at once.
    await waitFor('the commands labctl started to die with it', 2000, () => (direct.some(stillRunning) ? undefined : true), 20);
    const survivors = firstBuild.filter(stillRunning);
    process.stderr.write(
      `# right after the kill, ${survivors.length} of the build's ${firstBuild.length} processes still ran: ${survivors.map(describeProcess).join(', ') || 'none'}\n`,
    );

    // 3. One that would outlive it for sure: a process of the killed build still working in its
    // rootfs that ignores SIGTERM, as a debootstrap child (a dpkg in its chroot) can be.
    assert.ok(existsSync(target), `${target} is still there (mounted)`);
    const stubborn = spawn('sh', ['-c', 'trap "" TERM; while :; do sleep 1; done'], { cwd: target, stdio: 'ignore', detached: true });
    stubborn.unref();
    const stubbornId = processId(stubborn.pid!)!;
    firstBuild.push(stubbornId);
    assert.ok(
      mountsUnder(dataDir).some((m) => m.mountPoint === paths.newMountDir),
      'the killed build left its mount',
    );

    // 4. The next build of the same image (from the shared cache: no debootstrap this time).
    const second = startCli([
      'image',
      'build',
      'bookworm',
      '--name',
      NAME,
      '--data-dir',
      dataDir,
      '--cache-dir',
      TEST_CACHE_DIR,
      '--mirror',
      TEST_MIRROR,
      '--verbose',
    ]);
    started.push(second);
    // Past its clean-up, the build makes a new image file: by then none of the killed build's processes may run.
    await waitFor('the second build to get past its clean-up', 120_000, () => (/Create the sparse image file/.test(second.output()) ? true : undefined), 10);
    const stillThere = firstBuild.filter(stillRunning);
    assert.deepEqual(stillThere.map(describeProcess), [], 'processes of the killed build still ran after the next build had cleaned up');
    const status = await second.exited;
    assert.equal(status, 0, second.output());
    process.stderr.write(
      `# the next build said: ${
        second
          .output()
          .split('\n')
          .find((l) => l.includes('warning: stopped')) ?? '(no warning)'
      }\n`,
    );
    assert.match(
      second.output(),
      new RegExp(`warning: stopped \\d+ process\\(es\\) of an earlier build of image ${NAME} that was killed: .*\\b${stubbornId.pid} \\(sh\\)`),
    );
    assert.equal(imageState(paths).state, 'ready');
    assert.deepEqual(firstBuild.filter(stillRunning).map(describeProcess), []);
    assert.ok(!existsSync(paths.newImageFile) && !existsSync(paths.newMountDir), 'no .new leftovers');
    assert.deepEqual(
      loopsUnder(dataDir).map((l) => l.backingFile),
      [],
      "no loop device left (the killed build's is freed, the new image is not mounted)",
    );
  });
});

function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return undefined;
  }
}
