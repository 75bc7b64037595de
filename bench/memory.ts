// The memory suite: what a VMM keeps resident beyond its guest's RAM. Every
// VMM runs the same guest (firmware/serial-flood.S: one byte to COM1, then a
// spin loop) with 64 MiB of RAM; once the byte is out and the VMM has had a
// moment to settle, /proc/PID/smaps is read and the process is killed.
// Guest RAM is the VMM's anonymous mapping of the guest's size (see
// parseSmaps); what of it is resident (the pages the guest or the loader
// touched) is left out.
//   RSS beyond guest      everything resident, shared library pages included
//   private beyond guest  only pages no other process shares (USS)
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildArtifacts, C_RUNNER, serialFloodImage, TSVMM_BIN } from './lib/artifacts.ts';
import { ensureCompiled } from './lib/compiled.ts';
import { writeFlatRom } from './lib/flat-rom.ts';
import { findPeers, kvmtoolArgs, qemuArgs } from './lib/peers.ts';
import { describeFailure, runProcess } from './lib/process.ts';
import { summarize, table, type Summary } from './lib/stats.ts';
import type { BenchOptions, ChartPanel } from './lib/suite.ts';

const MEM_MIB = 64;
/** After the guest's byte: long enough for a VMM to finish starting (tsvmm: its worker's heap settles). */
const SETTLE_MS = 500;

export interface MemorySample {
  /** KiB. */
  rss: number;
  private: number;
  guestRss: number;
  guestPrivate: number;
  /** Whether the guest RAM mapping was found. */
  guestFound: boolean;
}

/** How much larger than the guest RAM its mapping may look: the kernel merges an adjacent anonymous mapping into it when their flags agree. */
const MERGE_SLACK = 4 << 20;

/**
 * Totals of /proc/PID/smaps, with the guest RAM apart: the anonymous
 * read/write mapping whose size is the guest's, or the closest above it
 * within MERGE_SLACK.
 */
export function parseSmaps(text: string, guestBytes: number): MemorySample {
  interface Mapping { size: number; guestCandidate: boolean; rss: number; private: number }
  const mappings: Mapping[] = [];
  let current: Mapping | null = null;
  for (const line of text.split('\n')) {
    const header = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ (\d+)\s*(.*)$/.exec(line);
    if (header) {
      const size = Number(BigInt(`0x${header[2]}`) - BigInt(`0x${header[1]}`));
      const anonymous = header[4] === '0' && header[5] === '';
      current = { size, guestCandidate: anonymous && header[3]!.startsWith('rw') && size >= guestBytes && size <= guestBytes + MERGE_SLACK, rss: 0, private: 0 };
      mappings.push(current);
      continue;
    }
    const field = /^(Rss|Private_Clean|Private_Dirty):\s+(\d+) kB$/.exec(line);
    if (!field || !current) continue;
    if (field[1] === 'Rss') current.rss += Number(field[2]);
    else current.private += Number(field[2]);
  }
  const guest = mappings.filter((m) => m.guestCandidate).sort((a, b) => a.size - b.size)[0];
  return {
    rss: mappings.reduce((sum, m) => sum + m.rss, 0),
    private: mappings.reduce((sum, m) => sum + m.private, 0),
    guestRss: guest?.rss ?? 0,
    guestPrivate: guest?.private ?? 0,
    guestFound: guest !== undefined,
  };
}

export interface MemoryRow {
  vmm: string;
  /** MiB, medians over runs (null: not installed). */
  rssBeyondGuest: Summary | null;
  privateBeyondGuest: Summary | null;
  /** Guest RAM resident, MiB (median). */
  guestResident: number | null;
  note: string;
}

export interface MemoryResult {
  guestMiB: number;
  runs: number;
  rows: MemoryRow[];
}

export async function benchMemory(options: BenchOptions): Promise<MemoryResult> {
  buildArtifacts();
  await ensureCompiled(options.log);
  const dir = mkdtempSync(join(tmpdir(), 'tsvmm-bench-memory-'));
  try {
    const flat = serialFloodImage(dir, { count: 1, end: 'spin' });
    const rom = writeFlatRom(flat, `${flat}.rom`);
    const peers = findPeers();
    const subjects = [
      { vmm: 'tsvmm', command: process.execPath as string | null, args: [TSVMM_BIN, 'run', '--flat', flat, '--mem', `${MEM_MIB}M`], note: `Node ${process.version}, main thread + vCPU worker` },
      { vmm: 'QEMU', command: peers.qemu.path, args: qemuArgs(rom, MEM_MIB), note: peers.qemu.path ? `${peers.qemu.version ?? ''}, -M microvm` : peers.qemu.note },
      { vmm: 'kvmtool', command: peers.kvmtool.path, args: kvmtoolArgs(flat, MEM_MIB), note: peers.kvmtool.path ? (peers.kvmtool.version ?? '') : peers.kvmtool.note },
      // It buffers the guest's output until it exits: sampled by time instead.
      { vmm: 'C baseline', command: C_RUNNER as string | null, args: ['-m', String(MEM_MIB), flat], note: 'bench/c/kvm-flat.c', sampleAfterMs: 200 },
    ];
    const present = subjects.filter((s) => s.command);
    const samples = new Map<string, MemorySample[]>(present.map((s) => [s.vmm, []]));
    for (let run = 0; run < options.runs; run++) {
      for (let k = 0; k < present.length; k++) {
        const subject = present[(run + k) % present.length]!;
        const result = await runProcess(subject.command!, subject.args, {
          timeoutMs: 60_000,
          ...('sampleAfterMs' in subject ? { whileRunningAfterMs: subject.sampleAfterMs } : {}),
          whileRunning: async (pid) => {
            await sleep(SETTLE_MS);
            return parseSmaps(readFileSync(`/proc/${pid}/smaps`, 'utf8'), MEM_MIB << 20);
          },
        });
        const sample = result.sample as MemorySample | undefined;
        if (!sample) throw describeFailure(`memory: ${subject.vmm} (no guest output)`, result);
        if (!sample.guestFound) throw new Error(`memory: no anonymous mapping of ${MEM_MIB} MiB (the guest RAM) in ${subject.vmm}'s /proc/PID/smaps`);
        samples.get(subject.vmm)!.push(sample);
      }
      options.log(`  run ${run + 1}/${options.runs}: ${present.map((s) => {
        const x = samples.get(s.vmm)![run]!;
        return `${s.vmm} ${((x.rss - x.guestRss) / 1024).toFixed(1)} MiB`;
      }).join(', ')}`);
    }
    const mib = (values: number[]) => summarize(values.map((kib) => kib / 1024));
    const rows = subjects.map((s): MemoryRow => {
      const x = samples.get(s.vmm);
      if (!x) return { vmm: s.vmm, rssBeyondGuest: null, privateBeyondGuest: null, guestResident: null, note: s.note };
      return {
        vmm: s.vmm,
        rssBeyondGuest: mib(x.map((m) => m.rss - m.guestRss)),
        privateBeyondGuest: mib(x.map((m) => m.private - m.guestPrivate)),
        guestResident: mib(x.map((m) => m.guestRss)).median,
        note: s.note,
      };
    });
    return { guestMiB: MEM_MIB, runs: options.runs, rows };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const range = (s: Summary) => `${s.median.toFixed(1)} (${s.min.toFixed(1)}–${s.max.toFixed(1)})`;

export function formatMemory(result: MemoryResult): string {
  return table(
    ['VMM', 'RSS beyond guest MiB', 'private beyond guest MiB', 'guest RAM resident MiB', 'note'],
    result.rows.map((r) => (r.rssBeyondGuest
      ? [r.vmm, range(r.rssBeyondGuest), range(r.privateBeyondGuest!), r.guestResident!.toFixed(2), r.note]
      : [r.vmm, 'not installed', '—', '—', r.note])),
  );
}

export function chartMemory(result: MemoryResult): ChartPanel[] {
  return [{
    title: `memory: resident beyond the guest's RAM (${result.guestMiB} MiB guest, idle after one serial byte)`,
    unit: 'MiB',
    better: 'lower',
    groups: result.rows.map((r) => ({
      label: r.vmm,
      bars: r.rssBeyondGuest
        ? [
          { series: 'RSS', value: r.rssBeyondGuest.median, min: r.rssBeyondGuest.min, max: r.rssBeyondGuest.max },
          { series: 'private (USS)', value: r.privateBeyondGuest!.median, min: r.privateBeyondGuest!.min, max: r.privateBeyondGuest!.max },
        ]
        : [{ series: 'RSS', value: 0, missing: 'not installed' }],
    })),
  }];
}
