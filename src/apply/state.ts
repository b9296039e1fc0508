// The state file records what a lab owns, so that `down` removes exactly that (and what
// a crashed `up` left), and never another lab's or the host's objects. One JSON file per
// lab under /run/labctl (root-only), written before anything is created.
import { chmodSync, closeSync, existsSync, fstatSync, linkSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { alive } from '../util/process.js';

export const STATE_DIR = process.env.LABCTL_STATE_DIR ?? '/run/labctl';

export interface MachineState {
  name: string;
  netns: string;
  image: string;
  /** The read-only subvolume the machine boots an ephemeral snapshot of. */
  directory: string;
  backend: 'systemd' | 'direct';
  /** Direct backend: the nspawn process and the container's PID 1. */
  nspawnPid?: number;
  leaderPid?: number;
  unit?: string;
  startedAt?: string;
}

export interface LabState {
  lab: string;
  source: string;
  /** Plan hash: `up` of a changed lab file is refused until `down`. */
  planHash: string;
  /** `creating` until every step of `up` has finished. */
  status: 'creating' | 'up';
  createdAt: string;
  namespaces: { netns: string; owner: string; role: string }[];
  nats: { name: string; netns: string; mapping: string; filtering: string; declaredAs?: string }[];
  machines?: MachineState[];
}

function ensureDir(): void {
  if (!existsSync(STATE_DIR)) mkdirSync(STATE_DIR, { recursive: true, mode: 0o700 });
  chmodSync(STATE_DIR, 0o700);
}

export const statePath = (lab: string) => join(STATE_DIR, `${lab}.json`);

export function readState(lab: string): LabState | undefined {
  try {
    return JSON.parse(readFileSync(statePath(lab), 'utf8')) as LabState;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`cannot read the state file ${statePath(lab)}: ${String(e)}`);
  }
}

export function writeState(state: LabState): void {
  ensureDir();
  const tmp = `${statePath(state.lab)}.tmp`;
  writeFileSync(tmp, JSON.stringify(state, null, 2) + '\n', { mode: 0o600 });
  renameSync(tmp, statePath(state.lab));
}

export function removeState(lab: string): void {
  try {
    unlinkSync(statePath(lab));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

export function allStates(): LabState[] {
  if (!existsSync(STATE_DIR)) return [];
  const out: LabState[] = [];
  for (const f of readdirSync(STATE_DIR)) {
    if (!f.endsWith('.json')) continue;
    try {
      out.push(JSON.parse(readFileSync(join(STATE_DIR, f), 'utf8')) as LabState);
    } catch {
      /* a half-written file from another process; skip it */
    }
  }
  return out;
}

export class LockedError extends Error {}

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
 * Takes the lab's lock for the duration of fn. A lock whose holder has died (a crash,
 * SIGKILL) is taken over; a live holder makes this fail at once with a clear message.
 *
 * The lock file holds its pid from the moment it exists (written aside, then linked into
 * place), and a stale lock is moved aside and checked before it is dropped, so that a
 * lock another labctl took over meanwhile is put back, not deleted.
 */
export async function withLabLock<T>(lab: string, fn: () => Promise<T>): Promise<T> {
  ensureDir();
  const path = join(STATE_DIR, `${lab}.lock`);
  const mine = `${path}.${process.pid}`;
  writeFileSync(mine, String(process.pid), { mode: 0o600 });
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        linkSync(mine, path);
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const holder = lockHolder(path);
      if (holder && holder.pid && holder.pid !== process.pid && alive(holder.pid)) {
        throw new LockedError(`lab "${lab}" is being changed by another labctl (pid ${holder.pid}); wait for it to finish`);
      }
      if (attempt >= 10) throw new LockedError(`lab "${lab}" is being changed by another labctl (its lock ${path} keeps changing); try again`);
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
