// The boot suite: how long the default Linux guest (guests/default) takes
// from spawn() to /init's banner and to the shell's prompt, under tsvmm
// (`tsvmm run`, its default machine for that guest) and under QEMU -M microvm
// with the same vmlinux, initramfs and command line (bench/lib/default-guest.ts).
// The VMMs take turns run by run. The banner also gives the guest's uptime
// when /init ran (CLOCK_BOOTTIME, which starts at the kernel's timekeeping
// set-up): spawn to banner less that is the VMM's start, its firmware and
// the kernel's earliest set-up. Goal: tsvmm ≤ 1.0× QEMU.
// On a PVM host the guest kernel runs under KVM's instruction emulator: a
// boot takes a minute or more, so a run of this suite takes minutes.
import { ensureCompiled } from './lib/compiled.ts';
import { BANNER, defaultGuestFiles, qemuGuestArgs, tsvmmGuestArgs } from './lib/default-guest.ts';
import { GuestShell } from './lib/guest-shell.ts';
import { findQemu, PeerFailure } from './lib/peers.ts';
import { summarize, table, type Summary } from './lib/stats.ts';
import type { BenchOptions, ChartPanel } from './lib/suite.ts';
import { VmmProcess } from './lib/vmm-process.ts';

export const BOOT_GOAL = 1.0;
/** One boot's limit: a loaded PVM host has taken over four minutes. */
const BOOT_TIMEOUT_MS = 600_000;

export interface BootSample {
  /** s from spawn() to /init's banner. */
  bannerS: number;
  /** s from spawn() to the shell's prompt. */
  promptS: number;
  /** The guest's uptime when /init ran, s (the banner's "boot time"; it starts at the kernel's timekeeping set-up). */
  kernelS: number;
}

export interface BootRow {
  vmm: string;
  bannerS: Summary | null;
  promptS: Summary | null;
  kernelS: Summary | null;
  note: string;
  /** Why a peer has no figures though it is installed: "QEMU failed: …". */
  failed?: string;
}

export interface BootResult {
  runs: number;
  rows: BootRow[];
  /** tsvmm's medians over QEMU's (null without QEMU figures). */
  bannerRatio: number | null;
  promptRatio: number | null;
  goal: number;
}

/** The banner's "boot time: 41.23 s since the kernel started". */
export function parseKernelBootTime(line: string): number | null {
  const m = /^boot time: (\d+(?:\.\d+)?) s since the kernel started$/.exec(line.trim());
  return m ? Number(m[1]) : null;
}

/** One boot to the shell prompt; the process is killed after. */
export async function timeBoot(what: string, command: string, args: string[]): Promise<BootSample> {
  const vmm = new VmmProcess(what, command, args);
  try {
    const banner = await vmm.waitForLine((l) => BANNER.test(l), BOOT_TIMEOUT_MS, 0, "/init's banner");
    const uptime = await vmm.waitForLine((l) => parseKernelBootTime(l) !== null, BOOT_TIMEOUT_MS, banner.index, "the banner's boot time");
    const promptNs = await new GuestShell(vmm).waitForPrompt(BOOT_TIMEOUT_MS);
    return { bannerS: banner.atNs / 1e9, promptS: promptNs / 1e9, kernelS: parseKernelBootTime(uptime.text)! };
  } finally {
    await vmm.kill();
  }
}

export async function benchBoot(options: BenchOptions): Promise<BootResult> {
  await ensureCompiled(options.log);
  const files = await defaultGuestFiles();
  const qemu = findQemu();
  const subjects = [
    { vmm: 'tsvmm', command: process.execPath, args: tsvmmGuestArgs([]), note: 'tsvmm run (compiled dist/), its default machine', peer: false },
    {
      vmm: 'QEMU', command: qemu.path, args: qemuGuestArgs(files, []), peer: true,
      note: qemu.path ? `${qemu.version?.replace(/^QEMU emulator version (\S+).*/, 'QEMU $1') ?? 'QEMU'}, -M microvm` : qemu.note,
    },
  ];
  const samples = new Map<string, BootSample[]>(subjects.map((s) => [s.vmm, []]));
  const failures = new Map<string, string>();
  for (let run = 0; run < options.runs; run++) {
    for (const subject of subjects) {
      if (!subject.command || failures.has(subject.vmm)) continue;
      try {
        const sample = await timeBoot(subject.vmm, subject.command, subject.args);
        samples.get(subject.vmm)!.push(sample);
        options.log(`  run ${run + 1}/${options.runs} ${subject.vmm}: banner ${sample.bannerS.toFixed(1)} s, prompt ${sample.promptS.toFixed(1)} s (guest uptime at /init ${sample.kernelS.toFixed(1)} s)`);
      } catch (error) {
        if (!subject.peer) throw error;
        const failure = PeerFailure.of(subject.vmm, error);
        failures.set(subject.vmm, failure.message);
        options.log(`  ${failure.message}`);
      }
    }
  }
  const summary = (vmm: string, pick: (s: BootSample) => number) => {
    const values = samples.get(vmm)!.map(pick);
    return values.length ? summarize(values) : null;
  };
  const rows: BootRow[] = subjects.map((s) => ({
    vmm: s.vmm,
    bannerS: summary(s.vmm, (x) => x.bannerS),
    promptS: summary(s.vmm, (x) => x.promptS),
    kernelS: summary(s.vmm, (x) => x.kernelS),
    note: s.note,
    ...(failures.has(s.vmm) ? { failed: failures.get(s.vmm)! } : {}),
  }));
  const ratio = (pick: (r: BootRow) => Summary | null) => {
    const ours = pick(rows[0]!);
    const theirs = pick(rows[1]!);
    return ours && theirs ? ours.median / theirs.median : null;
  };
  return { runs: options.runs, rows, bannerRatio: ratio((r) => r.bannerS), promptRatio: ratio((r) => r.promptS), goal: BOOT_GOAL };
}

const range = (s: Summary | null) => (s ? `${s.median.toFixed(1)} (${s.min.toFixed(1)}–${s.max.toFixed(1)})` : '—');

export function formatBoot(result: BootResult): string {
  const text = table(
    ['VMM', 'banner s', 'prompt s', 'guest uptime at /init s', 'note'],
    result.rows.map((r) => (r.bannerS
      ? [r.vmm, range(r.bannerS), range(r.promptS), range(r.kernelS), r.note]
      : [r.vmm, '—', '—', '—', r.failed ?? r.note])),
  );
  if (result.bannerRatio === null || result.promptRatio === null) return `${text}\n\nNo QEMU figures: no ratio.`;
  const met = result.promptRatio <= result.goal && result.bannerRatio <= result.goal;
  return `${text}\n\ntsvmm / QEMU: banner ${result.bannerRatio.toFixed(2)}×, prompt ${result.promptRatio.toFixed(2)}× (goal ≤ ${result.goal.toFixed(1)}×: ${met ? 'met' : 'not met'}).`;
}

export function chartBoot(result: BootResult): ChartPanel[] {
  const bar = (series: string, s: Summary | null, failed?: string) =>
    (s ? { series, value: s.median, min: s.min, max: s.max } : { series, value: 0, missing: failed ?? 'not installed' });
  return [{
    title: 'boot: the default Linux guest from spawn()',
    unit: 's',
    better: 'lower',
    groups: [
      { label: "/init's banner", bars: result.rows.map((r) => bar(r.vmm, r.bannerS, r.failed)) },
      { label: 'shell prompt', bars: result.rows.map((r) => bar(r.vmm, r.promptS, r.failed)) },
    ],
  }];
}
