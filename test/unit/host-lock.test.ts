// labctl's pid lock files (one per lab, per internet namespace a check uses, per image), for real
// in a temporary directory: taken and released, a dead holder's lock taken over, a live
// holder's refused, and what a labctl killed while waiting for a lock left is swept.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import { withLock, type LockOptions } from '../../src/host/lock.js';

const dir = mkdtempSync(join(tmpdir(), 'labctl-lock-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const lock = join(dir, 'lab.lock');
const options: LockOptions = { busy: (pid) => new Error(`busy: held by ${pid}`), contended: () => new Error('contended') };

/** A pid that has certainly ended: a child that has exited and been reaped. */
function deadPid(): number {
  const pid = spawnSync('true').pid;
  assert.ok(pid);
  return pid;
}

describe('withLock', () => {
  test('holds the lock (with its pid) while fn runs, and leaves nothing after', async () => {
    const seen = await withLock(lock, options, async () => readFileSync(lock, 'utf8'));
    assert.equal(seen, String(process.pid));
    assert.deepEqual(readdirSync(dir), []);
  });

  test("a dead holder's lock is taken over", async () => {
    writeFileSync(lock, String(deadPid()));
    assert.equal(await withLock(lock, options, async () => readFileSync(lock, 'utf8')), String(process.pid));
    assert.deepEqual(readdirSync(dir), []);
  });

  test("a live holder's lock is refused, and the refused try leaves nothing", async () => {
    const holder = spawn('sleep', ['30']);
    try {
      writeFileSync(lock, String(holder.pid));
      await assert.rejects(
        withLock(lock, options, async () => 'ran'),
        new RegExp(`busy: held by ${holder.pid}`),
      );
      assert.deepEqual(readdirSync(dir), ['lab.lock']);
    } finally {
      holder.kill('SIGKILL');
      rmSync(lock, { force: true });
    }
  });

  test('what a labctl killed while it waited for the lock left behind is swept by the next', async () => {
    // This process holds the lock; a child waits for it and is killed (no clean-up runs).
    const pidlock = fileURLToPath(new URL('../../src/host/lock.ts', import.meta.url));
    const waiter = `import { withLock } from ${JSON.stringify(pidlock)};
      await withLock(${JSON.stringify(lock)}, { busy: () => new Error('busy'), contended: () => new Error('contended'), waitMs: 60000, pollMs: 50 }, async () => {});`;
    await withLock(lock, options, async () => {
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', waiter], { stdio: 'ignore' });
      const leftover = join(dir, `lab.lock.${child.pid}`);
      for (let i = 0; i < 200 && !existsSync(leftover); i++) await new Promise((r) => setTimeout(r, 50));
      assert.ok(existsSync(leftover), 'the waiting labctl wrote its pid file');
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      assert.ok(existsSync(leftover), 'SIGKILL left it behind');
    });
    writeFileSync(join(dir, `lab.lock.stale.${deadPid()}`), '1');
    await withLock(lock, options, async () => undefined);
    assert.deepEqual(readdirSync(dir), [], 'swept');
  });
});
