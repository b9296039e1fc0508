// Small process helpers shared by every concern that waits for or checks on processes.
import { existsSync, readFileSync, readlinkSync } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { listDir } from './fs.js';

/**
 * True while `pid` runs. A zombie counts as gone: it holds nothing, and here (PID 1 is not
 * systemd and reaps late) a machine's exited nspawn can stay a zombie for seconds.
 */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const state = statFields(pid)?.[0];
  return state !== undefined && state !== 'Z';
}

export const sleep = (ms: number): Promise<void> => delay(Math.max(0, ms));

/** The fields of /proc/PID/stat after the command name (whose parentheses may hold anything), or undefined when it is gone. */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

/** One process for good: its pid and its start time (a pid alone may be reused once it ends). */
export interface ProcessId {
  pid: number;
  /** clock ticks after boot (/proc/PID/stat field 22) */
  start: number;
}

/** The process with this pid now, or undefined when there is none. */
export function processId(pid: number): ProcessId | undefined {
  const start = statFields(pid)?.[19];
  return start === undefined ? undefined : { pid, start: Number(start) };
}

/** True while that very process runs (not a zombie, not another one that got its pid). */
export function stillRunning(p: ProcessId): boolean {
  return alive(p.pid) && processId(p.pid)?.start === p.start;
}

/** Sends signal to the process if it is still that process; false when it is gone. */
export function signalProcess(p: ProcessId, signal: NodeJS.Signals): boolean {
  if (!stillRunning(p)) return false;
  try {
    process.kill(p.pid, signal);
    return true;
  } catch {
    return false;
  }
}

/** This process and its ancestors up to PID 1: what killing a process tree must never take along. */
export function selfAndAncestors(): Set<number> {
  const out = new Set<number>();
  for (let pid = process.pid; pid > 0 && !out.has(pid); ) {
    out.add(pid);
    pid = Number(statFields(pid)?.[1] ?? 0);
  }
  return out;
}

/**
 * Every process descended from the roots (children, their children, ...), not the roots
 * themselves, from one reading of /proc. A process whose parent has died is PID 1's child
 * (or a subreaper's) and no longer anyone's descendant: call this while the tree is whole.
 */
export function descendants(roots: number[]): ProcessId[] {
  const children = new Map<number, ProcessId[]>();
  for (const pid of pids()) {
    const f = statFields(pid);
    if (!f) continue;
    const ppid = Number(f[1]);
    const list = children.get(ppid) ?? [];
    list.push({ pid, start: Number(f[19]) });
    children.set(ppid, list);
  }
  const out: ProcessId[] = [];
  const seen = new Set(roots);
  const queue = [...roots];
  while (queue.length) {
    for (const child of children.get(queue.shift()!) ?? []) {
      if (seen.has(child.pid)) continue;
      seen.add(child.pid);
      out.push(child);
      queue.push(child.pid);
    }
  }
  return out;
}

/** Waits until none of the processes runs, or ms pass; returns those still running. */
export async function waitGone(procs: ProcessId[], ms: number, pollMs = 50): Promise<ProcessId[]> {
  const deadline = Date.now() + ms;
  let left = procs.filter(stillRunning);
  while (left.length && Date.now() < deadline) {
    await sleep(Math.min(pollMs, deadline - Date.now()));
    left = left.filter(stillRunning);
  }
  return left;
}

/** Every process id on the host, from /proc (empty if /proc cannot be read). */
export function pids(): number[] {
  return listDir('/proc')
    .filter((e) => /^\d+$/.test(e))
    .map(Number);
}

/** What a process's open file descriptors point at (empty when it is gone or not readable). */
export function fdTargets(pid: number): string[] {
  const out: string[] = [];
  for (const fd of listDir(`/proc/${pid}/fd`)) {
    try {
      out.push(readlinkSync(`/proc/${pid}/fd/${fd}`));
    } catch {
      /* closed meanwhile */
    }
  }
  return out;
}

/** Finds a program in $PATH (plus the usual system directories) the way a shell would; undefined when absent. */
export function whichExecutable(name: string): string | undefined {
  if (isAbsolute(name)) return existsSync(name) ? name : undefined;
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'].filter(Boolean);
  for (const d of dirs) {
    const p = join(d, name);
    if (existsSync(p)) return p;
  }
  return undefined;
}
