// A Linux boot a test watches until its console shows what the test needs,
// then stops with SIGINT (or when the time is up): the early-boot checks need
// seconds of a boot, not the whole of it.
import { spawn } from 'node:child_process';
import { TSVMM } from './kvm.ts';

export interface BootOutput { stdout: string; stderr: string; status: number | null }

/** Boots until `until` matches the console output, then stops tsvmm with SIGINT. */
export function bootUntil(args: string[], until: RegExp, timeoutMs: number): Promise<BootOutput> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [TSVMM, 'run', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let stopping = false;
    const stop = () => {
      if (!stopping) child.kill('SIGINT');
      stopping = true;
    };
    const timer = setTimeout(stop, timeoutMs);
    child.stdout.on('data', (d) => {
      stdout += d;
      if (until.test(stdout)) stop();
    });
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (status) => {
      clearTimeout(timer);
      resolve({ stdout, stderr, status });
    });
  });
}

// The kernel prints its e820 map, then switches its early console on.
export const E820_DONE = /printk: bootconsole \[earlyser0\] enabled/;
