// Shell quoting for display only: errors and traces show a command so that it can be read
// (and pasted into a shell) the way it ran. Commands are never run through a shell string.

/** Words made only of these need no quotes. */
const PLAIN = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** One argument as a POSIX shell would need it: bare when plain, else in single quotes ('' for empty; ' as '\''). */
export function shellQuote(arg: string): string {
  if (PLAIN.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** A whole argv, quoted word by word and joined with spaces. */
export function formatCommand(argv: readonly string[]): string {
  return argv.map(shellQuote).join(' ');
}
