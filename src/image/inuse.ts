// Which machines use an image. Three sources, all tolerant:
//  1. a hook the machine code registers (setImageInUseHook),
//  2. the machine records under /run/labctl/*.json ($LABCTL_STATE_DIR or $LABCTL_RUN_DIR):
//     any `machines[].image` (array or name -> object map) or a top-level `image`; a
//     record with `directory` (the rootfs it boots) or `dataDir` counts only for that
//     data dir's image,
//  3. live processes whose root, arguments or open files are inside the mounted image
//     (e.g. a systemd-nspawn started by hand), so nothing is unmounted under them.
import { readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { imagePaths, resolveDataDir } from './paths.js';
import { processesUsing } from './procs.js';
import { mountAt } from './mount.js';
import { listDir } from '../util/fs.js';

export type ImageInUseHook = (image: string, dataDir: string) => string[] | Promise<string[]>;

let registeredHook: ImageInUseHook | undefined;

/** Registers (or with no argument removes) a callback naming the machines that use an image. */
export function setImageInUseHook(hook?: ImageInUseHook): void {
  registeredHook = hook;
}

export const DEFAULT_RUN_DIR = '/run/labctl';

/** Where labs record their machines: $LABCTL_STATE_DIR, $LABCTL_RUN_DIR or /run/labctl. */
export function runStateDir(): string {
  return process.env.LABCTL_STATE_DIR || process.env.LABCTL_RUN_DIR || DEFAULT_RUN_DIR;
}

export interface InUseOptions {
  dataDir?: string;
  /** where machine records are (default $LABCTL_RUN_DIR or /run/labctl) */
  runDir?: string;
  hook?: ImageInUseHook;
  /** also look for live processes inside the mounted image (default true) */
  processes?: boolean;
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function str(v: Json | undefined): string | undefined {
  return typeof v === 'string' && v ? v : undefined;
}

/** Machines recorded in one state file as [machine, image, dataDir?]. Exported for tests. */
export interface RecordedMachine {
  machine: string;
  image: string;
  lab?: string;
  dataDir?: string;
  /** the rootfs directory the machine boots from (tells which data dir's image) */
  directory?: string;
}

export function machinesInRecord(data: Json, fallbackName: string): RecordedMachine[] {
  const out: RecordedMachine[] = [];
  if (!data || typeof data !== 'object' || Array.isArray(data)) return out;
  const lab = str(data.lab) ?? str(data.name) ?? fallbackName;
  const topDataDir = str(data.dataDir) ?? str(data.data_dir);
  const add = (entry: Json | undefined, key?: string) => {
    if (!entry || typeof entry !== 'object' || Array.isArray(entry)) return;
    const image = str(entry.image);
    if (!image) return;
    const machine = str(entry.name) ?? str(entry.machine) ?? str(entry.id) ?? key ?? '?';
    const dataDir = str(entry.dataDir) ?? str(entry.data_dir) ?? topDataDir;
    const directory = str(entry.directory);
    out.push({ machine, image, lab, ...(dataDir ? { dataDir } : {}), ...(directory ? { directory } : {}) });
  };
  const machines = data.machines;
  if (Array.isArray(machines)) machines.forEach((m) => add(m));
  else if (machines && typeof machines === 'object') for (const [k, v] of Object.entries(machines)) add(v, k);
  if (str(data.image)) add(data, str(data.name) ?? str(data.machine) ?? fallbackName);
  return out;
}

/** Names of what uses the image, e.g. ["machine web1 (lab demo)", "process 812 systemd-nspawn"]; empty when unused. */
export async function imageInUseBy(name: string, options: InUseOptions = {}): Promise<string[]> {
  const dataDir = resolveDataDir(options.dataDir);
  const users = new Set<string>();
  for (const hook of [options.hook, registeredHook]) {
    if (!hook) continue;
    for (const u of await hook(name, dataDir)) users.add(u.startsWith('machine ') ? u : `machine ${u}`);
  }
  const runDir = options.runDir ?? runStateDir();
  // No run directory: no machines recorded.
  for (const f of listDir(runDir)
    .filter((f) => f.endsWith('.json'))
    .sort()) {
    let data: Json;
    try {
      data = JSON.parse(readFileSync(join(runDir, f), 'utf8')) as Json;
    } catch {
      continue;
    }
    for (const m of machinesInRecord(data, basename(f, '.json'))) {
      if (m.image !== name) continue;
      // A record that says where its image lives must be this data dir's image.
      if (m.dataDir && resolve(m.dataDir) !== dataDir) continue;
      if (m.directory) {
        const mountDir = imagePaths(dataDir, name).mountDir;
        const dir = resolve(m.directory);
        if (dir !== mountDir && !dir.startsWith(`${mountDir}/`)) continue;
      }
      users.add(`machine ${m.machine}${m.lab && m.lab !== m.machine ? ` (lab ${m.lab})` : ''}`);
    }
  }
  if (options.processes !== false) {
    const paths = imagePaths(dataDir, name);
    if (mountAt(paths.mountDir)) {
      for (const p of processesUsing([paths.mountDir])) users.add(`process ${p.pid} ${p.comm}`);
    }
  }
  return [...users];
}
