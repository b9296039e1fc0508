// Error kinds of the image capability. The CLI maps them to exit codes:
// UsageError (bad input, caught before anything is created) -> 2,
// InterruptedError (SIGINT/SIGTERM during a build) -> 130, anything else -> 1.

/** Bad input: an unknown image, an invalid recipe, a missing keyring, a bad option. */
export class UsageError extends Error {
  readonly exitCode = 2;
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** The operation was refused because the image is in use (by machines or processes). */
export class ImageInUseError extends Error {
  readonly exitCode = 1;
  constructor(
    readonly image: string,
    readonly users: string[],
    action: string,
  ) {
    super(`cannot ${action} image ${image}: in use by ${users.join(', ')}`);
    this.name = 'ImageInUseError';
  }
}

/** A build was interrupted by a signal; cleanup has run. */
export class InterruptedError extends Error {
  readonly exitCode = 130;
  constructor(signal: string) {
    super(`interrupted by ${signal}; the partial build was cleaned up`);
    this.name = 'InterruptedError';
  }
}

export function exitCodeOf(error: unknown): number {
  if (error && typeof error === 'object' && 'exitCode' in error && typeof error.exitCode === 'number') {
    if (error instanceof UsageError || error instanceof ImageInUseError || error instanceof InterruptedError) return error.exitCode;
  }
  return 1;
}
