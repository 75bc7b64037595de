// bench/lib/process.ts: how the benchmarks run a VMM as a child process.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runProcess } from '../bench/lib/process.ts';

describe('runProcess', () => {
  let dir = '';
  afterEach(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

  it('counts what the child wrote to its stdout file', async () => {
    dir = mkdtempSync(join(tmpdir(), 'tsvmm-bench-process-'));
    const run = await runProcess('sh', ['-c', 'printf 12345'], { stdoutFile: join(dir, 'out') });
    expect(run.status).toBe(0);
    expect(run.stdoutBytes).toBe(5);
  });

  it('rejects, instead of never settling, when the stdout file is gone by the time the child exits', async () => {
    dir = mkdtempSync(join(tmpdir(), 'tsvmm-bench-process-'));
    const out = join(dir, 'out');
    // The child removes its own stdout file: the size read at exit fails.
    const run = runProcess('sh', ['-c', `rm -f '${out}'`], { stdoutFile: out });
    const settled = await Promise.race([
      run.then(() => 'resolved', (e: unknown) => (e instanceof Error ? e.message : String(e))),
      new Promise<string>((resolve) => setTimeout(() => resolve('still pending after 10 s'), 10_000)),
    ]);
    expect(settled).toMatch(/ENOENT/);
  }, 20_000);
});
