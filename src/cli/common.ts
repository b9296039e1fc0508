// What every command shares: exit codes, error printing, JSON output.
import type { Command } from 'commander';

/** 0 ok; 1 the operation failed (or, for check, a NAT differs); 2 bad input (or `net down`/`net up` refused while the lab's machines run). */
export const EXIT_FAILED = 1;
export const EXIT_BAD_INPUT = 2;

export class UsageError extends Error {}

/** Other modules' errors by name, so that this one loads none of them. */
function isBadInput(e: unknown): boolean {
  const name = (e as Error)?.name;
  return name === 'LabError' || name === 'RecipeError' || name === 'MachinesRunningError' || e instanceof UsageError;
}

/** Wraps a command action: prints errors as one clear message and sets the exit code. */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void | number>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      const code = await fn(...args);
      if (typeof code === 'number') process.exitCode = code;
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      process.stderr.write(`labctl: ${message}\n`);
      if (process.env.LABCTL_DEBUG && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
      process.exitCode = isBadInput(e) ? EXIT_BAD_INPUT : EXIT_FAILED;
    }
  };
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/** Adds an "Example:" block to a command's --help. */
export function example(cmd: Command, ...lines: string[]): Command {
  return cmd.addHelpText('after', `\nExample${lines.length > 1 ? 's' : ''}:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`);
}

export function requireRoot(what: string): void {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    throw new UsageError(`${what} needs root (it creates network namespaces); run it with sudo`);
  }
}
