// labctl's error model. Every error a user may see carries the exit code the command ends
// with, so the CLI's one action wrapper (cli/common.ts) prints the message and exits with
// `exitCodeOf(error)` without knowing which module threw it.
//
//   0 ok · 1 the operation failed · 2 bad input (nothing was changed) · 130 interrupted

export const EXIT_FAILED = 1;
export const EXIT_BAD_INPUT = 2;
export const EXIT_INTERRUPTED = 130;

/** An error with the exit code it ends a command with (1 unless said otherwise). */
export class LabctlError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number = EXIT_FAILED, options?: { cause?: unknown }) {
    super(message, options);
    this.exitCode = exitCode;
    this.name = 'LabctlError';
  }
}

/** One problem of a file, with the field it is about ('' for the file as a whole). */
export interface InputIssue {
  path: string;
  message: string;
}

/**
 * Bad input, found before anything was changed: a wrong lab file or recipe, a bad option,
 * an unknown name, a command refused in the lab's current state. Exit 2. The one bad-input
 * class: a file's problems travel in `issues`, with the file in `file`.
 */
export class UsageError extends LabctlError {
  readonly file: string | undefined;
  readonly issues: InputIssue[];
  constructor(message: string, details: { file?: string; issues?: InputIssue[] } = {}) {
    super(message, EXIT_BAD_INPUT);
    this.name = 'UsageError';
    this.file = details.file;
    this.issues = details.issues ?? [];
  }

  /** A file's problems, one line each: `FILE: FIELD: REASON`. */
  static forFile(file: string, issues: InputIssue[]): UsageError {
    return new UsageError(issues.map((i) => `${file}: ${i.path ? `${i.path}: ` : ''}${i.message}`).join('\n'), { file, issues });
  }
}

/** A build or `up` stopped by SIGINT/SIGTERM after its clean-up ran. Exit 130. */
export class InterruptedError extends LabctlError {
  constructor(message: string) {
    super(message, EXIT_INTERRUPTED);
    this.name = 'InterruptedError';
  }
}

/** The exit code an error ends a command with: its own, or 1 for any other error. */
function _exitCodeOf(error: unknown): number {
  return error instanceof LabctlError ? error.exitCode : EXIT_FAILED;
}

/** The message of anything thrown. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
