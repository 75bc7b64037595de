// The exits suite: the same exit-loop guest (firmware/exitloop.S) run by the C
// baseline (bench/c/kvm-flat.c) and by tsvmm's run loop with a no-op device,
// alternating run by run so machine noise falls on both. Each figure is the
// cost of one loop iteration, i.e. one exit: (time(N) - time(0)) / N, which
// leaves out the guest's mode-switch setup, identical in both.
// Goal: tsvmm at most 1.05x the C loop.
//
// The "ioeventfd" row is the same `out` loop with the port bound to an
// eventfd through KVM_IOEVENTFD in both VMMs: KVM completes the write itself
// and neither loop sees an exit, which is how virtio queue notifications go.
import { spawnSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Machine } from '../src/machine/machine.ts';
import { siblingModule } from '../src/machine/threads.ts';
import { createEventFd, VmFd } from '../src/kvm/index.ts';
import { buildArtifacts, C_RUNNER, EXIT_LOOP_PORT, exitLoopImage, ExitLoopOp } from './lib/artifacts.ts';
import { summarize, table, type Summary } from './lib/stats.ts';
import type { ChartPanel } from './lib/suite.ts';
import { onlyVmFd } from './lib/vm-fd.ts';

/** An exitloop op, or OUT8 with the port bound to an ioeventfd. */
export type ExitOp = keyof typeof ExitLoopOp | 'IOEVENTFD';

/** The no-op device (a module path, loaded by the vCPU thread: .ts from sources, .js compiled). */
const NULL_SINK = fileURLToPath(siblingModule(import.meta.url, './devices/null-sink'));

export interface ExitsOptions {
  runs: number;
  iterations: number;
  ops?: ExitOp[];
  /** Privilege levels to run the loop at (default both: 3 is the spec'd case, 0 is cheaper on PVM). */
  cpls?: (0 | 3)[];
  log?: (line: string) => void;
}

export interface ExitsRow {
  op: string;
  cpl: number;
  iterations: number;
  c: Summary;
  tsvmm: Summary;
  ratio: number;
}

const OP_LABELS: Record<string, string> = {
  OUT8: 'PIO out', IN8: 'PIO in', MMIO_WRITE32: 'MMIO write', MMIO_READ32: 'MMIO read', OUT16: 'PIO out16', OUT32: 'PIO out32',
  IOEVENTFD: 'PIO out → ioeventfd',
};

export const DEFAULT_EXIT_OPS: ExitOp[] = ['OUT8', 'IN8', 'MMIO_WRITE32', 'MMIO_READ32', 'IOEVENTFD'];

interface Timing {
  exits: number;
  ns: number;
}

/** The C baseline ends through debug-exit (status 1) and prints its summary on stderr. */
function runC(image: string, ioeventfd: boolean): Timing {
  const result = spawnSync(C_RUNNER, ['-s', ...(ioeventfd ? ['-e', String(EXIT_LOOP_PORT)] : []), image], { encoding: 'utf8' });
  const exits = /exits=(\d+)/.exec(result.stderr);
  const ns = /\bns=(\d+)/.exec(result.stderr);
  if (result.status !== 1 || !exits || !ns) {
    throw new Error(`C baseline failed (status ${result.status}): ${result.stderr.trim() || result.error?.message}`);
  }
  return { exits: Number(exits[1]), ns: Number(ns[1]) };
}

async function runTsvmm(image: string, ioeventfd: boolean): Promise<Timing> {
  const devNull = openSync('/dev/null', 'w');
  const machine = Machine.create({
    memoryBytes: 64 * 2 ** 20,
    flat: { path: image },
    deviceModules: [NULL_SINK],
    consoleFd: devNull,
  });
  let eventFd = -1;
  try {
    if (ioeventfd) {
      eventFd = createEventFd();
      VmFd.attach(onlyVmFd()).ioeventfd({ address: EXIT_LOOP_PORT, length: 1, fd: eventFd, pio: true });
    }
    const result = await machine.run();
    if (result.stop.cause !== 'debug-exit' || result.stop.status !== 1) throw new Error(`tsvmm run ended with ${result.stop.cause}: ${result.stop.message ?? ''}`);
    return { exits: result.exits, ns: result.runNs };
  } finally {
    machine.close();
    closeSync(devNull);
    if (eventFd >= 0) closeSync(eventFd);
  }
}

/** Median time of a guest with an empty loop: the setup both runners pay. */
async function setupTime(op: ExitOp, cpl: 0 | 3, runs: number): Promise<{ c: number; tsvmm: number }> {
  const image = loopImage(op, 0, cpl);
  const c: number[] = [];
  const ts: number[] = [];
  for (let i = 0; i < runs; i++) {
    c.push(runC(image, op === 'IOEVENTFD').ns);
    ts.push((await runTsvmm(image, op === 'IOEVENTFD')).ns);
  }
  return { c: summarize(c).median, tsvmm: summarize(ts).median };
}

function loopImage(op: ExitOp, iterations: number, cpl: 0 | 3): string {
  return exitLoopImage({ iterations, op: ExitLoopOp[op === 'IOEVENTFD' ? 'OUT8' : op], cpl });
}

export async function benchExits(options: ExitsOptions): Promise<ExitsRow[]> {
  buildArtifacts();
  const log = options.log ?? (() => {});
  const rows: ExitsRow[] = [];
  const n = options.iterations;
  for (const cpl of options.cpls ?? [3, 0]) {
    for (const op of options.ops ?? DEFAULT_EXIT_OPS) {
      const ioeventfd = op === 'IOEVENTFD';
      const setup = await setupTime(op, cpl, Math.max(3, options.runs));
      const image = loopImage(op, n, cpl);
      const c: number[] = [];
      const ts: number[] = [];
      for (let run = 0; run < options.runs; run++) {
        const base = runC(image, ioeventfd);
        const ours = await runTsvmm(image, ioeventfd);
        if (ours.exits !== base.exits) throw new Error(`exit counts differ: C ${base.exits}, tsvmm ${ours.exits}`);
        c.push((base.ns - setup.c) / n);
        ts.push((ours.ns - setup.tsvmm) / n);
        log(`  ${op} ring ${cpl} run ${run + 1}/${options.runs}: C ${c[run]!.toFixed(0)} ns/exit, tsvmm ${ts[run]!.toFixed(0)} ns/exit`);
      }
      const cs = summarize(c);
      const tss = summarize(ts);
      rows.push({ op: OP_LABELS[op] ?? op, cpl, iterations: n, c: cs, tsvmm: tss, ratio: tss.median / cs.median });
    }
  }
  return rows;
}

export function formatExits(rows: ExitsRow[]): string {
  const ns = (s: Summary) => `${s.median.toFixed(0)} (${s.min.toFixed(0)}–${s.max.toFixed(0)})`;
  return table(
    ['exit', 'guest ring', 'C ns/exit', 'tsvmm ns/exit', 'tsvmm / C', 'goal ≤ 1.05×'],
    rows.map((r) => [r.op, String(r.cpl), ns(r.c), ns(r.tsvmm), `${r.ratio.toFixed(3)}×`, r.ratio <= 1.05 ? 'met' : 'not met']),
  );
}

export function chartExits(rows: ExitsRow[]): ChartPanel[] {
  const us = (s: Summary) => ({ value: s.median / 1e3, min: s.min / 1e3, max: s.max / 1e3 });
  const cpls = [...new Set(rows.map((r) => r.cpl))];
  return cpls.map((cpl) => ({
    title: `exits: one guest access per loop iteration, guest ring ${cpl}`,
    unit: 'µs per exit',
    better: 'lower' as const,
    groups: rows.filter((r) => r.cpl === cpl).map((r) => ({
      label: r.op,
      bars: [{ series: 'C baseline', ...us(r.c) }, { series: 'tsvmm', ...us(r.tsvmm) }],
    })),
  }));
}
