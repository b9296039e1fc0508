// The state file records what a lab owns, so that `down` removes exactly that (and what
// a crashed `up` left), and never another lab's or the host's objects. One JSON file per
// lab in the run dir (host/dirs.ts: /run/labctl, root-only), written before anything is created.
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { withLock } from './lock.js';
import { runDir } from './dirs.js';
import { LabctlError } from '../util/errors.js';
import type { LinkShaping } from '../lab/impairment.js';

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
  /** The lab file's `env:` for the machine: `labctl exec` and `shell` pass it in too. */
  env?: Record<string, string>;
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
  /** Live changes to links (`labctl link set|reset|down`), one entry per changed link; the others are as the lab file says. */
  links?: LinkLiveState[];
}

export interface LinkLiveState {
  /** The link as `labctl link show` names it: `c0--c0-nat`, the member farther from the internet first. */
  link: string;
  /** Set by `link set`/`link reset`: what the link does now instead of what the lab file declares (an empty direction: nothing). */
  impairment?: LinkShaping;
  /** Taken down by `link down` (an outage), until `link up`. */
  down?: boolean;
}

/** Makes the run dir (root-only) and returns it. */
export function ensureRunDir(): string {
  const dir = runDir();
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  return dir;
}

export const statePath = (lab: string) => join(runDir(), `${lab}.json`);

/** Where a lab keeps its run files (console logs, notify sockets, ruleset files). */
export const labRunDir = (lab: string) => join(runDir(), lab);

/** An image a lab boots (an absolute data dir), recorded before `up` mounts it. */
export interface ImageUse {
  image: string;
  dataDir: string;
}

const imageUseFile = (lab: string, dir = runDir()) => join(dir, lab, 'image.json');

/**
 * Records which images `lab` uses (its machines may boot different ones), in its run dir,
 * before `up` mounts them: from then on until `down` (or a failed `up`) removes the run
 * dir, a `down` of another lab leaves them mounted even while this lab's machines are not
 * recorded yet.
 */
export function recordImageUses(lab: string, uses: ImageUse[]): void {
  mkdirSync(join(ensureRunDir(), lab), { recursive: true, mode: 0o700 });
  writeFileSync(imageUseFile(lab), `${JSON.stringify(uses)}\n`, { mode: 0o600 });
}

/** The images a lab recorded (none: an empty list). A single record is what labctl before per-machine images wrote. */
export function imageUsesOf(lab: string, dir = runDir()): ImageUse[] {
  try {
    const recorded = JSON.parse(readFileSync(imageUseFile(lab, dir), 'utf8')) as ImageUse[] | ImageUse;
    return Array.isArray(recorded) ? recorded : [recorded];
  } catch {
    return [];
  }
}

/**
 * Images mounted by hand (`labctl image mount`) stay mounted until `labctl image umount`:
 * `down` of the last lab that boots one leaves it. One file per image, named by a hash of
 * its data dir and name, in the run dir (gone at reboot, as the mounts are).
 */
const pinFile = (use: ImageUse, dir = runDir()) =>
  join(dir, 'mounted-images', `${createHash('sha256').update(`${use.dataDir}\0${use.image}`).digest('hex').slice(0, 16)}.json`);

export function pinImage(use: ImageUse): void {
  mkdirSync(join(ensureRunDir(), 'mounted-images'), { recursive: true, mode: 0o700 });
  writeFileSync(pinFile(use), `${JSON.stringify(use)}\n`, { mode: 0o600 });
}

export function unpinImage(use: ImageUse): void {
  rmSync(pinFile(use), { force: true });
  try {
    rmdirSync(join(runDir(), 'mounted-images'));
  } catch {
    /* other images are pinned, or none ever was */
  }
}

export const isImagePinned = (use: ImageUse, dir = runDir()): boolean => existsSync(pinFile(use, dir));

/** Every pinned image (`dir`: another run dir). */
export function imagePins(dir: string = runDir()): ImageUse[] {
  const pins = join(dir, 'mounted-images');
  if (!existsSync(pins)) return [];
  return readdirSync(pins).flatMap((f) => {
    try {
      return [JSON.parse(readFileSync(join(pins, f), 'utf8')) as ImageUse];
    } catch {
      return [];
    }
  });
}

/** Every lab's recorded images, one entry each (`dir`: another run dir, for tests). */
export function allImageUses(dir: string = runDir()): { lab: string; use: ImageUse }[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? imageUsesOf(e.name, dir).map((use) => ({ lab: e.name, use })) : []));
}

export function readState(lab: string): LabState | undefined {
  try {
    return JSON.parse(readFileSync(statePath(lab), 'utf8')) as LabState;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`cannot read the state file ${statePath(lab)}: ${String(e)}`);
  }
}

export function writeState(state: LabState): void {
  ensureRunDir();
  const tmp = `${statePath(state.lab)}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, statePath(state.lab));
}

export function removeState(lab: string): void {
  try {
    unlinkSync(statePath(lab));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/** Every lab's state (`dir`: another run dir, for tests); a file that cannot be parsed is skipped. */
export function allStates(dir: string = runDir()): LabState[] {
  if (!existsSync(dir)) return [];
  const out: LabState[] = [];
  for (const f of readdirSync(dir)) {
    if (!f.endsWith('.json')) continue;
    try {
      out.push(JSON.parse(readFileSync(join(dir, f), 'utf8')) as LabState);
    } catch {
      /* a half-written file from another process; skip it */
    }
  }
  return out;
}

/** Takes the lab's lock for the duration of fn; a live holder makes this fail at once with a clear message. */
export async function withLabLock<T>(lab: string, fn: () => Promise<T>): Promise<T> {
  const path = join(ensureRunDir(), `${lab}.lock`);
  return withLock(
    path,
    {
      busy: (pid) => new LabctlError(`lab "${lab}" is being changed by another labctl (pid ${pid}); wait for it to finish`),
      contended: () => new LabctlError(`lab "${lab}" is being changed by another labctl (its lock ${path} keeps changing); try again`),
    },
    fn,
  );
}
