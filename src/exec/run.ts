import { spawn } from 'node:child_process';

// The one runner every host command goes through. It takes an argument array
// (never a shell string), records what ran, and on failure throws an error that
// names the step, the command, its exit code and what it printed.

export interface RunOptions {
  /** Short name of the step this command belongs to, shown in errors. */
  step?: string;
  /** Text fed to the command's standard input. */
  input?: string;
  /** Do not throw on a non-zero exit; the caller inspects the result. */
  allowFailure?: boolean;
  env?: Record<string, string>;
  timeoutMs?: number;
  cwd?: string;
  /** The command as errors and traces show it, where the real argv is unreadable (a script, a whole ruleset). */
  display?: string[];
  /** Called with each line the command prints, as it prints it (for progress and --verbose). The output is still collected in the result. */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
}

export interface RunResult {
  command: string[];
  exitCode: number;
  stdout: string;
  stderr: string;
}

export class CommandError extends Error {
  constructor(
    readonly step: string | undefined,
    readonly command: string[],
    readonly exitCode: number | undefined,
    readonly stderr: string,
    readonly stdout: string,
  ) {
    const where = step ? `${step}: ` : '';
    const code = exitCode === undefined ? 'could not run' : `exited ${exitCode}`;
    const said = (stderr || stdout).trim().split('\n').slice(-8).join('\n');
    super(`${where}\`${command.join(' ')}\` ${code}${said ? `:\n${said}` : ''}`);
    this.name = 'CommandError';
  }
}

/** Commands that ran in this process, oldest first (for --verbose and debugging). */
export const commandLog: string[][] = [];

export async function run(command: string[], options: RunOptions = {}): Promise<RunResult> {
  const [file, ...args] = command;
  if (!file) throw new Error('run: empty command');
  commandLog.push(command);
  // node:child_process directly, not execa: this runner is on the path of every command,
  // and loading execa costs ~20 ms at every start even from V8's code cache (measured
  // 2026-11-29), a tenth of `labctl net up`. Arguments are passed as an array; no shell.
  return new Promise<RunResult>((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const child = spawn(file, args, {
      stdio: [options.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      ...(options.env ? { env: options.env } : {}),
      ...(options.cwd ? { cwd: options.cwd } : {}),
    });
    const timer = options.timeoutMs
      ? setTimeout(() => {
          timedOut = true;
          child.kill('SIGTERM');
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
    child.stdout!.setEncoding('utf8').on('data', (d: string) => ((stdout += d), tap('stdout', d)));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => ((stderr += d), tap('stderr', d)));
    if (options.input !== undefined) {
      child.stdin!.on('error', () => {}); // the command may exit before reading it all
      child.stdin!.end(options.input);
    }
    const fail = (exitCode: number | undefined, why: string) => {
      if (options.allowFailure) resolve({ command, exitCode: exitCode ?? -1, stdout, stderr: stderr || why });
      else reject(new CommandError(options.step, options.display ?? command, exitCode, stderr || why, stdout));
    };
    child.on('error', (e) => {
      if (timer) clearTimeout(timer);
      fail(undefined, e.message);
    });
    const started = performance.now();
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      flush();
      if (process.env.LABCTL_TRACE) process.stderr.write(`labctl: ${(performance.now() - started).toFixed(0)} ms ${(options.display ?? command).join(' ')}\n`);
      if (code === 0) return resolve({ command, exitCode: 0, stdout, stderr });
      fail(code ?? undefined, timedOut ? `timed out after ${options.timeoutMs} ms` : signal ? `killed by ${signal}` : '');
    });
  });
}

/**
 * A command run inside a named network namespace with `ip netns exec`, which also gives it
 * the namespace's /etc/netns files and a fresh /sys. Costs a mount namespace per command;
 * for plain network work, apply/netns.ts's nsenter-based inNetns is cheaper.
 */
export function ipNetnsExec(netns: string, command: string[]): string[] {
  return ['ip', 'netns', 'exec', netns, ...command];
}
