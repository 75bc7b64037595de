// How the CLI ends: one line on stderr, exit status 2 for bad usage or input,
// 1 for a VM or guest failure. No stack traces for anything a user can cause.

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export const EXIT_USAGE = 2;
export const EXIT_FAILURE = 1;
