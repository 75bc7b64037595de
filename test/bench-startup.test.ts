// What `tsvmm bench startup` measures: the bin as installed runs the bundles
// in dist/bundle (src/cli/dist.mjs) through V8's code cache
// (src/cli/code-cache.cjs), starts its vCPU thread from there, and reports its
// start-up marks; with a virtio device it prestarts the I/O thread as well. A
// code cache that does not fit is rejected and written again.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serialFloodImage } from '../bench/lib/artifacts.ts';
import { ensureCompiled } from '../bench/lib/compiled.ts';
import { BUNDLE } from '../src/cli/dist.mjs';
import { hasKvm, TSVMM } from './helpers/kvm.ts';

const scratch = mkdtempSync(join(tmpdir(), 'tsvmm-bench-startup-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** `tsvmm run` of a guest that writes 16 bytes and ends (status 1), with TSVMM_TIMING's marks on fd 3. */
function runTimed(flat: string, extra: string[] = []) {
  const r = spawnSync(process.execPath, [TSVMM, 'run', '--flat', flat, '--mem', '64M', ...extra], {
    encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe', 'pipe'], env: { ...process.env, TSVMM_TIMING: '3' },
  });
  const marks = (r.output[3] ?? '').split('\n').filter(Boolean).map((line) => line.split(' ')[1]);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, marks };
}

describe('dist/bundle', () => {
  beforeAll(async () => {
    await ensureCompiled(() => {});
  }, 120_000);

  it('holds one loader per entry beside its bundle, the thread entries beside threads.cjs', () => {
    const files = readdirSync(BUNDLE).filter((f) => !f.endsWith('.code-cache'));
    expect(files.sort()).toEqual([
      'main.bundle.cjs', 'main.cjs', 'threads.bundle.cjs', 'threads.cjs',
      'vcpu-thread-main.bundle.cjs', 'vcpu-thread-main.cjs', 'virtio-thread-main.bundle.cjs', 'virtio-thread-main.cjs',
    ]);
    // The other bundles share threads.cjs instead of holding a copy of it.
    for (const bundle of ['main', 'vcpu-thread-main', 'virtio-thread-main']) {
      const text = readFileSync(join(BUNDLE, `${bundle}.bundle.cjs`), 'utf8');
      expect(text, bundle).toContain('require("./threads.cjs")');
      expect(text, bundle).not.toContain('function prestartWorker(');
    }
  });

  describe.skipIf(!hasKvm)('tsvmm run from it', () => {
    it('runs the guest with its start-up marks in order, and writes code caches a broken one is replaced by', () => {
      const flat = serialFloodImage(scratch, { count: 16 });
      for (const file of readdirSync(BUNDLE)) if (file.endsWith('.code-cache')) rmSync(join(BUNDLE, file));
      const first = runTimed(flat);
      expect(first.stderr).toBe('');
      expect(first.status).toBe(1);
      expect(first.stdout).toBe('.'.repeat(16));
      expect(first.marks).toEqual(expect.arrayContaining(['bin', 'loaded-bundle', 'create-vm', 'run', 'worker-main', 'first-kvm-run']));
      expect(first.marks.indexOf('loaded-bundle')).toBeLessThan(first.marks.indexOf('first-kvm-run'));
      for (const bundle of ['main', 'threads', 'vcpu-thread-main']) expect(existsSync(join(BUNDLE, `${bundle}.bundle.cjs.code-cache`)), bundle).toBe(true);

      const cache = join(BUNDLE, 'main.bundle.cjs.code-cache');
      writeFileSync(cache, 'not a code cache');
      const second = runTimed(flat);
      expect(second.stderr).toBe('');
      expect(second.status).toBe(1);
      expect(second.stdout).toBe('.'.repeat(16));
      expect(statSync(cache).size).toBeGreaterThan(1000);
    });

    it('with a virtio device the bin prestarts the virtio I/O thread too, and the machine takes it with its ports', () => {
      const flat = serialFloodImage(scratch, { count: 16 });
      const r = runTimed(flat, ['--irqchip', '--device', 'virtio-rng']);
      expect(r.stderr).toBe('');
      expect(r.status).toBe(1);
      expect(r.stdout).toBe('.'.repeat(16));
      // A thread marks worker-waiting only when it was prestarted (threads.ts workerInit).
      expect(r.marks.filter((m) => m === 'worker-waiting')).toHaveLength(2);
      expect(runTimed(flat).marks.filter((m) => m === 'worker-waiting')).toHaveLength(1);
    });
  });
});
