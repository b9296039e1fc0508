// The state file records what a lab owns, so that `down` removes exactly that (and what
// a crashed `up` left), and never another lab's or the host's objects. One JSON file per
// lab under /run/labctl (root-only), written before anything is created.
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withPidLock } from '../util/pidlock.js';

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
  /** router: for a node's namespace, the NAT (or internet) it routes through. */
  namespaces: { netns: string; owner: string; role: string; router?: string }[];
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

/** Takes the lab's lock for the duration of fn; a live holder makes this fail at once with a clear message. */
export async function withLabLock<T>(lab: string, fn: () => Promise<T>): Promise<T> {
  ensureDir();
  const path = join(STATE_DIR, `${lab}.lock`);
  return withPidLock(path, fn, {
    busy: (pid) => new LockedError(`lab "${lab}" is being changed by another labctl (pid ${pid}); wait for it to finish`),
    contended: () => new LockedError(`lab "${lab}" is being changed by another labctl (its lock ${path} keeps changing); try again`),
  });
}
