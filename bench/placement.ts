// Where device state should live (docs/architecture.md): the same exit loop
// guest (ring 0: the cheapest exit on PVM, so differences show most) with its
// no-op device placed three ways, against the C baseline.
//   A  in the vCPU thread, called directly            (tsvmm today)
//   B  in the vCPU thread, state in a SAB under a lock (several vCPUs sharing it)
//   C  in a device thread, reached by an Atomics hand-off
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { Machine } from '../src/machine/machine.ts';
import { buildArtifacts, C_RUNNER, exitLoopImage, ExitLoopOp, ROOT } from './lib/artifacts.ts';
import { summarize, table } from './lib/stats.ts';

const OPTIONS = [
  ['A: vCPU thread, direct call', 'null-sink.ts'],
  ['B: vCPU thread, SAB state + lock', 'locked-sink.ts'],
  ['C: device thread, Atomics hand-off', 'thread-sink.ts'],
] as const;

async function tsvmmNsPerExit(image: string, module: string): Promise<number> {
  const devNull = openSync('/dev/null', 'w');
  const machine = Machine.create({ memoryBytes: 64 << 20, flat: { path: image }, deviceModules: [join(ROOT, 'bench', 'devices', module)], consoleFd: devNull });
  try {
    const r = await machine.run();
    if (r.stop.cause !== 'debug-exit') throw new Error(`${module}: ${r.stop.message}`);
    return r.runNs / r.exits;
  } finally {
    machine.close();
    closeSync(devNull);
  }
}

function cNsPerExit(image: string): number {
  const r = spawnSync(C_RUNNER, ['-s', image], { encoding: 'utf8' });
  const m = /ns_per_exit=([\d.]+)/.exec(r.stderr);
  if (!m) throw new Error(`C baseline: ${r.stderr}`);
  return Number(m[1]);
}

export async function benchPlacement(runs: number, iterations: number, log: (s: string) => void): Promise<string> {
  buildArtifacts();
  const image = exitLoopImage({ iterations, op: ExitLoopOp.OUT8, cpl: 0 });
  const samples: number[][] = [[], [], [], []];
  for (let run = 0; run < runs; run++) {
    samples[0]!.push(cNsPerExit(image));
    for (let i = 0; i < OPTIONS.length; i++) samples[i + 1]!.push(await tsvmmNsPerExit(image, OPTIONS[i]![1]));
    log(`  run ${run + 1}/${runs}: ${samples.map((s) => s[run]!.toFixed(0)).join(' / ')} ns/exit`);
  }
  const c = summarize(samples[0]!).median;
  const rows = [['C baseline (bench/c/kvm-flat.c)', ...[samples[0]!].map((s) => summarize(s))], ...OPTIONS.map(([label], i) => [label, summarize(samples[i + 1]!)])] as [string, ReturnType<typeof summarize>][];
  return table(['placement', 'ns/exit (median, min–max)', 'vs C'], rows.map(([label, s]) => [label, `${s.median.toFixed(0)} (${s.min.toFixed(0)}–${s.max.toFixed(0)})`, `${(s.median / c).toFixed(3)}×`]));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const runs = Number(process.argv[2] ?? 5);
  const iterations = Number(process.argv[3] ?? 200000);
  console.log(await benchPlacement(runs, iterations, (s) => console.error(s)));
}
