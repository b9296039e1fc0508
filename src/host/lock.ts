// labctl's one lock: a file that holds its owner's pid (one per lab, one per internet
// namespace a check uses, one per image and per image build). A lock whose holder has died
// (a crash, SIGKILL) is taken over. Within one process, holders of the same lock queue up.
//
// The lock file holds its pid from the moment it exists (written aside, then linked into
// place), and a stale lock is moved aside and checked before it is dropped, so that a lock
// another labctl took over meanwhile is put back, not deleted.
import { closeSync, fstatSync, linkSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { listDir } from '../util/fs.js';
import { alive, sleep } from '../util/process.js';
import { LabctlError } from '../util/errors.js';

/** A lock a live process holds (after waiting `waitMs`, if given). */
export class LockBusyError extends LabctlError {
  constructor(
    readonly file: string,
    readonly holder: number,
    what: string,
  ) {
    super(`${what} (process ${holder} holds ${file})`);
    this.name = 'LockBusyError';
  }
}

/** What a lock file holds (a pid) and its inode, or undefined when there is no lock file. */
function lockHolder(path: string): { text: string; pid: number; ino: number } | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    const text = readFileSync(fd, 'utf8');
    return { text, pid: Number(text.trim()), ino: fstatSync(fd).ino };
  } finally {
    closeSync(fd);
  }
}

/**
 * Removes the files a labctl killed while taking this lock left beside it (its pid file,
 * LOCK.PID, or a stale lock it had moved aside, LOCK.stale.PID): SIGKILL, or Ctrl-C while
 * waiting for a busy lock, runs no clean-up.
 */
function sweepLeftovers(path: string): void {
  const base = basename(path);
  for (const name of listDir(dirname(path))) {
    if (!name.startsWith(`${base}.`)) continue;
    const m = /^(?:stale\.)?(\d+)$/.exec(name.slice(base.length + 1));
    if (!m || Number(m[1]) === process.pid || alive(Number(m[1]))) continue;
    try {
      unlinkSync(join(dirname(path), name));
    } catch {
      /* another labctl swept it first */
    }
  }
}

export interface LockOptions {
  /** What is busy, for the default errors: "image bookworm is busy". */
  what?: string;
  /** The error for a lock a live process holds (default: LockBusyError with `what`). */
  busy?: (holderPid: number) => Error;
  /** The error for a lock that keeps changing hands while this one tries to take it. */
  contended?: () => Error;
  /** How long to wait for a live holder to finish; 0 (the default): fail at once. */
  waitMs?: number;
  pollMs?: number;
}

/** The tail of each lock's in-process queue: holders in one process take turns, not each other's lock. */
const queues = new Map<string, Promise<void>>();

/** Takes the lock at `path` (making its directory) and returns its release; release it once. */
export async function acquireLock(path: string, options: LockOptions = {}): Promise<() => void> {
  const previous = queues.get(path) ?? Promise.resolve();
  let leaveQueue!: () => void;
  const turn = new Promise<void>((r) => (leaveQueue = r));
  const tail = previous.then(() => turn);
  queues.set(path, tail);
  const done = () => {
    leaveQueue();
    if (queues.get(path) === tail) queues.delete(path);
  };
  try {
    await previous;
    await takeFile(path, options);
  } catch (e) {
    done();
    throw e;
  }
  const release = () => {
    process.off('exit', release);
    try {
      unlinkSync(path);
    } catch {
      /* already gone */
    }
  };
  // process.exit() (e.g. after Ctrl-C rolled `up` back) skips finally blocks, not 'exit'.
  process.once('exit', release);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    release();
    done();
  };
}

/** Runs fn while holding the lock at `path`. */
export async function withLock<T>(path: string, options: LockOptions, fn: () => Promise<T>): Promise<T> {
  const release = await acquireLock(path, options);
  try {
    return await fn();
  } finally {
    release();
  }
}

/** Creates the lock file holding this process's pid, waiting for or taking over its holder. */
async function takeFile(path: string, options: LockOptions): Promise<void> {
  const what = options.what ?? `${path} is busy`;
  const busy = options.busy ?? ((pid: number) => new LockBusyError(path, pid, what));
  const contended = options.contended ?? (() => new LabctlError(`${what}: its lock ${path} keeps changing hands; try again`));
  mkdirSync(dirname(path), { recursive: true });
  const deadline = Date.now() + (options.waitMs ?? 0);
  sweepLeftovers(path);
  const mine = `${path}.${process.pid}`;
  writeFileSync(mine, String(process.pid), { mode: 0o600 });
  try {
    for (let attempts = 0; ; ) {
      try {
        linkSync(mine, path);
        return;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const holder = lockHolder(path);
      if (holder?.pid && holder.pid !== process.pid && alive(holder.pid)) {
        if (Date.now() >= deadline) throw busy(holder.pid);
        await sleep(options.pollMs ?? 200);
        continue;
      }
      if (++attempts > 10) throw contended();
      if (!holder) continue; // released meanwhile
      const aside = `${path}.stale.${process.pid}`;
      try {
        renameSync(path, aside); // stale: its holder is gone
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; // someone else removed it first
        throw e;
      }
      const moved = lockHolder(aside);
      if (moved && (moved.ino !== holder.ino || moved.text !== holder.text)) {
        // Another labctl took the stale lock over before this one moved it: put its lock back.
        try {
          linkSync(aside, path);
        } catch {
          /* a third labctl took the free slot meanwhile; it holds the lock now */
        }
      }
      unlinkSync(aside);
    }
  } finally {
    try {
      unlinkSync(mine);
    } catch {
      /* already gone */
    }
  }
}
