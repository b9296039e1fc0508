// What every command shares: the one action wrapper (errors printed as one clear message,
// the exit code the error carries: util/errors.ts), JSON output, examples in --help, root.
import type { Command } from 'commander';
import { EXIT_FAILED, EXIT_INTERRUPTED, LabctlError, messageOf, UsageError } from '../util/errors.js';

/**
 * Wraps a command action: a returned number is the exit code; a thrown error is printed as
 * `labctl: MESSAGE` and ends the command with the error's exit code (util/errors.ts).
 * `otherErrors`: the exit code of an error that carries none (1, unless the command gives
 * 1 a meaning of its own, as `check` does for "a NAT differs").
 */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<unknown>, otherErrors: number = EXIT_FAILED): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      const code = await fn(...args);
      if (typeof code === 'number') process.exitCode = code;
    } catch (e) {
      process.stderr.write(`labctl: ${messageOf(e)}\n`);
      if (process.env.LABCTL_DEBUG && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
      process.exitCode = e instanceof LabctlError ? e.exitCode : otherErrors;
      // An interrupted command has cleaned up; nothing else may run (a second prompt, a listr2 redraw).
      if (process.exitCode === EXIT_INTERRUPTED) process.exit(EXIT_INTERRUPTED);
    }
  };
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Adds an "Example:" block to a command's --help. */
export function example(cmd: Command, ...lines: string[]): Command {
  return cmd.addHelpText('after', `\nExample${lines.length > 1 ? 's' : ''}:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`);
}

/** Refuses to go on without root; `why` says what of the command needs it. */
export function requireRoot(what: string, why: string): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new UsageError(`${what} needs root (${why}); run it with sudo`);
  }
}
