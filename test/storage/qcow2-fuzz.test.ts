// A seeded random fuzz target for the qcow2 reader and writer (issue 10).
// The cases (helpers/qcow2-fuzz-cases.ts) run in a worker thread, watched:
// one that stops making progress is a hang, reported with its seed.
//
//   TSVMM_FUZZ_CASES=N    how many cases (default 2000: about 30 s here)
//   TSVMM_FUZZ_SEED=S     the first case's seed (default 1); "random" for a new one
//
// A failure names the seed of its case: TSVMM_FUZZ_SEED=<seed> TSVMM_FUZZ_CASES=1
// replays it alone.
import { describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { workerUrl } from '../../src/machine/threads.ts';
import type { FuzzRun } from './helpers/qcow2-fuzz-cases.ts';
import { hasQemu } from './helpers/images.ts';

const CASES = Number(process.env.TSVMM_FUZZ_CASES ?? 2000);
const SEED_SETTING = process.env.TSVMM_FUZZ_SEED ?? '1';
const FIRST_SEED = SEED_SETTING === 'random' ? Math.floor(Math.random() * 2 ** 31) : Number(SEED_SETTING);
/** No case takes this long: one that does is taken for a hang. */
const STALL_MS = 30_000;

type Outcome = { kind: 'done' } | { kind: 'failed'; seed: number; caseKind: string; message: string } | { kind: 'hung'; seed: number };

function runFuzz(run: Omit<FuzzRun, 'progress'>): Promise<Outcome> {
  const progress = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(workerUrl(import.meta.url, 'helpers/qcow2-fuzz-cases'), {
    workerData: { ...run, progress: progress.buffer } satisfies FuzzRun,
  });
  return new Promise<Outcome>((resolve, reject) => {
    let lastSeed = -1;
    let lastChange = Date.now();
    const watchdog = setInterval(() => {
      const seed = Atomics.load(progress, 0);
      if (seed !== lastSeed) {
        lastSeed = seed;
        lastChange = Date.now();
      } else if (Date.now() - lastChange > STALL_MS) {
        clearInterval(watchdog);
        void worker.terminate();
        resolve({ kind: 'hung', seed });
      }
    }, 500);
    worker.on('message', (message: Outcome) => {
      clearInterval(watchdog);
      void worker.terminate();
      resolve(message);
    });
    worker.on('error', (e) => {
      clearInterval(watchdog);
      reject(e);
    });
  });
}

describe('qcow2 fuzz', () => {
  it(`${CASES} seeded cases from seed ${FIRST_SEED}: shadow-buffer I/O, and corrupt metadata that only ever yields tsvmm's own errors`, async () => {
    const outcome = await runFuzz({ firstSeed: FIRST_SEED, cases: CASES, qemuCheckEvery: hasQemu ? 200 : 0 });
    const replay = (seed: number) => `replay: TSVMM_FUZZ_SEED=${seed} TSVMM_FUZZ_CASES=1 npx vitest run test/storage/qcow2-fuzz.test.ts`;
    if (outcome.kind === 'failed') expect.fail(`seed ${outcome.seed} (${outcome.caseKind}): ${outcome.message}\n${replay(outcome.seed)}`);
    if (outcome.kind === 'hung') expect.fail(`seed ${outcome.seed}: no progress for ${STALL_MS / 1000} s (a loop that never ends?)\n${replay(outcome.seed)}`);
    expect(outcome.kind).toBe('done');
  }, 600_000);
});
