// The one runner every host command goes through. It takes an argument array
// (never a shell string), records what ran, and on failure throws an error that
// names the step, the command, its exit code and what it printed.
import { execa, type Options } from 'execa';

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
  const execaOptions: Options = {
    reject: false,
    stripFinalNewline: false,
    ...(options.input !== undefined ? { input: options.input } : { stdin: 'ignore' }),
    ...(options.env ? { env: options.env } : {}),
    ...(options.timeoutMs ? { timeout: options.timeoutMs } : {}),
    ...(options.cwd ? { cwd: options.cwd } : {}),
    ...(options.onLine ? lineTaps(options.onLine) : {}),
  };
  const result = await execa(file, args, execaOptions);
  const stdout = String(result.stdout ?? '');
  const stderr = String(result.stderr ?? '');
  const exitCode = result.exitCode ?? (result.failed ? -1 : 0);
  if ((result.failed || exitCode !== 0) && !options.allowFailure) {
    throw new CommandError(options.step, command, result.exitCode, stderr || String(result.message ?? ''), stdout);
  }
  return { command, exitCode, stdout, stderr };
}

function lineTaps(onLine: NonNullable<RunOptions['onLine']>): Pick<Options, 'stdout' | 'stderr'> {
  const tap = (stream: 'stdout' | 'stderr') =>
    function* (line: unknown) {
      onLine(String(line), stream);
      yield line;
    };
  return { stdout: [tap('stdout'), 'pipe'], stderr: [tap('stderr'), 'pipe'] } as Pick<Options, 'stdout' | 'stderr'>;
}

/** Runs a command inside a named network namespace (from the host, no machine needed). */
export function inNetns(netns: string, command: string[]): string[] {
  return ['ip', 'netns', 'exec', netns, ...command];
}
