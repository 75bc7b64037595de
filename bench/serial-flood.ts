// The serial-flood suite: one real-mode guest (firmware/serial-flood.S) writes
// N bytes to COM1, one exit per byte, and every VMM runs that same file as a
// process: tsvmm (the bin, as a user runs it), kvmtool and QEMU when present,
// and the C baseline
// (bench/c/kvm-flat.c) as the limit. Each VMM's console goes two ways:
//   pipe  `VMM | wc -c`: a reader on a pipe, as with a terminal or `| tee`;
//   file  `VMM > file`: the cheapest place a byte can go (a log file).
// (Not a pipe read by the bench itself: Node's child pipes are socketpairs,
// which fill up after a few hundred 1-byte writes, and QEMU's UART then drops
// bytes the guest never asked about.) Throughput = N / (time(N) − time(0)),
// each run's pair of processes taken back to back, so start-up and guest
// setup drop out. VMMs take turns run by run. Goal: tsvmm faster than kvmtool
// and QEMU. A peer that fails is a row saying why (bench/lib/peers.ts).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildArtifacts, C_RUNNER, serialFloodImage, TSVMM_BIN } from './lib/artifacts.ts';
import { ensureCompiled } from './lib/compiled.ts';
import { writeFlatRom } from './lib/flat-rom.ts';
import { findPeers, kvmtoolArgs, PeerFailure, qemuArgs, type Peer } from './lib/peers.ts';
import { describeFailure, failureReason, runProcess } from './lib/process.ts';
import { summarize, table, type Summary } from './lib/stats.ts';
import type { BenchOptions, ChartPanel } from './lib/suite.ts';

const MEM_MIB = 64;

export type FloodConsole = 'pipe' | 'file';
export const FLOOD_CONSOLES: FloodConsole[] = ['pipe', 'file'];

export interface FloodRow {
  vmm: string;
  /** Where the VMM's console went. */
  console: FloodConsole;
  /** Bytes per second (null: not installed, or failed). */
  bytesPerSecond: Summary | null;
  /** Why a peer has no figures though it is installed: "QEMU failed: …". */
  failed?: string;
  /** tsvmm's throughput over this one's with the same console (> 1: tsvmm is faster). */
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
  /** Another VMM compared with (its failure is a row, not the end of the suite). */
  peer: boolean;
  note: string;
}

function runners(peers: ReturnType<typeof findPeers>): Runner[] {
  const peer = (p: Peer, args: Runner['args'], status: number): Runner => ({ vmm: p.label, command: p.path, args, status, peer: true, note: p.path ? (p.version ?? '') : p.note });
  return [
    { vmm: 'tsvmm', command: process.execPath, args: ({ flat }) => [TSVMM_BIN, 'run', '--flat', flat, '--mem', `${MEM_MIB}M`], status: 1, peer: false, note: 'tsvmm run --flat' },
    peer(peers.kvmtool, ({ flat }) => kvmtoolArgs(flat, MEM_MIB), 0),
    peer(peers.qemu, ({ rom }) => qemuArgs(rom, MEM_MIB), 1),
    { vmm: 'C baseline', command: C_RUNNER, args: ({ flat }) => ['-m', String(MEM_MIB), flat], status: 1, peer: false, note: 'bench/c/kvm-flat.c: the limit' },
  ];
}

/** Runs the guest once; returns ns from spawn to exit. */
async function timeGuest(runner: Runner, images: { flat: string; rom: string }, bytes: number, console: FloodConsole, out: string): Promise<number> {
  const args = runner.args(images);
  let run;
  let received: number;
  if (console === 'file') {
    run = await runProcess(runner.command!, args, { timeoutMs: 120_000, stdoutFile: out });
    received = run.stdoutBytes;
  } else {
    // bash, for pipefail: the pipeline's status is the VMM's. The VMM's stderr
    // goes out on fd 3, bash's own ("Aborted ... | wc -c") nowhere: a failed
    // VMM's last line is its own.
    const pipeline = 'set -o pipefail; exec 3>&2; { "$@" 2>&3 | wc -c; } 2>/dev/null';
    run = await runProcess('bash', ['-c', pipeline, 'serial-flood', runner.command!, ...args], { timeoutMs: 120_000, stdoutFile: out });
    received = Number(readFileSync(out, 'utf8').trim());
  }
  if (run.status !== runner.status) {
    throw runner.peer ? new PeerFailure(runner.vmm, failureReason(run)) : describeFailure(`serial-flood under ${runner.vmm}`, run);
  }
  if (received !== bytes) {
    const what = `${received} bytes arrived, expected ${bytes}`;
    throw runner.peer ? new PeerFailure(runner.vmm, `${what} (console to a ${console})`) : new Error(`serial-flood under ${runner.vmm}, console to a ${console}: ${what}`);
  }
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
    const out = join(dir, 'console.out');
    const all = runners(findPeers());
    const present = all.filter((r) => r.command);
    const key = (vmm: string, console: FloodConsole) => `${vmm} ${console}`;
    const samples = new Map<string, number[]>();
    /** Peers that failed, with why: not run again. */
    const failures = new Map<string, string>();
    for (let run = 0; run < options.runs; run++) {
      for (const console of FLOOD_CONSOLES) {
        // Rotate who goes first, so no VMM always follows the same neighbour.
        for (let k = 0; k < present.length; k++) {
          const runner = present[(run + k) % present.length]!;
          if (failures.has(runner.vmm)) continue;
          let ns: number;
          try {
            ns = (await timeGuest(runner, full, options.bytes, console, out)) - (await timeGuest(runner, empty, 0, console, out));
          } catch (error) {
            if (!runner.peer) throw error;
            failures.set(runner.vmm, PeerFailure.of(runner.vmm, error).message);
            options.log(`  ${failures.get(runner.vmm)}`);
            continue;
          }
          const list = samples.get(key(runner.vmm, console)) ?? [];
          list.push((options.bytes / Math.max(ns, 1)) * 1e9);
          samples.set(key(runner.vmm, console), list);
        }
        const measured = present.filter((r) => !failures.has(r.vmm));
        options.log(`  run ${run + 1}/${options.runs}, console to a ${console}: ${measured.map((r) => `${r.vmm} ${(samples.get(key(r.vmm, console))!.at(-1)! / 1e3).toFixed(0)} kB/s`).join(', ')}`);
      }
    }
    const rows: FloodRow[] = [];
    for (const console of FLOOD_CONSOLES) {
      const tsvmm = summarize(samples.get(key('tsvmm', console))!).median;
      for (const r of all) {
        const failed = failures.get(r.vmm);
        if (failed) {
          rows.push({ vmm: r.vmm, console, bytesPerSecond: null, tsvmmOver: null, failed, note: r.note });
          continue;
        }
        const s = samples.get(key(r.vmm, console));
        const bytesPerSecond = s ? summarize(s) : null;
        rows.push({ vmm: r.vmm, console, bytesPerSecond, tsvmmOver: bytesPerSecond ? tsvmm / bytesPerSecond.median : null, note: r.note });
      }
    }
    return { bytes: options.bytes, runs: options.runs, rows };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const kbs = (s: Summary) => `${(s.median / 1e3).toFixed(1)} (${(s.min / 1e3).toFixed(1)}–${(s.max / 1e3).toFixed(1)})`;

const CONSOLE_LABEL: Record<FloodConsole, string> = { pipe: 'pipe (| wc -c)', file: 'file' };

export function formatSerialFlood(result: FloodResult): string {
  return table(
    ['VMM', 'console', 'kB/s', 'µs/byte', 'tsvmm ÷ VMM', 'version / note'],
    result.rows.map((r) => {
      if (r.failed) return [r.vmm, CONSOLE_LABEL[r.console], 'failed', '—', '—', r.failed];
      return r.bytesPerSecond
        ? [r.vmm, CONSOLE_LABEL[r.console], kbs(r.bytesPerSecond), (1e6 / r.bytesPerSecond.median).toFixed(2), r.vmm === 'tsvmm' ? '—' : `${r.tsvmmOver!.toFixed(2)}×`, r.note]
        : [r.vmm, CONSOLE_LABEL[r.console], 'not installed', '—', '—', r.note];
    }),
  );
}

export function chartSerialFlood(result: FloodResult): ChartPanel[] {
  return [{
    title: `serial-flood: ${result.bytes.toLocaleString('en-US')} bytes to COM1 from a real-mode loop`,
    unit: 'kB/s',
    better: 'higher',
    groups: FLOOD_CONSOLES.map((console) => ({
      label: `console → ${CONSOLE_LABEL[console]}`,
      bars: result.rows.filter((r) => r.console === console).map((r) => r.bytesPerSecond
        ? { series: r.vmm, value: r.bytesPerSecond.median / 1e3, min: r.bytesPerSecond.min / 1e3, max: r.bytesPerSecond.max / 1e3 }
        : { series: r.vmm, value: 0, missing: r.failed ? 'failed' : 'not installed' }),
    })),
  }];
}
