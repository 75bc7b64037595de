// The startup suite: how long a VMM process takes from spawn() to its first
// KVM_RUN, to the guest's first byte on its serial console, and to its exit,
// for a whole tiny guest (firmware/serial-flood.S writing 16 bytes, then
// ending). tsvmm reports when its vCPU thread first enters KVM_RUN through
// TSVMM_TIMING (src/machine/startup-timing.ts); the others are timed from
// outside only. `node -e 0` is the floor under anything written for Node.
// Goal: tsvmm's first KVM_RUN within 20 ms of `node -e 0`'s exit. A peer that
// fails is a row saying why (bench/lib/peers.ts).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildArtifacts, C_RUNNER, serialFloodImage, TSVMM_BIN } from './lib/artifacts.ts';
import { ensureCompiled } from './lib/compiled.ts';
import { writeFlatRom } from './lib/flat-rom.ts';
import { findPeers, kvmtoolArgs, PeerFailure, qemuArgs } from './lib/peers.ts';
import { describeFailure, failureReason, runProcess, type ProcessRun } from './lib/process.ts';
import { summarize, table, type Summary } from './lib/stats.ts';
import type { BenchOptions, ChartPanel } from './lib/suite.ts';

const GUEST_BYTES = 16;
const MEM_MIB = 64;
export const STARTUP_GOAL_MS = 20;

export interface StartupRow {
  what: string;
  /** ms from spawn (null: not measured for this one; all null: not installed). */
  firstKvmRunMs: Summary | null;
  firstByteMs: Summary | null;
  exitMs: Summary | null;
  note: string;
  /** Why a peer has no figures though it is installed: "QEMU failed: …". */
  failed?: string;
}

export interface StartupResult {
  runs: number;
  rows: StartupRow[];
  /** tsvmm's first KVM_RUN minus node -e 0's exit (medians), and the goal. */
  tsvmmOverNodeMs: number;
  goalMs: number;
  /** Medians of tsvmm's own marks, ms from spawn, in order. */
  tsvmmMarks: Record<string, number>;
}

interface Subject {
  what: string;
  command: string | null;
  args: string[];
  status: number;
  /** Collect TSVMM_TIMING marks. */
  timing?: boolean;
  env?: NodeJS.ProcessEnv;
  /** Prints the guest's bytes. */
  guest: boolean;
  /** Another VMM compared with (its failure is a row, not the end of the suite). */
  peer?: boolean;
  note: string;
}

export async function benchStartup(options: BenchOptions): Promise<StartupResult> {
  buildArtifacts();
  await ensureCompiled(options.log);
  const dir = mkdtempSync(join(tmpdir(), 'tsvmm-bench-startup-'));
  try {
    const flat = serialFloodImage(dir, { count: GUEST_BYTES });
    const rom = writeFlatRom(flat, `${flat}.rom`);
    const peers = findPeers();
    const tsvmmArgs = [TSVMM_BIN, 'run', '--flat', flat, '--mem', `${MEM_MIB}M`];
    const subjects: Subject[] = [
      { what: 'node -e 0', command: process.execPath, args: ['-e', '0'], status: 0, guest: false, note: `Node ${process.version}: the floor` },
      { what: 'tsvmm', command: process.execPath, args: tsvmmArgs, status: 1, timing: true, guest: true, note: 'compiled (dist/), as installed' },
      { what: 'tsvmm from sources', command: process.execPath, args: tsvmmArgs, status: 1, timing: true, env: { TSVMM_SOURCES: '1' }, guest: true, note: 'TSVMM_SOURCES=1: tsx in both threads' },
      { what: 'QEMU', command: peers.qemu.path, args: qemuArgs(rom, MEM_MIB), status: 1, guest: true, peer: true, note: peers.qemu.path ? `${peers.qemu.version ?? ''}, -M microvm` : peers.qemu.note },
      { what: 'kvmtool', command: peers.kvmtool.path, args: kvmtoolArgs(flat, MEM_MIB), status: 0, guest: true, peer: true, note: peers.kvmtool.path ? (peers.kvmtool.version ?? '') : peers.kvmtool.note },
      { what: 'C baseline', command: C_RUNNER, args: ['-m', String(MEM_MIB), flat], status: 1, guest: true, note: 'bench/c/kvm-flat.c' },
    ];
    const present = subjects.filter((s) => s.command);
    const runs = new Map<string, ProcessRun[]>(present.map((s) => [s.what, []]));
    /** Peers that failed, with why: not run again. */
    const failures = new Map<string, string>();
    for (let run = 0; run < options.runs; run++) {
      for (let k = 0; k < present.length; k++) {
        const subject = present[(run + k) % present.length]!;
        if (failures.has(subject.what)) continue;
        try {
          runs.get(subject.what)!.push(await runSubject(subject));
        } catch (error) {
          if (!subject.peer) throw error;
          failures.set(subject.what, PeerFailure.of(subject.what, error).message);
          options.log(`  ${failures.get(subject.what)}`);
        }
      }
      const median = (what: string, pick: (r: ProcessRun) => number | null | undefined) => {
        const v = runs.get(what)?.[run];
        const x = v ? pick(v) : null;
        return x == null ? '—' : `${(x / 1e6).toFixed(0)}`;
      };
      options.log(`  run ${run + 1}/${options.runs}: node -e 0 exit ${median('node -e 0', (r) => r.exitNs)} ms, tsvmm first KVM_RUN ${median('tsvmm', (r) => r.marks['first-kvm-run'])} ms, exit ${median('tsvmm', (r) => r.exitNs)} ms`);
    }

    const ms = (values: (number | null | undefined)[]): Summary | null => {
      const present = values.filter((v): v is number => typeof v === 'number');
      return present.length ? summarize(present.map((v) => v / 1e6)) : null;
    };
    const rows = subjects.map((s): StartupRow => {
      const r = runs.get(s.what);
      const failed = failures.get(s.what);
      if (failed) return { what: s.what, firstKvmRunMs: null, firstByteMs: null, exitMs: null, note: s.note, failed };
      if (!r) return { what: s.what, firstKvmRunMs: null, firstByteMs: null, exitMs: null, note: s.note };
      return {
        what: s.what,
        firstKvmRunMs: s.timing ? ms(r.map((x) => x.marks['first-kvm-run'])) : null,
        firstByteMs: s.guest ? ms(r.map((x) => x.firstByteNs)) : null,
        exitMs: ms(r.map((x) => x.exitNs)),
        note: s.note,
      };
    });
    const tsvmmRuns = runs.get('tsvmm')!;
    const tsvmmMarks: Record<string, number> = {};
    for (const label of Object.keys(tsvmmRuns[0]!.marks)) tsvmmMarks[label] = ms(tsvmmRuns.map((r) => r.marks[label]))!.median;
    const node = rows.find((r) => r.what === 'node -e 0')!.exitMs!.median;
    const firstRun = rows.find((r) => r.what === 'tsvmm')!.firstKvmRunMs!.median;
    return { runs: options.runs, rows, tsvmmOverNodeMs: firstRun - node, goalMs: STARTUP_GOAL_MS, tsvmmMarks };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One run of a subject; a peer's failure is a PeerFailure. */
async function runSubject(subject: Subject): Promise<ProcessRun> {
  const result = await runProcess(subject.command!, subject.args, {
    timeoutMs: 60_000, ...(subject.timing ? { timing: true } : {}), ...(subject.env ? { env: subject.env } : {}),
  });
  if (result.status !== subject.status) {
    throw subject.peer ? new PeerFailure(subject.what, failureReason(result)) : describeFailure(`startup: ${subject.what}`, result);
  }
  if (subject.guest && result.stdoutBytes !== GUEST_BYTES) {
    const what = `printed ${result.stdoutBytes} bytes, expected ${GUEST_BYTES}`;
    throw subject.peer ? new PeerFailure(subject.what, what) : new Error(`startup: ${subject.what} ${what}`);
  }
  return result;
}

const range = (s: Summary | null) => (s ? `${s.median.toFixed(1)} (${s.min.toFixed(1)}–${s.max.toFixed(1)})` : '—');

export function formatStartup(result: StartupResult): string {
  const rows = table(
    ['process', 'first KVM_RUN ms', 'first serial byte ms', 'exit ms', 'note'],
    result.rows.map((r) => {
      if (r.failed) return [r.what, 'failed', '—', '—', r.failed];
      return r.exitMs ? [r.what, range(r.firstKvmRunMs), range(r.firstByteMs), range(r.exitMs), r.note] : [r.what, 'not installed', '—', '—', r.note];
    }),
  );
  const marks = Object.entries(result.tsvmmMarks).map(([label, at]) => `${label} ${at.toFixed(1)}`).join(' → ');
  const verdict = result.tsvmmOverNodeMs <= result.goalMs ? 'met' : 'not met';
  return `${rows}\n\ntsvmm's first KVM_RUN comes ${result.tsvmmOverNodeMs.toFixed(1)} ms after node -e 0 has exited (goal ≤ ${result.goalMs} ms: ${verdict}).\ntsvmm's own marks (ms from spawn, medians): ${marks}`;
}

export function chartStartup(result: StartupResult): ChartPanel[] {
  const bar = (series: string, s: Summary | null) => (s ? [{ series, value: s.median, min: s.min, max: s.max }] : []);
  return [{
    title: `startup: a whole tiny guest (${GUEST_BYTES} serial bytes, then exit), from spawn()`,
    unit: 'ms',
    better: 'lower',
    groups: result.rows.map((r) => ({
      label: r.what,
      bars: r.exitMs
        ? [...bar('first KVM_RUN', r.firstKvmRunMs), ...bar('first serial byte', r.firstByteMs), ...bar('exit', r.exitMs)]
        : [{ series: 'exit', value: 0, missing: r.failed ? 'failed' : 'not installed' }],
    })),
  }];
}
