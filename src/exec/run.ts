import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { descendants, processId, signalProcess, waitGone, type ProcessId } from '../util/process.js';
import { formatCommand } from './quote.js';

// The one runner every host command goes through. It takes an argument array (never a
// shell string), records what ran, and on failure throws an error that names the step, the
// command, why it ended (its exit code, a timeout, a signal) and the end of what it printed.
//
// node:child_process, not execa (which check/agent-process.ts uses for the long-lived probe
// agents): this runner is on the path of every short command, and execa makes a start that
// runs one slower. Measured 2026-12-02 on this 2-core VM (other work running, load 4-6):
// the esbuild bundle run as users run it (node bin/labctl.js, V8 code cache), four trees
// built from the same commit differing only in the runner, 60 interleaved starts each,
// median wall time (a node loop of spawnSync, A B C D in turn). `labctl net status` with one
// namespace up (one `ip` command): 87.1 ms with this runner (86.5 ms with the one before
// it), 99.0 ms with execa imported statically, 102.7 ms with execa imported on the first
// command (then it is not in the code cache). `labctl net rules c1-nat`, which runs nothing:
// 87.0, 88.1, 95.3 (static execa is loaded at every start) and 88.0 ms. So execa costs a
// command-running start 12-16 ms. What it would bring here is small and done below: SIGTERM
// then SIGKILL on a timeout (for the command's whole tree, which execa's timeout does not
// reach), stdin from a string, output line by line; its `cleanup` (kill the command when
// labctl exits) is covered by the parent-death signal, which also covers a SIGKILL of labctl.
//
// A command labctl starts dies when labctl dies (SIGKILL, OOM, a crash, or an exit while it
// runs): it is started through `setpriv --pdeathsig KILL --` (util-linux), which sets the
// parent-death signal and then execs the command in the same process. Linux sends that
// signal when the thread that forked the command ends; Node forks from its main thread,
// whose end is the process's end (test/unit/exec-run.test.ts kills a runner to see it).
// Only the command itself has it (a fork clears it): the children it started are orphaned
// instead, which is why the image build also stops the leftovers of a killed build by what
// they use (image/procs.ts). It costs an exec, ~1.2 ms a command: median 2.0 ms for `true`
// against 3.2 ms behind setpriv (300 each, alternating, node:child_process; 2.8 against
// 4.2 ms in a second run). Long-lived processes do not go through run(): the direct
// backend's systemd-nspawn, which must outlive labctl (spawned detached in
// machine/direct.ts), and the check agents (check/agent-process.ts).

export interface RunOptions {
  /** Short name of the step this command belongs to, shown in errors. */
  step?: string;
  /** Text fed to the command's standard input. */
  input?: string;
  /** Do not throw when the command fails; the caller inspects the result. */
  allowFailure?: boolean;
  /** The command's whole environment (replaces labctl's, does not add to it). */
  env?: Record<string, string>;
  /** After this long the command and what it started get SIGTERM, and SIGKILL killGraceMs later. */
  timeoutMs?: number;
  /** How long a timed-out command has between SIGTERM and SIGKILL (default 2000 ms). */
  killGraceMs?: number;
  cwd?: string;
  /** The command as errors and traces show it, where the real argv is unreadable (a script, a whole ruleset). */
  display?: string[];
  /** Called with each line the command prints, as it prints it (for progress and --verbose). The output is still collected in the result. */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
}

export interface RunResult {
  command: string[];
  /** The exit status; -1 when there is none (killed by a signal, or it could not start). */
  exitCode: number;
  stdout: string;
  /**
   * What it printed on stderr. For a failure with an empty stderr (allowFailure), the reason
   * instead, as callers that show stderr have always had it.
   */
  stderr: string;
  /** It ran longer than timeoutMs and was killed for it. */
  timedOut: boolean;
  /** The signal that ended it: SIGTERM or SIGKILL after a timeout, or one from outside. */
  signal?: string;
  /** Why it failed, in words ("exited 2", "timed out after 5000 ms (killed with SIGTERM)"); absent on success. */
  reason?: string;
}

export const DEFAULT_KILL_GRACE_MS = 2000;

/**
 * A command that failed. Its message shows `shown` (run() gives the argv shell-quoted, or a
 * display as it is written); without it, the command's words joined as they are (a display,
 * as a caller that makes its own CommandError passes).
 */
export class CommandError extends Error {
  readonly timedOut: boolean;
  readonly signal: string | undefined;
  /** "exited 2", "timed out after 200 ms (killed with SIGTERM)", "killed by SIGKILL", "could not run: ..." */
  readonly reason: string;

  constructor(
    readonly step: string | undefined,
    readonly command: string[],
    readonly exitCode: number | undefined,
    readonly stderr: string,
    readonly stdout: string,
    how: { timedOut?: boolean; signal?: string; reason?: string; shown?: string } = {},
  ) {
    const reason = how.reason ?? (exitCode === undefined ? 'could not run' : `exited ${exitCode}`);
    const where = step ? `${step}: ` : '';
    // The reason, and then the last lines it printed: they say what it was doing.
    const said = (stderr || stdout).trim().split('\n').slice(-8).join('\n');
    super(`${where}\`${how.shown ?? command.join(' ')}\` ${reason}${said ? `:\n${said}` : ''}`);
    this.name = 'CommandError';
    this.timedOut = how.timedOut ?? false;
    this.signal = how.signal;
    this.reason = reason;
  }
}

/** Commands that ran in this process, oldest first (for --verbose and debugging). */
export const commandLog: string[][] = [];

let setprivPath: string | null | undefined;
/** setpriv, when the host has it (util-linux); looked up once. */
function setpriv(): string | undefined {
  setprivPath ??= ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p)) ?? null;
  return setprivPath ?? undefined;
}

/** The argv that really runs: the command behind setpriv's parent-death signal, where the host has setpriv. */
export function spawnArgv(command: string[]): string[] {
  const wrapper = setpriv();
  return wrapper ? [wrapper, '--pdeathsig', 'KILL', '--', ...command] : command;
}

/** setpriv's words when it could not exec the command ("setpriv: failed to execute X: No such file or directory"), exit 126 or 127. */
const SETPRIV_EXEC_FAILED = /^setpriv: failed to execute (.*)$/m;

export async function run(command: string[], options: RunOptions = {}): Promise<RunResult> {
  if (!command[0]) throw new Error('run: empty command');
  commandLog.push(command);
  // A display is a description, written to be read as it is; a real argv is shell-quoted.
  const shown = options.display ? options.display.join(' ') : formatCommand(command);
  const [file, ...args] = spawnArgv(command);
  const grace = options.killGraceMs ?? DEFAULT_KILL_GRACE_MS;
  const started = performance.now();
  const ended = await new Promise<Ending>((resolve) => {
    let stdout = '';
    let stderr = '';
    const child = spawn(file!, args, {
      stdio: [options.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      ...(options.env ? { env: options.env } : {}),
      ...(options.cwd ? { cwd: options.cwd } : {}),
    });
    // Set when the timeout fires: the stopping of the command's tree, and whether it took SIGKILL.
    let stopping: { forced: boolean; done: Promise<void> } | undefined;
    const timer = options.timeoutMs
      ? setTimeout(() => {
          const state = { forced: false, done: Promise.resolve() };
          state.done = stopTree(child, grace, () => (state.forced = true));
          stopping = state;
        }, options.timeoutMs)
      : undefined;
    // onLine: hand over each complete line as it arrives (progress, --verbose).
    const partial = { stdout: '', stderr: '' };
    const tap = (stream: 'stdout' | 'stderr', d: string) => {
      if (!options.onLine) return;
      const lines = (partial[stream] + d).split('\n');
      partial[stream] = lines.pop() ?? '';
      for (const line of lines) options.onLine(line, stream);
    };
    const flush = () => {
      for (const stream of ['stdout', 'stderr'] as const) {
        if (options.onLine && partial[stream]) options.onLine(partial[stream], stream);
        partial[stream] = '';
      }
    };
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      tap('stdout', d);
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      tap('stderr', d);
    });
    if (options.input !== undefined) {
      child.stdin!.on('error', () => {}); // the command may exit before reading it all
      child.stdin!.end(options.input);
    }
    child.on('error', (e) => {
      if (timer) clearTimeout(timer);
      resolve({ stdout, stderr, spawnError: e.message });
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      flush();
      const ending = { stdout, stderr, code, signal };
      // A timed-out tree is gone (or given up on) before the run ends.
      if (stopping) void stopping.done.then(() => resolve({ ...ending, timedOut: true, forced: stopping!.forced }));
      else resolve(ending);
    });
  });
  if (process.env.LABCTL_TRACE) process.stderr.write(`labctl: ${(performance.now() - started).toFixed(0)} ms ${shown}\n`);
  const outcome = describe(ended, options.timeoutMs, grace);
  const { stdout, stderr } = ended;
  if (!outcome.reason) return { command, exitCode: 0, stdout, stderr, timedOut: false };
  const how = { timedOut: outcome.timedOut, ...(outcome.signal ? { signal: outcome.signal } : {}), reason: outcome.reason };
  // setpriv's complaint is not the command's output: the reason says it.
  const ownStderr = outcome.notRun ? '' : stderr;
  if (options.allowFailure) return { command, exitCode: outcome.exitCode ?? -1, stdout, stderr: ownStderr || outcome.reason, ...how };
  throw new CommandError(options.step, options.display ?? command, outcome.exitCode, ownStderr, stdout, { ...how, shown });
}

/** How the command ended, as the child process told it. */
interface Ending {
  stdout: string;
  stderr: string;
  code?: number | null;
  signal?: NodeJS.Signals | null;
  /** it could not be started (spawn failed) */
  spawnError?: string;
  /** the timeout stopped it */
  timedOut?: boolean;
  /** ... and it needed SIGKILL */
  forced?: boolean;
}

/**
 * Stops a timed-out command and everything it started: SIGTERM to all, SIGKILL to what is
 * left graceMs later. The tree is read first: once the command is dead, its orphaned children
 * could no longer be told from any other process (and one that keeps the output pipe open
 * would keep the run from ending).
 */
async function stopTree(child: ChildProcess, graceMs: number, onForce: () => void): Promise<void> {
  const self = child.pid === undefined ? undefined : processId(child.pid);
  if (!self) return;
  const family = [self, ...descendants([self.pid])];
  for (const p of family) signalProcess(p, 'SIGTERM');
  const left = await waitGone(family, graceMs, 20);
  if (!left.length) return;
  if (left.some((p) => p.pid === self.pid)) onForce();
  // What the survivors started meanwhile goes with them.
  const doomed: ProcessId[] = [...left, ...descendants(left.map((p) => p.pid))];
  for (const p of doomed) signalProcess(p, 'SIGKILL');
  // SIGKILL cannot be ignored, but a process in the kernel (D state) dies when it comes back out.
  await waitGone(doomed, graceMs);
}

interface Outcome {
  exitCode?: number;
  timedOut: boolean;
  signal?: string;
  /** undefined: it succeeded */
  reason?: string;
  /** it never started (no such executable, not executable) */
  notRun?: boolean;
}

function describe(ended: Ending, timeoutMs: number | undefined, grace: number): Outcome {
  if (ended.spawnError !== undefined) return { timedOut: false, notRun: true, reason: `could not run: ${ended.spawnError}` };
  const signal = ended.signal ?? undefined;
  if (ended.timedOut) {
    const why = `timed out after ${timeoutMs} ms`;
    if (ended.forced) return { timedOut: true, signal: signal ?? 'SIGKILL', reason: `${why} (killed with SIGKILL, ${grace} ms after SIGTERM)` };
    if (signal) return { timedOut: true, signal, reason: `${why} (killed with ${signal})` };
    // It caught the SIGTERM and exited by itself.
    return { exitCode: ended.code ?? -1, timedOut: true, reason: `${why} (exited ${ended.code} after SIGTERM)` };
  }
  if (signal) return { timedOut: false, signal, reason: `killed by ${signal}` };
  if (ended.code === 0) return { exitCode: 0, timedOut: false };
  const code = ended.code ?? -1;
  const notRun = (code === 127 || code === 126) && SETPRIV_EXEC_FAILED.exec(ended.stderr);
  if (notRun) return { timedOut: false, notRun: true, reason: `could not run: ${notRun[1]}` };
  return { exitCode: code, timedOut: false, reason: `exited ${code}` };
}

/**
 * A command run inside a named network namespace with `ip netns exec`, which also gives it
 * the namespace's /etc/netns files and a fresh /sys. Costs a mount namespace per command;
 * for plain network work, apply/netns.ts's nsenter-based inNetns is cheaper.
 */
export function ipNetnsExec(netns: string, command: string[]): string[] {
  return ['ip', 'netns', 'exec', netns, ...command];
}

export { formatCommand, shellQuote } from './quote.js';
