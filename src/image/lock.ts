// A lock file per resource, safe across processes (node:test runs each test file in
// its own process) and within one process. A lock whose holder died is taken over.
import { mkdirSync, openSync, readFileSync, unlinkSync, writeSync, closeSync } from 'node:fs';
import { dirname } from 'node:path';
import { alive, sleep } from '../util/process.js';

const localQueues = new Map<string, Promise<void>>();

function holderOf(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

export class LockBusyError extends Error {
  constructor(
    readonly file: string,
    readonly holder: number | undefined,
    what: string,
  ) {
    super(`${what} (process ${holder ?? '?'} holds ${file})`);
    this.name = 'LockBusyError';
  }
}

export interface LockOptions {
  /** how long to wait for another holder; 0 = fail at once */
  waitMs?: number;
  /** the error message when the lock is busy, e.g. "image x is busy" */
  what?: string;
}

async function acquireFile(file: string, options: LockOptions): Promise<() => void> {
  mkdirSync(dirname(file), { recursive: true });
  const deadline = Date.now() + (options.waitMs ?? 0);
  for (;;) {
    try {
      const fd = openSync(file, 'wx', 0o644);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => {
        if (holderOf(file) === process.pid) {
          try {
            unlinkSync(file);
          } catch {
            /* already gone */
          }
        }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const holder = holderOf(file);
    if (holder === undefined || (holder !== process.pid && !alive(holder))) {
      // Empty (a holder died between open and write) or stale: take it over.
      // A just-created empty file gets a moment to be written first.
      if (holder === undefined) await sleep(100);
      if (holderOf(file) === holder) {
        try {
          unlinkSync(file);
        } catch {
          /* someone else took it over */
        }
      }
      continue;
    }
    if (Date.now() >= deadline) throw new LockBusyError(file, holder, options.what ?? file);
    await sleep(200);
  }
}

/** Runs fn while holding the lock file (and an in-process queue for the same file). */
export async function withLock<T>(file: string, options: LockOptions, fn: () => Promise<T>): Promise<T> {
  const previous = localQueues.get(file) ?? Promise.resolve();
  let releaseLocal!: () => void;
  const mine = new Promise<void>((r) => (releaseLocal = r));
  const chained = previous.then(() => mine);
  localQueues.set(file, chained);
  try {
    await previous;
    const release = await acquireFile(file, options);
    try {
      return await fn();
    } finally {
      release();
    }
  } finally {
    releaseLocal();
    if (localQueues.get(file) === chained) localQueues.delete(file);
  }
}

/** Takes the lock and returns its release function (for holds that span callbacks). */
export async function acquireLock(file: string, options: LockOptions = {}): Promise<() => void> {
  return acquireFile(file, options);
}
