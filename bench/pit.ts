// The pit suite: firmware/pit-calibrate.S times 25 ms and 50 ms with PIT
// channel 2, polling port 0x61 the way Linux calibrates its TSC, once with
// tsvmm's TypeScript i8254 and once with KVM's (--pit kernel), alternately.
// The guest's run time is set by the PIT itself (~75 ms), so what differs is
// how many exits reach tsvmm, how often the guest can poll, and whether the
// two intervals still measure 1:2.
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Machine } from '../src/machine/machine.ts';
import { buildArtifacts, firmwarePath } from './lib/artifacts.ts';
import { summarize, table, type Summary } from './lib/stats.ts';
import type { BenchOptions, ChartPanel } from './lib/suite.ts';

export type PitKind = 'tsvmm' | 'kernel';

export interface PitRow {
  pit: PitKind;
  /** Exits that reached tsvmm. */
  exits: Summary;
  /** The vCPU thread's run time, ms. */
  runMs: Summary;
  /** Polls of port 0x61 during the 50 ms interval. */
  polls: Summary;
  /** µs per poll in the 50 ms interval. */
  usPerPoll: Summary;
  /** TSC(50 ms) / TSC(25 ms): 2 when the PIT keeps time. */
  intervalRatio: Summary;
}

interface PitRun {
  exits: number;
  runNs: number;
  polls: number;
  ratio: number;
}

/** Parses the guest's line: "pit 25ms=<hex> 50ms=<hex> polls=<hex>". */
export function parsePitLine(text: string): { tsc25: number; tsc50: number; polls: number } {
  const m = /pit 25ms=([0-9A-Fa-f]+) 50ms=([0-9A-Fa-f]+) polls=([0-9A-Fa-f]+)/.exec(text);
  if (!m) throw new Error(`pit-calibrate: no result line in ${JSON.stringify(text.slice(0, 200))}`);
  return { tsc25: Number.parseInt(m[1]!, 16), tsc50: Number.parseInt(m[2]!, 16), polls: Number.parseInt(m[3]!, 16) };
}

async function runPit(pit: PitKind, dir: string): Promise<PitRun> {
  const out = join(dir, `pit-${pit}.txt`);
  const fd = openSync(out, 'w');
  const machine = Machine.create({ memoryBytes: 16 << 20, flat: { path: firmwarePath('pit-calibrate') }, pit, consoleFd: fd });
  try {
    const result = await machine.run();
    if (result.stop.cause !== 'debug-exit' || result.stop.status !== 1) throw new Error(`pit-calibrate with --pit ${pit} ended with ${result.stop.cause}: ${result.stop.message ?? ''}`);
    closeSync(fd);
    const line = parsePitLine(readFileSync(out, 'utf8'));
    return { exits: result.exits, runNs: result.runNs, polls: line.polls, ratio: line.tsc50 / line.tsc25 };
  } finally {
    machine.close();
    try {
      closeSync(fd);
    } catch {
      // closed above
    }
  }
}

export async function benchPit(options: BenchOptions): Promise<PitRow[]> {
  buildArtifacts();
  const dir = mkdtempSync(join(tmpdir(), 'tsvmm-bench-pit-'));
  try {
    const runs: Record<PitKind, PitRun[]> = { tsvmm: [], kernel: [] };
    for (let run = 0; run < options.runs; run++) {
      for (const pit of (run % 2 ? ['kernel', 'tsvmm'] : ['tsvmm', 'kernel']) as PitKind[]) runs[pit].push(await runPit(pit, dir));
      options.log(`  run ${run + 1}/${options.runs}: exits tsvmm PIT ${runs.tsvmm[run]!.exits}, KVM PIT ${runs.kernel[run]!.exits}`);
    }
    return (['tsvmm', 'kernel'] as const).map((pit) => {
      const r = runs[pit];
      return {
        pit,
        exits: summarize(r.map((x) => x.exits)),
        runMs: summarize(r.map((x) => x.runNs / 1e6)),
        polls: summarize(r.map((x) => x.polls)),
        usPerPoll: summarize(r.map((x) => 50_000 / x.polls)),
        intervalRatio: summarize(r.map((x) => x.ratio)),
      };
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const range = (s: Summary, digits: number) => `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}–${s.max.toFixed(digits)})`;

export function formatPit(rows: PitRow[]): string {
  return table(
    ['PIT', 'exits to tsvmm', 'run ms', 'polls in 50 ms', 'µs per poll', '50 ms / 25 ms'],
    rows.map((r) => [r.pit === 'tsvmm' ? 'tsvmm (TypeScript)' : 'KVM (--pit kernel)', range(r.exits, 0), range(r.runMs, 1), range(r.polls, 0), range(r.usPerPoll, 2), range(r.intervalRatio, 3)]),
  );
}

export function chartPit(rows: PitRow[]): ChartPanel[] {
  return [{
    title: 'pit: one poll of port 0x61 while PIT channel 2 counts (pit-calibrate guest)',
    unit: 'µs per poll',
    better: 'lower',
    groups: rows.map((r) => ({
      label: r.pit === 'tsvmm' ? 'tsvmm PIT' : 'KVM PIT',
      bars: [{ series: r.pit === 'tsvmm' ? 'tsvmm' : 'KVM', value: r.usPerPoll.median, min: r.usPerPoll.min, max: r.usPerPoll.max }],
    })),
  }];
}
