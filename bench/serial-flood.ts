// The serial-flood suite: one real-mode guest (firmware/serial-flood.S) writes
// N bytes to COM1, one exit per byte, and every VMM runs that same file as a
// process with its console in a file: tsvmm (the bin, as a user runs it),
// kvmtool and QEMU when present, and the C baseline
// (bench/c/kvm-flat.c) as the limit. Throughput = N / (time(N) − time(0)),
// each run's pair of processes taken back to back, so start-up and guest
// setup drop out. VMMs take turns run by run. Goal: tsvmm faster than kvmtool
// and QEMU.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildArtifacts, C_RUNNER, serialFloodImage, TSVMM_BIN } from './lib/artifacts.ts';
import { ensureCompiled } from './lib/compiled.ts';
import { writeFlatRom } from './lib/flat-rom.ts';
import { findPeers, kvmtoolArgs, qemuArgs, type Peer } from './lib/peers.ts';
import { describeFailure, runProcess } from './lib/process.ts';
import { summarize, table, type Summary } from './lib/stats.ts';
import type { BenchOptions, ChartPanel } from './lib/suite.ts';

const MEM_MIB = 64;

export interface FloodRow {
  vmm: string;
  /** Bytes per second (null: not installed). */
  bytesPerSecond: Summary | null;
  /** tsvmm's throughput over this one's (> 1: tsvmm is faster). */
  tsvmmOver: number | null;
  note: string;
}

export interface FloodResult {
  bytes: number;
  runs: number;
  rows: FloodRow[];
}

interface Runner {
  vmm: string;
  /** null: not installed. */
  command: string | null;
  args: (images: { flat: string; rom: string }) => string[];
  /** The exit status of a guest that ended normally. */
  status: number;
  note: string;
}

function runners(peers: ReturnType<typeof findPeers>): Runner[] {
  const peer = (p: Peer, args: Runner['args'], status: number): Runner => ({ vmm: p.label, command: p.path, args, status, note: p.path ? (p.version ?? '') : p.note });
  return [
    { vmm: 'tsvmm', command: process.execPath, args: ({ flat }) => [TSVMM_BIN, 'run', '--flat', flat, '--mem', `${MEM_MIB}M`], status: 1, note: 'tsvmm run --flat' },
    peer(peers.kvmtool, ({ flat }) => kvmtoolArgs(flat, MEM_MIB), 0),
    peer(peers.qemu, ({ rom }) => qemuArgs(rom, MEM_MIB), 1),
    { vmm: 'C baseline', command: C_RUNNER, args: ({ flat }) => ['-m', String(MEM_MIB), flat], status: 1, note: 'bench/c/kvm-flat.c: the limit' },
  ];
}

async function timeGuest(runner: Runner, images: { flat: string; rom: string }, bytes: number, console: string): Promise<number> {
  const run = await runProcess(runner.command!, runner.args(images), { timeoutMs: 120_000, stdoutFile: console });
  if (run.status !== runner.status) throw describeFailure(`serial-flood under ${runner.vmm}`, run);
  if (run.stdoutBytes !== bytes) throw new Error(`serial-flood under ${runner.vmm}: ${run.stdoutBytes} bytes on stdout, expected ${bytes}`);
  return run.exitNs;
}

export async function benchSerialFlood(options: BenchOptions): Promise<FloodResult> {
  buildArtifacts();
  await ensureCompiled(options.log);
  const dir = mkdtempSync(join(tmpdir(), 'tsvmm-bench-flood-'));
  try {
    const image = (count: number) => {
      const flat = serialFloodImage(dir, { count });
      return { flat, rom: writeFlatRom(flat, `${flat}.rom`) };
    };
    const full = image(options.bytes);
    const empty = image(0);
    const all = runners(findPeers());
    const present = all.filter((r) => r.command);
    const samples = new Map<string, number[]>(present.map((r) => [r.vmm, []]));
    for (let run = 0; run < options.runs; run++) {
      // Rotate who goes first, so no VMM always follows the same neighbour.
      for (let k = 0; k < present.length; k++) {
        const runner = present[(run + k) % present.length]!;
        const console = join(dir, 'console.out');
        const ns = (await timeGuest(runner, full, options.bytes, console)) - (await timeGuest(runner, empty, 0, console));
        samples.get(runner.vmm)!.push((options.bytes / Math.max(ns, 1)) * 1e9);
      }
      options.log(`  run ${run + 1}/${options.runs}: ${present.map((r) => `${r.vmm} ${(samples.get(r.vmm)![run]! / 1e3).toFixed(0)} kB/s`).join(', ')}`);
    }
    const tsvmm = summarize(samples.get('tsvmm')!).median;
    const rows = all.map((r): FloodRow => {
      const s = samples.get(r.vmm);
      const bytesPerSecond = s ? summarize(s) : null;
      return { vmm: r.vmm, bytesPerSecond, tsvmmOver: bytesPerSecond ? tsvmm / bytesPerSecond.median : null, note: r.note };
    });
    return { bytes: options.bytes, runs: options.runs, rows };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const kbs = (s: Summary) => `${(s.median / 1e3).toFixed(1)} (${(s.min / 1e3).toFixed(1)}–${(s.max / 1e3).toFixed(1)})`;

export function formatSerialFlood(result: FloodResult): string {
  return table(
    ['VMM', 'kB/s', 'µs/byte', 'tsvmm ÷ VMM', 'version / note'],
    result.rows.map((r) => r.bytesPerSecond
      ? [r.vmm, kbs(r.bytesPerSecond), (1e6 / r.bytesPerSecond.median).toFixed(2), r.vmm === 'tsvmm' ? '—' : `${r.tsvmmOver!.toFixed(2)}×`, r.note]
      : [r.vmm, 'not installed', '—', '—', r.note]),
  );
}

export function chartSerialFlood(result: FloodResult): ChartPanel[] {
  return [{
    title: `serial-flood: ${result.bytes.toLocaleString('en-US')} bytes to COM1 from a real-mode loop`,
    unit: 'kB/s',
    better: 'higher',
    groups: [{
      label: 'COM1 throughput',
      bars: result.rows.map((r) => r.bytesPerSecond
        ? { series: r.vmm, value: r.bytesPerSecond.median / 1e3, min: r.bytesPerSecond.min / 1e3, max: r.bytesPerSecond.max / 1e3 }
        : { series: r.vmm, value: 0, missing: 'not installed' }),
    }],
  }];
}
