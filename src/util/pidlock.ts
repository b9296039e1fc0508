// A lock file that holds its owner's pid: labctl's locks (one per lab, one per internet
// namespace a check uses). A lock whose holder has died (a crash, SIGKILL) is taken over.
//
// The lock file holds its pid from the moment it exists (written aside, then linked into
// place), and a stale lock is moved aside and checked before it is dropped, so that a lock
// another labctl took over meanwhile is put back, not deleted.
import { closeSync, fstatSync, linkSync, openSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { listDir } from './fs.js';
import { alive, sleep } from './process.js';

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
export function sweepLeftovers(path: string): void {
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

export interface PidLockOptions {
  /** The error for a lock a live process holds (after waitMs, if given). */
  busy: (holderPid: number) => Error;
  /** The error for a lock that keeps changing hands while this one tries to take it. */
  contended: () => Error;
  /** How long to wait for a live holder to finish; 0 (the default): fail at once. */
  waitMs?: number;
  pollMs?: number;
}

/** Takes the lock at `path` (its directory must exist) for the duration of fn. */
export async function withPidLock<T>(path: string, fn: () => Promise<T>, options: PidLockOptions): Promise<T> {
  const deadline = Date.now() + (options.waitMs ?? 0);
  sweepLeftovers(path);
  const mine = `${path}.${process.pid}`;
  writeFileSync(mine, String(process.pid), { mode: 0o600 });
  try {
    for (let attempts = 0; ; ) {
      try {
        linkSync(mine, path);
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const holder = lockHolder(path);
      if (holder?.pid && holder.pid !== process.pid && alive(holder.pid)) {
        if (Date.now() >= deadline) throw options.busy(holder.pid);
        await sleep(options.pollMs ?? 200);
        continue;
      }
      if (++attempts > 10) throw options.contended();
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
  const release = () => {
    try {
      unlinkSync(path);
    } catch {
      /* already gone */
    }
  };
  // process.exit() (e.g. after Ctrl-C rolled `up` back) skips finally blocks, not 'exit'.
  process.once('exit', release);
  try {
    return await fn();
  } finally {
    process.off('exit', release);
    release();
  }
}
