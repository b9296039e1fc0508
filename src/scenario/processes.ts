// The processes a scenario starts: its steps' commands, background commands, receivers and
// senders, captures. Each is tracked from its start, so that the end of the run (or Ctrl-C)
// stops exactly these and everything they started, and nothing of labctl's own (the direct
// backend's machines are labctl's children too while `up` runs in this process).
//
// Not exec/run.ts's run(): a scenario needs commands that run on while other steps do
// (background, receivers, captures), and it must be able to stop any of them at any moment.
// They start as run() starts its commands: an argument array (never a shell), behind
// setpriv's parent-death signal (spawnArgv), recorded in commandLog. Each gets its own
// process group (detached), so that a Ctrl-C at the terminal reaches labctl alone, which
// then stops them in order: SIGTERM to the whole tree, SIGKILL to what is left 2 s later.
import { spawn } from 'node:child_process';
import { commandLog, spawnArgv } from '../exec/run.js';
import { descendants, type ProcessId, processId, signalProcess, sleep, waitGone } from '../util/process.js';

/** Output kept per stream: the last this many characters (a chatty background command must not fill memory). */
export const OUTPUT_LIMIT = 256 * 1024;
const KILL_GRACE_MS = 2000;
/** How long a gentle process has to end after SIGINT before the whole tree gets SIGTERM. */
const GENTLE_STOP_MS = 5000;

export interface Ended {
  /** The exit status; undefined when a signal ended it or it never started. */
  exitCode?: number;
  signal?: string;
  /** It could not be started at all (no such program). */
  spawnError?: string;
  /** Stopped by us: its timeout, the end of the run, Ctrl-C. */
  stopped?: 'timeout' | 'end';
  /** It needed SIGKILL. */
  forced?: boolean;
}

const live = new Set<Proc>();

/** Every tracked process still running. */
export function liveProcesses(): Proc[] {
  return [...live];
}

/** Stops every tracked process (the end of a run, or Ctrl-C). */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((p) => p.stop()));
}

/** A started command. */
export class Proc {
  stdout = '';
  stderr = '';
  readonly ended: Promise<Ended>;
  readonly startedAt = performance.now();
  endedAt: number | undefined;
  private result: Ended | undefined;
  private stopping: Promise<void> | undefined;
  private readonly self: ProcessId | undefined;
  private readonly listeners = new Set<() => void>();
  private stopReason: Ended['stopped'];
  private forced = false;

  /** Stopped with SIGINT first, as Ctrl-C would (a capture then completes its file). */
  private readonly gentle: boolean;

  constructor(
    readonly command: string[],
    options: { input?: string; env?: Record<string, string>; gentle?: boolean } = {},
  ) {
    this.gentle = options.gentle ?? false;
    commandLog.push(command);
    const [file, ...args] = spawnArgv(command);
    const child = spawn(file!, args, {
      detached: true,
      stdio: [options.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      ...(options.env ? { env: options.env } : {}),
    });
    this.self = child.pid === undefined ? undefined : processId(child.pid);
    if (this.self) live.add(this);
    const keep = (stream: 'stdout' | 'stderr') => (d: string) => {
      const text = this[stream] + d;
      this[stream] = text.length > OUTPUT_LIMIT ? text.slice(-OUTPUT_LIMIT) : text;
      for (const l of this.listeners) l();
    };
    child.stdout!.setEncoding('utf8').on('data', keep('stdout'));
    child.stderr!.setEncoding('utf8').on('data', keep('stderr'));
    if (options.input !== undefined) {
      child.stdin!.on('error', () => {}); // it may exit before reading it all
      child.stdin!.end(options.input);
    }
    this.ended = new Promise<Ended>((resolve) => {
      const finish = (e: Ended) => {
        if (this.result) return;
        this.endedAt = performance.now();
        this.result = { ...e, ...(this.stopReason ? { stopped: this.stopReason } : {}), ...(this.forced ? { forced: true } : {}) };
        live.delete(this);
        for (const l of this.listeners) l();
        resolve(this.result);
      };
      child.on('error', (e) => finish({ spawnError: e.message }));
      child.on('close', (code, signal) => {
        // setpriv's own complaint: the command could not be executed.
        const notRun = (code === 126 || code === 127) && /^setpriv: failed to execute (.*)$/m.exec(this.stderr);
        if (notRun) finish({ spawnError: notRun[1]! });
        else finish({ ...(code !== null ? { exitCode: code } : {}), ...(signal ? { signal } : {}) });
      });
    });
  }

  get done(): Ended | undefined {
    return this.result;
  }

  /** Calls fn whenever it prints or ends, until the returned function is called. */
  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /**
   * Resolves true once test() holds (checked whenever it prints), false when it ended or
   * timeoutMs passed first, or `signal` was aborted.
   */
  waitUntil(test: () => boolean, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      let off = () => {};
      const settle = (v: boolean) => {
        clearTimeout(timer);
        off();
        signal?.removeEventListener('abort', onAbort);
        resolve(v);
      };
      const onAbort = () => settle(false);
      const check = () => {
        if (test()) settle(true);
        else if (this.result) settle(false);
      };
      off = this.onChange(check);
      timer = setTimeout(() => settle(test()), timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      if (signal?.aborted) return settle(false);
      check();
    });
  }

  /** SIGINT to it alone, as Ctrl-C would (for a command that finishes its work on it: a capture completes its file). */
  interrupt(): void {
    if (this.self && !this.result) signalProcess(this.self, 'SIGINT');
  }

  /** Stops it and what it started: SIGTERM, then SIGKILL to what is left after the grace. */
  stop(reason: 'timeout' | 'end' = 'end', graceMs = KILL_GRACE_MS): Promise<void> {
    if (this.result || !this.self) return this.ended.then(() => undefined);
    this.stopReason ??= reason;
    this.stopping ??= (async () => {
      if (this.gentle) {
        this.interrupt();
        await Promise.race([this.ended, sleep(GENTLE_STOP_MS)]);
        if (this.result) return;
      }
      // The tree is read first: once it is dead, its orphans could not be told from others.
      const family = [this.self!, ...descendants([this.self!.pid])];
      for (const p of family.reverse()) signalProcess(p, 'SIGTERM');
      const left = await waitGone(family, graceMs, 20);
      if (left.length) {
        if (left.some((p) => p.pid === this.self!.pid)) this.forced = true;
        for (const p of [...left, ...descendants(left.map((p) => p.pid))]) signalProcess(p, 'SIGKILL');
      }
      // Its pipes close once every process that holds them is gone.
      await Promise.race([this.ended, sleep(graceMs)]);
    })();
    return this.stopping;
  }
}

/** Runs a command to its end (or its timeout: then it is stopped); what it printed and how it ended. */
export async function runCommand(
  command: string[],
  options: { input?: string; timeoutMs: number; signal?: AbortSignal },
): Promise<{ proc: Proc; ended: Ended; durationMs: number }> {
  const proc = new Proc(command, options.input !== undefined ? { input: options.input } : {});
  const timer = setTimeout(() => void proc.stop('timeout'), options.timeoutMs);
  const onAbort = () => void proc.stop('end');
  options.signal?.addEventListener('abort', onAbort, { once: true });
  if (options.signal?.aborted) onAbort();
  try {
    const ended = await proc.ended;
    return { proc, ended, durationMs: (proc.endedAt ?? performance.now()) - proc.startedAt };
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
  }
}

/** How a command ended, in words: "exited 1", "timed out after 5 s (killed with SIGTERM)", "could not run: ...". */
export function describeEnding(e: Ended, timeoutMs?: number): string {
  if (e.spawnError !== undefined) return `could not run: ${e.spawnError}`;
  const how = e.forced ? 'killed with SIGKILL after SIGTERM' : e.signal ? `killed with ${e.signal}` : `exited ${e.exitCode}`;
  if (e.stopped === 'timeout') return `timed out after ${formatSeconds(timeoutMs ?? 0)} (${how})`;
  if (e.stopped === 'end') return `stopped (${how})`;
  return e.signal ? `killed by ${e.signal}` : `exited ${e.exitCode}`;
}

export function formatSeconds(ms: number): string {
  const s = ms / 1000;
  return `${Number.isInteger(s) ? s : s.toFixed(s < 10 ? 2 : 1).replace(/0+$/, '')} s`;
}
