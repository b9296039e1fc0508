// The state file records what a lab owns, so that `down` removes exactly that (and what
// a crashed `up` left), and never another lab's or the host's objects. One JSON file per
// lab under /run/labctl (root-only), written before anything is created.
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

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

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes the lab's lock for the duration of fn. A lock whose holder has died (a crash,
 * SIGKILL) is taken over; a live holder makes this fail at once with a clear message.
 */
export async function withLabLock<T>(lab: string, fn: () => Promise<T>): Promise<T> {
  ensureDir();
  const path = join(STATE_DIR, `${lab}.lock`);
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 2) throw e;
      const holder = Number(readFileSync(path, 'utf8').trim());
      if (holder && holder !== process.pid && alive(holder)) {
        throw new LockedError(`lab "${lab}" is being changed by another labctl (pid ${holder}); wait for it to finish`);
      }
      try {
        unlinkSync(path); // stale: its holder is gone
      } catch {
        /* someone else took it over first; retry */
      }
    }
  }
  try {
    return await fn();
  } finally {
    try {
      unlinkSync(path);
    } catch {
      /* already gone */
    }
  }
}
