// The memory suite: what a VMM keeps resident beyond its guest's RAM. Every
// VMM runs the same guest (firmware/serial-flood.S: one byte to COM1, then a
// spin loop) with 64 MiB of RAM; once the byte is out and the VMM has had a
// moment to settle, /proc/PID/smaps is read and the process is killed.
// Guest RAM is the VMM's anonymous mapping of the guest's size (see
// parseSmaps); what of it is resident (the pages the guest or the loader
// touched) is left out.
//   RSS beyond guest      everything resident, shared library pages included
//   PSS beyond guest      each page divided by the processes that share it
//                         (smaps's Pss, summed as smaps_rollup sums it): what
//                         one more VM costs while others run the same binary
//   private beyond guest  only pages no other process shares (USS): a
//                         binary's pages count here while no other process
//                         runs the same binary (QEMU's ~18 MiB), not once
//                         one does
//   anonymous beyond guest  memory the VMM allocated itself (smaps's
//                         Anonymous): what no number of VMs shares
// tsvmm runs three ways, so that what each thread costs shows as a
// difference: one vCPU thread; two vCPU threads (--cpus 2); one vCPU thread
// and the virtio I/O thread (--device virtio-rng). A peer that fails is a row
// saying why (bench/lib/peers.ts).
import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { buildArtifacts, C_RUNNER, serialFloodImage, TSVMM_BIN } from './lib/artifacts.ts';
import { ensureCompiled } from './lib/compiled.ts';
import { writeFlatRom } from './lib/flat-rom.ts';
import { findPeers, kvmtoolArgs, PeerFailure, qemuArgs } from './lib/peers.ts';
import { describeFailure, failureReason, runProcess } from './lib/process.ts';
import { summarize, table, type Summary } from './lib/stats.ts';
import type { BenchOptions, ChartPanel } from './lib/suite.ts';

const MEM_MIB = 64;
/** After the guest's byte: long enough for a VMM to finish starting (tsvmm: its worker's heap settles). */
const SETTLE_MS = 500;

export interface MemorySample {
  /** KiB. */
  rss: number;
  pss: number;
  private: number;
  anonymous: number;
  guestRss: number;
  guestPss: number;
  guestPrivate: number;
  guestAnonymous: number;
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
  interface Mapping { size: number; guestCandidate: boolean; rss: number; pss: number; private: number; anonymous: number }
  const mappings: Mapping[] = [];
  let current: Mapping | null = null;
  for (const line of text.split('\n')) {
    const header = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ (\d+)\s*(.*)$/.exec(line);
    if (header) {
      const size = Number(BigInt(`0x${header[2]}`) - BigInt(`0x${header[1]}`));
      const anonymous = header[4] === '0' && header[5] === '';
      current = { size, guestCandidate: anonymous && header[3]!.startsWith('rw') && size >= guestBytes && size <= guestBytes + MERGE_SLACK, rss: 0, pss: 0, private: 0, anonymous: 0 };
      mappings.push(current);
      continue;
    }
    const field = /^(Rss|Pss|Private_Clean|Private_Dirty|Anonymous):\s+(\d+) kB$/.exec(line);
    if (!field || !current) continue;
    if (field[1] === 'Rss') current.rss += Number(field[2]);
    else if (field[1] === 'Pss') current.pss += Number(field[2]);
    else if (field[1] === 'Anonymous') current.anonymous += Number(field[2]);
    else current.private += Number(field[2]);
  }
  const guest = mappings.filter((m) => m.guestCandidate).sort((a, b) => a.size - b.size)[0];
  const total = (pick: (m: Mapping) => number) => mappings.reduce((sum, m) => sum + pick(m), 0);
  return {
    rss: total((m) => m.rss),
    pss: total((m) => m.pss),
    private: total((m) => m.private),
    anonymous: total((m) => m.anonymous),
    guestRss: guest?.rss ?? 0,
    guestPss: guest?.pss ?? 0,
    guestPrivate: guest?.private ?? 0,
    guestAnonymous: guest?.anonymous ?? 0,
    guestFound: guest !== undefined,
  };
}

export interface MemoryRow {
  vmm: string;
  /** MiB, medians over runs (null: not installed, or failed). */
  rssBeyondGuest: Summary | null;
  pssBeyondGuest: Summary | null;
  privateBeyondGuest: Summary | null;
  anonymousBeyondGuest: Summary | null;
  /** Guest RAM resident, MiB (median). */
  guestResident: number | null;
  note: string;
  /** Why a peer has no figures though it is installed: "QEMU failed: …". */
  failed?: string;
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
    const tsvmm = [TSVMM_BIN, 'run', '--flat', flat, '--mem', `${MEM_MIB}M`];
    const subjects: Subject[] = [
      { vmm: 'tsvmm', command: process.execPath, args: tsvmm, note: `Node ${process.version}: main thread + vCPU thread` },
      { vmm: 'tsvmm --cpus 2', command: process.execPath, args: [...tsvmm, '--cpus', '2'], note: 'a second vCPU thread (it waits for a SIPI)' },
      { vmm: 'tsvmm + virtio', command: process.execPath, args: [...tsvmm, '--irqchip', '--device', 'virtio-rng'], note: 'the virtio I/O thread, serving virtio-rng (and the in-kernel irqchip it needs)' },
      { vmm: 'QEMU', command: peers.qemu.path, args: qemuArgs(rom, MEM_MIB), peer: true, note: peers.qemu.path ? `${peers.qemu.version ?? ''}, -M microvm` : peers.qemu.note },
      { vmm: 'kvmtool', command: peers.kvmtool.path, args: kvmtoolArgs(flat, MEM_MIB), peer: true, note: peers.kvmtool.path ? (peers.kvmtool.version ?? '') : peers.kvmtool.note },
      // It buffers the guest's output until it exits: sampled by time instead.
      { vmm: 'C baseline', command: C_RUNNER, args: ['-m', String(MEM_MIB), flat], note: 'bench/c/kvm-flat.c', sampleAfterMs: 200 },
    ];
    const present = subjects.filter((s) => s.command);
    const samples = new Map<string, MemorySample[]>(present.map((s) => [s.vmm, []]));
    /** Peers that failed, with why: not run again. */
    const failures = new Map<string, string>();
    for (let run = 0; run < options.runs; run++) {
      for (let k = 0; k < present.length; k++) {
        const subject = present[(run + k) % present.length]!;
        if (failures.has(subject.vmm)) continue;
        try {
          samples.get(subject.vmm)!.push(await sampleOnce(subject));
        } catch (error) {
          if (!subject.peer) throw error;
          failures.set(subject.vmm, PeerFailure.of(subject.vmm, error).message);
          options.log(`  ${failures.get(subject.vmm)}`);
        }
      }
      options.log(`  run ${run + 1}/${options.runs}: ${present.filter((s) => !failures.has(s.vmm)).map((s) => {
        const x = samples.get(s.vmm)!.at(-1)!;
        return `${s.vmm} ${((x.rss - x.guestRss) / 1024).toFixed(1)} MiB`;
      }).join(', ')}`);
    }
    const mib = (values: number[]) => summarize(values.map((kib) => kib / 1024));
    const rows = subjects.map((s): MemoryRow => {
      const x = samples.get(s.vmm);
      const failed = failures.get(s.vmm);
      if (!x || failed) {
        return { vmm: s.vmm, rssBeyondGuest: null, pssBeyondGuest: null, privateBeyondGuest: null, anonymousBeyondGuest: null, guestResident: null, note: s.note, ...(failed ? { failed } : {}) };
      }
      return {
        vmm: s.vmm,
        rssBeyondGuest: mib(x.map((m) => m.rss - m.guestRss)),
        pssBeyondGuest: mib(x.map((m) => m.pss - m.guestPss)),
        privateBeyondGuest: mib(x.map((m) => m.private - m.guestPrivate)),
        anonymousBeyondGuest: mib(x.map((m) => m.anonymous - m.guestAnonymous)),
        guestResident: mib(x.map((m) => m.guestRss)).median,
        note: s.note,
      };
    });
    return { guestMiB: MEM_MIB, runs: options.runs, rows };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

interface Subject {
  vmm: string;
  /** null: not installed. */
  command: string | null;
  args: string[];
  /** Another VMM compared with (its failure is a row, not the end of the suite). */
  peer?: boolean;
  note: string;
  /** Sample this long after spawn rather than after the guest's byte. */
  sampleAfterMs?: number;
}

/** Runs the guest once and reads its VMM's smaps while it idles; a peer's failure is a PeerFailure. */
async function sampleOnce(subject: Subject): Promise<MemorySample> {
  const result = await runProcess(subject.command!, subject.args, {
    timeoutMs: 60_000,
    ...(subject.sampleAfterMs !== undefined ? { whileRunningAfterMs: subject.sampleAfterMs } : {}),
    whileRunning: async (pid) => {
      await sleep(SETTLE_MS);
      return parseSmaps(readFileSync(`/proc/${pid}/smaps`, 'utf8'), MEM_MIB << 20);
    },
  });
  const sample = result.sample as MemorySample | undefined;
  if (!sample) throw subject.peer ? new PeerFailure(subject.vmm, failureReason(result)) : describeFailure(`memory: ${subject.vmm} (no guest output)`, result);
  if (!sample.guestFound) {
    const what = `no anonymous mapping of ${MEM_MIB} MiB (the guest RAM) in its /proc/PID/smaps`;
    throw subject.peer ? new PeerFailure(subject.vmm, what) : new Error(`memory: ${subject.vmm}: ${what}`);
  }
  return sample;
}

const range = (s: Summary) => `${s.median.toFixed(1)} (${s.min.toFixed(1)}–${s.max.toFixed(1)})`;

export function formatMemory(result: MemoryResult): string {
  return table(
    ['VMM', 'RSS beyond guest MiB', 'PSS beyond guest MiB', 'private beyond guest MiB', 'anonymous beyond guest MiB', 'guest RAM resident MiB', 'note'],
    result.rows.map((r) => {
      if (r.failed) return [r.vmm, 'failed', '—', '—', '—', '—', r.failed];
      return r.rssBeyondGuest
        ? [r.vmm, range(r.rssBeyondGuest), range(r.pssBeyondGuest!), range(r.privateBeyondGuest!), range(r.anonymousBeyondGuest!), r.guestResident!.toFixed(2), r.note]
        : [r.vmm, 'not installed', '—', '—', '—', '—', r.note];
    }),
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
          { series: 'PSS', value: r.pssBeyondGuest!.median, min: r.pssBeyondGuest!.min, max: r.pssBeyondGuest!.max },
          { series: 'private (USS)', value: r.privateBeyondGuest!.median, min: r.privateBeyondGuest!.min, max: r.privateBeyondGuest!.max },
          { series: 'anonymous', value: r.anonymousBeyondGuest!.median, min: r.anonymousBeyondGuest!.min, max: r.anonymousBeyondGuest!.max },
        ]
        : [{ series: 'RSS', value: 0, missing: r.failed ? 'failed' : 'not installed' }],
    })),
  }];
}
