// Integration tests need /dev/kvm; where it is absent they are skipped, and
// the reason is printed once.
import { accessSync, constants } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from '../../bench/lib/artifacts.ts';

function kvmUsable(): boolean {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

export const hasKvm = kvmUsable();
if (!hasKvm) console.warn('tsvmm tests: /dev/kvm is absent or not read/writable: skipping the tests that run guests');

export const TSVMM = join(ROOT, 'src', 'cli', 'tsvmm.mjs');

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the tsvmm command as a user would. */
export function tsvmm(args: string[], options: { input?: string; timeoutMs?: number } = {}): CliResult {
  const result = spawnSync(process.execPath, [TSVMM, ...args], {
    encoding: 'utf8',
    input: options.input ?? '',
    timeout: options.timeoutMs ?? 60_000,
    env: { ...process.env, NODE_NO_WARNINGS: '1' },
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}
