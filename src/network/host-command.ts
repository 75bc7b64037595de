// The host programs a network is built with (iproute2's ip, nftables' nft,
// dnsmasq), run synchronously with bounded time: what they print on failure
// becomes one InputError line, and a missing program names its Debian package.
import { execFileSync } from 'node:child_process';
import { InputError } from '../errors.ts';

const PACKAGES: Record<string, string> = { ip: 'iproute2', nft: 'nftables', dnsmasq: 'dnsmasq-base', sysctl: 'procps' };
const TIMEOUT_MS = 30_000;

/** Runs `program args` (with `input` on its stdin) and returns its stdout; InputError with its first complaint when it fails. */
export function runHostCommand(program: string, args: readonly string[], input?: string): string {
  try {
    return execFileSync(program, args, { encoding: 'utf8', input: input ?? '', stdio: ['pipe', 'pipe', 'pipe'], timeout: TIMEOUT_MS });
  } catch (e) {
    const error = e as NodeJS.ErrnoException & { stderr?: string; signal?: string | null };
    if (error.code === 'ENOENT') {
      throw new InputError(`${program} is not installed${PACKAGES[program] ? ` (Debian package ${PACKAGES[program]})` : ''}`);
    }
    if (error.code === 'ETIMEDOUT' || error.signal === 'SIGTERM') throw new InputError(`${program} ${args.join(' ')}: no answer within ${TIMEOUT_MS / 1000} s`);
    const complaint = (error.stderr ?? '').trim().split('\n').find((line) => line.trim()) ?? error.message.split('\n')[0];
    throw new InputError(`${program} ${args.slice(0, 4).join(' ')}${args.length > 4 ? ' ...' : ''}: ${complaint}`);
  }
}
