// The exits suite: the same ring-3 exit loop guest (firmware/exitloop.S) run
// by the C baseline (bench/c/kvm-flat.c) and by tsvmm's run loop with a no-op
// device, alternating run by run so machine noise falls on both. Reports
// ns per exit for each and tsvmm's ratio to C (goal: at most 1.05).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { Machine } from '../src/machine/machine.ts';
import { buildArtifacts, C_RUNNER, exitLoopImage, ExitLoopOp, ROOT } from './lib/artifacts.ts';
import { summarize, table, type Summary } from './lib/stats.ts';

export interface ExitsOptions {
  runs: number;
  iterations: number;
  ops?: (keyof typeof ExitLoopOp)[];
  log?: (line: string) => void;
}

export interface ExitsRow {
  op: string;
  exits: number;
  c: Summary;
  tsvmm: Summary;
  ratio: number;
}

const OP_LABELS: Record<string, string> = {
  OUT8: 'PIO out (1 byte)', IN8: 'PIO in (1 byte)', MMIO_WRITE32: 'MMIO write (4 bytes)', MMIO_READ32: 'MMIO read (4 bytes)',
};

/** Runs the C baseline; it ends through debug-exit (status 1) and prints its summary on stderr. */
function runBaseline(image: string): { exits: number; ns: number } {
  const result = spawnSync(C_RUNNER, ['-s', image], { encoding: 'utf8' });
  const exits = /exits=(\d+)/.exec(result.stderr);
  const ns = /\bns=(\d+)/.exec(result.stderr);
  if (result.status !== 1 || !exits || !ns) {
    throw new Error(`C baseline failed (status ${result.status}): ${result.stderr.trim() || result.error?.message}`);
  }
  return { exits: Number(exits[1]), ns: Number(ns[1]) };
}

async function runTsvmm(image: string): Promise<{ exits: number; ns: number }> {
  const machine = Machine.create({
    memoryBytes: 64 * 2 ** 20,
    flat: { path: image },
    deviceModules: [join(ROOT, 'bench', 'devices', 'null-sink.ts')],
    consoleFd: 2,
  });
  try {
    const result = await machine.run();
    if (result.stop.cause !== 'debug-exit' || result.stop.status !== 1) throw new Error(`tsvmm run ended with ${result.stop.cause}: ${result.stop.message ?? ''}`);
    return { exits: result.exits, ns: result.runNs };
  } finally {
    machine.close();
  }
}

export async function benchExits(options: ExitsOptions): Promise<ExitsRow[]> {
  buildArtifacts();
  const log = options.log ?? (() => {});
  const rows: ExitsRow[] = [];
  for (const op of options.ops ?? (['OUT8', 'IN8', 'MMIO_WRITE32', 'MMIO_READ32'] as const)) {
    const image = exitLoopImage({ iterations: options.iterations, op: ExitLoopOp[op] });
    const c: number[] = [];
    const ts: number[] = [];
    let exits = 0;
    for (let run = 0; run < options.runs; run++) {
      const base = runBaseline(image);
      const ours = await runTsvmm(image);
      if (ours.exits !== base.exits) throw new Error(`exit counts differ: C ${base.exits}, tsvmm ${ours.exits}`);
      exits = ours.exits;
      c.push(base.ns / base.exits);
      ts.push(ours.ns / ours.exits);
      log(`  ${op} run ${run + 1}/${options.runs}: C ${(base.ns / base.exits).toFixed(0)} ns/exit, tsvmm ${(ours.ns / ours.exits).toFixed(0)} ns/exit`);
    }
    const cs = summarize(c);
    const tss = summarize(ts);
    rows.push({ op: OP_LABELS[op] ?? op, exits, c: cs, tsvmm: tss, ratio: tss.median / cs.median });
  }
  return rows;
}

export function formatExits(rows: ExitsRow[]): string {
  const ns = (s: Summary) => `${s.median.toFixed(0)} (${s.min.toFixed(0)}–${s.max.toFixed(0)})`;
  return table(
    ['exit kind', 'exits/run', 'C ns/exit', 'tsvmm ns/exit', 'tsvmm / C'],
    rows.map((r) => [r.op, String(r.exits), ns(r.c), ns(r.tsvmm), `${r.ratio.toFixed(3)}×`]),
  );
}
