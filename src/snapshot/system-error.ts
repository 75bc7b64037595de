// A host error as the few words a one-line message needs: "connection refused
// (ECONNREFUSED)" rather than Node's "connect ECONNREFUSED 127.0.0.1:4444"
// with a stack behind it.
import { getSystemErrorMap } from 'node:util';

export function systemErrorText(error: unknown): string {
  const { errno, code, message } = error as NodeJS.ErrnoException;
  const known = errno === undefined ? undefined : getSystemErrorMap().get(errno);
  if (known) return `${known[1]} (${known[0]})`;
  return code ?? message;
}
