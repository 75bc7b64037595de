// The blk-guest suite: virtio-blk as the default Linux guest sees it, under
// tsvmm and under QEMU -M microvm on the same kernel, initramfs and images
// (bench/lib/default-guest.ts). One boot per VMM configuration, with two
// virtio-blk disks on virtio-mmio: a raw image and a qcow2 image of the same
// random content, made once per suite run. In the guest, through its serial
// console (busybox tools only):
//   sequential  dd if=/dev/vdX of=/dev/null bs=64k iflag=direct, timed with
//               the guest's /proc/uptime: MB/s.
//   random      a shell loop of `dd bs=4k count=16 skip=RANDOM iflag=direct`:
//               4 KiB reads, 16 from each random offset, timed with the
//               guest's /proc/uptime: reads per second. Each dd is a fork and
//               exec (a fork takes ~0.2 s where the guest kernel is emulated,
//               on PVM; seconds on a loaded host), which 16 reads per dd
//               amortize, and the same loop reading /dev/zero is timed too:
//               the device's own share is the difference per read.
// QEMU runs with cache=none,aio=threads and with its default (writeback
// cache, threads); tsvmm with its default (the host's page cache; it has no
// O_DIRECT mode). The three guests boot at once and then take turns, run by
// run, one busy while the others idle at their prompt; each figure is the
// median of --runs runs; boot time is not in any figure. Goal: tsvmm ≥ QEMU
// on every row.
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { randomFillSync } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TSVMM_BIN } from './lib/artifacts.ts';
import { ensureCompiled } from './lib/compiled.ts';
import { defaultGuestFiles, qemuGuestArgs, tsvmmGuestArgs, type GuestDisk } from './lib/default-guest.ts';
import { parseDdRecordsIn, parseDiskList, parseTimed } from './lib/guest-output.ts';
import { GuestShell } from './lib/guest-shell.ts';
import { findQemu, PeerFailure } from './lib/peers.ts';
import { summarize, table, type Summary } from './lib/stats.ts';
import type { BenchOptions, ChartPanel } from './lib/suite.ts';
import { VmmProcess } from './lib/vmm-process.ts';

export interface BlkGuestLoads {
  /** Image size: both images hold this much random data. */
  diskBytes: number;
  /** 64 KiB reads per sequential run. */
  sequentialReads: number;
  /** dd processes per random run, each reading RANDOM_BURST 4 KiB blocks from a random offset. */
  randomSeeks: number;
}

export const DEFAULT_LOADS: BlkGuestLoads = { diskBytes: 256 << 20, sequentialReads: 256, randomSeeks: 16 };
/** 4 KiB reads per dd in the random loop. */
export const RANDOM_BURST = 16;

const BOOT_TIMEOUT_MS = 600_000;
const COMMAND_TIMEOUT_MS = 600_000;

export interface BlkGuestRow {
  vmm: string;
  image: 'raw' | 'qcow2';
  /** Sequential 64 KiB O_DIRECT reads, MB/s (10^6 bytes). */
  sequentialMBs: Summary | null;
  /** The random-read loop, reads per second. */
  randomIops: Summary | null;
  /** The same loop reading /dev/zero, iterations per second: the guest's own cost per read. */
  loopIops: Summary | null;
  /** Per random read beyond the loop's own cost, µs: the device's share. */
  deviceUs: Summary | null;
  /** tsvmm's median over this row's (QEMU rows only). */
  sequentialRatio: number | null;
  randomRatio: number | null;
  note: string;
  failed?: string;
}

export interface BlkGuestResult {
  runs: number;
  loads: BlkGuestLoads;
  rows: BlkGuestRow[];
}

export interface Configuration {
  vmm: string;
  command: string | null;
  args: string[];
  note: string;
  peer: boolean;
}

/** The guest's shell commands, kept short: the console echoes each one. */
export const guestCommands = {
  /**
   * Kernel messages off the console, errors only (a clocksource warning may
   * come mid-line on a slow host). The guest has no /proc/sys: dmesg -n.
   */
  quietKernel: 'dmesg -n 3',
  /** `disk SERIAL vdX` for every virtio-blk disk. */
  listDisks: 'for d in /sys/block/vd*; do read s < $d/serial; echo "disk $s ${d##*/}"; done',
  /** `seqread COUNT START END` after dd's own lines. */
  sequential: (device: string, reads: number) =>
    `read a _ < /proc/uptime; dd if=/dev/${device} of=/dev/null bs=64k iflag=direct count=${reads}; read b _ < /proc/uptime; echo "seqread ${reads} $a $b"`,
  /**
   * `LABEL READS START END`: `seeks` dd processes, each reading RANDOM_BURST
   * 4 KiB blocks from a random 4 KiB offset below `units` - RANDOM_BURST
   * (ash's RANDOM is 15 bits: two of them make 30).
   */
  randomLoop: (label: string, source: string, seeks: number, units: number, direct: boolean) =>
    `read a _ < /proc/uptime; i=0; while [ $i -lt ${seeks} ]; do dd if=${source} of=/dev/null bs=4k count=${RANDOM_BURST} skip=$(((RANDOM*32768+RANDOM)%${units - RANDOM_BURST}))${direct ? ' iflag=direct' : ''} 2>/dev/null; i=$((i+1)); done; read b _ < /proc/uptime; echo "${label} $((i*${RANDOM_BURST})) $a $b"`,
};

function makeImages(dir: string, bytes: number): GuestDisk[] {
  const raw = join(dir, 'disk.raw');
  const fd = openSync(raw, 'w');
  const chunk = Buffer.alloc(1 << 20);
  for (let done = 0; done < bytes; done += chunk.length) {
    randomFillSync(chunk);
    writeSync(fd, chunk, 0, Math.min(chunk.length, bytes - done));
  }
  closeSync(fd);
  const qcow2 = join(dir, 'disk.qcow2');
  const r = spawnSync(process.execPath, [TSVMM_BIN, 'img', 'convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tsvmm img convert: ${r.stderr.trim() || `status ${r.status}`}`);
  // Read-only: the loads only read, and the VMMs have the images open at the same time.
  return [{ path: raw, format: 'raw', serial: 'raw', readonly: true }, { path: qcow2, format: 'qcow2', serial: 'qcow2', readonly: true }];
}

export interface ImageSamples {
  sequentialMBs: number[];
  randomIops: number[];
  loopIops: number[];
  deviceUs: number[];
}

/** A configuration's guest, booted to its shell, with its disks found. */
interface BootedGuest {
  config: Configuration;
  vmm: VmmProcess;
  shell: GuestShell;
  /** Serial → the guest's device name (vda, vdb). */
  devices: Map<string, string>;
}

async function bootGuest(config: Configuration, disks: readonly GuestDisk[], log: (line: string) => void): Promise<BootedGuest> {
  const vmm = new VmmProcess(config.vmm, config.command!, config.args);
  try {
    const shell = new GuestShell(vmm);
    const bootedNs = await shell.waitForPrompt(BOOT_TIMEOUT_MS);
    log(`  ${config.vmm}: shell after ${(bootedNs / 1e9).toFixed(1)} s`);
    await shell.run(guestCommands.quietKernel, COMMAND_TIMEOUT_MS);
    const devices = parseDiskList((await shell.run(guestCommands.listDisks, COMMAND_TIMEOUT_MS)).lines);
    for (const disk of disks) {
      if (!devices.has(disk.serial)) throw new Error(`${config.vmm}: the guest has no disk with serial "${disk.serial}" (it has: ${[...devices].map(([s, d]) => `${d}=${s}`).join(', ') || 'none'})`);
    }
    return { config, vmm, shell, devices };
  } catch (error) {
    await vmm.kill();
    throw error;
  }
}

/** One run of every load on one image, in a booted guest; the samples go into `s`. */
async function measureRun(guest: BootedGuest, disk: GuestDisk, loads: BlkGuestLoads, s: ImageSamples): Promise<void> {
  const { config, shell } = guest;
  const device = guest.devices.get(disk.serial)!;
  const units = Math.floor(loads.diskBytes / 4096);
  const seqLines = (await shell.run(guestCommands.sequential(device, loads.sequentialReads), COMMAND_TIMEOUT_MS)).lines;
  const seq = parseTimed(seqLines, 'seqread');
  const records = parseDdRecordsIn(seqLines);
  if (!seq || seq.seconds <= 0 || records?.whole !== loads.sequentialReads) {
    throw new Error(`${config.vmm}: dd on ${device} did not read ${loads.sequentialReads} blocks in a measurable time: ${seqLines.slice(-3).join(' / ')}`);
  }
  const random = parseTimed((await shell.run(guestCommands.randomLoop('randread', `/dev/${device}`, loads.randomSeeks, units, true), COMMAND_TIMEOUT_MS)).lines, 'randread');
  const loop = parseTimed((await shell.run(guestCommands.randomLoop('zeroread', '/dev/zero', loads.randomSeeks, units, false), COMMAND_TIMEOUT_MS)).lines, 'zeroread');
  if (!random || !loop || random.seconds <= 0 || loop.seconds <= 0) throw new Error(`${config.vmm}: the random-read loop on ${device} printed no timing`);
  s.sequentialMBs.push((seq.count * 65536) / seq.seconds / 1e6);
  s.randomIops.push(random.count / random.seconds);
  s.loopIops.push(loop.count / loop.seconds);
  s.deviceUs.push(((random.seconds - loop.seconds) / random.count) * 1e6);
}

const emptySamples = (): ImageSamples => ({ sequentialMBs: [], randomIops: [], loopIops: [], deviceUs: [] });

/**
 * Boots every configuration at once, then measures them in turns, run by
 * run (one guest busy at a time, the others idle at their prompt), so that a
 * change in the host's load falls on all of them as in the other suites. A
 * peer that fails to boot or to measure is a row saying why; tsvmm failing
 * ends the suite.
 */
export async function measureInTurns(configs: readonly Configuration[], disks: readonly GuestDisk[], loads: BlkGuestLoads, runs: number, log: (line: string) => void): Promise<Map<Configuration, Map<string, ImageSamples> | string>> {
  const results = new Map<Configuration, Map<string, ImageSamples> | string>();
  const runnable = configs.filter((c) => c.command);
  const boots = await Promise.allSettled(runnable.map((c) => bootGuest(c, disks, log)));
  // Every booted guest is in `guests` before anything can throw, so that all are killed.
  const guests = boots.flatMap((boot) => (boot.status === 'fulfilled' ? [boot.value] : []));
  try {
    boots.forEach((boot, i) => {
      const config = runnable[i]!;
      if (boot.status === 'fulfilled') {
        results.set(config, new Map(disks.map((d) => [d.format, emptySamples()])));
      } else if (config.peer) {
        results.set(config, PeerFailure.of(config.vmm, boot.reason).message);
        log(`  ${results.get(config) as string}`);
      } else {
        throw boot.reason;
      }
    });
    for (let run = 0; run < runs; run++) {
      for (const guest of [...guests]) {
        try {
          const samples = results.get(guest.config) as Map<string, ImageSamples>;
          for (const disk of disks) {
            const s = samples.get(disk.format)!;
            await measureRun(guest, disk, loads, s);
            log(`  ${guest.config.vmm} ${disk.format} run ${run + 1}/${runs}: ${s.sequentialMBs.at(-1)!.toFixed(1)} MB/s sequential, ${s.randomIops.at(-1)!.toFixed(1)} random reads/s (loop alone ${s.loopIops.at(-1)!.toFixed(1)}/s)`);
          }
        } catch (error) {
          if (!guest.config.peer) throw error;
          results.set(guest.config, PeerFailure.of(guest.config.vmm, error).message);
          log(`  ${results.get(guest.config) as string}`);
          guests.splice(guests.indexOf(guest), 1);
          await guest.vmm.kill();
        }
      }
    }
    return results;
  } finally {
    await Promise.all(guests.map((g) => g.vmm.kill()));
  }
}

export async function benchBlkGuest(options: BenchOptions, loads: BlkGuestLoads = DEFAULT_LOADS): Promise<BlkGuestResult> {
  await ensureCompiled(options.log);
  const files = await defaultGuestFiles();
  const dir = mkdtempSync(join(tmpdir(), 'tsvmm-bench-blk-guest-'));
  try {
    const disks = makeImages(dir, loads.diskBytes);
    const qemu = findQemu();
    const qemuNote = qemu.path ? (qemu.version?.replace(/^QEMU emulator version (\S+).*/, 'QEMU $1') ?? 'QEMU') : qemu.note;
    const configurations: Configuration[] = [
      { vmm: 'tsvmm', command: process.execPath, args: tsvmmGuestArgs(disks), note: 'default (host page cache)', peer: false },
      { vmm: 'QEMU cache=none,aio=threads', command: qemu.path, args: qemuGuestArgs(files, disks, 'cache=none,aio=threads'), note: qemuNote, peer: true },
      { vmm: 'QEMU default', command: qemu.path, args: qemuGuestArgs(files, disks), note: qemu.path ? `${qemuNote} (cache=writeback, aio=threads)` : qemuNote, peer: true },
    ];
    const measured = await measureInTurns(configurations, disks, loads, options.runs, options.log);
    const rows: BlkGuestRow[] = [];
    for (const config of configurations) {
      const result = measured.get(config);
      const failed = typeof result === 'string' ? result : undefined;
      for (const disk of disks) {
        const s = typeof result === 'object' ? result.get(disk.format) : undefined;
        rows.push({
          vmm: config.vmm, image: disk.format,
          sequentialMBs: s ? summarize(s.sequentialMBs) : null,
          randomIops: s ? summarize(s.randomIops) : null,
          loopIops: s ? summarize(s.loopIops) : null,
          deviceUs: s ? summarize(s.deviceUs) : null,
          sequentialRatio: null, randomRatio: null,
          note: config.note,
          ...(failed ? { failed } : {}),
        });
      }
    }
    return { runs: options.runs, loads, rows: withRatios(rows) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Each peer row gets tsvmm's median over its own, for the same image. */
export function withRatios(rows: BlkGuestRow[]): BlkGuestRow[] {
  return rows.map((row) => {
    if (row.vmm === 'tsvmm') return row;
    const ours = rows.find((r) => r.vmm === 'tsvmm' && r.image === row.image);
    const ratio = (pick: (r: BlkGuestRow) => Summary | null) => {
      const a = ours && pick(ours);
      const b = pick(row);
      return a && b && b.median > 0 ? a.median / b.median : null;
    };
    return { ...row, sequentialRatio: ratio((r) => r.sequentialMBs), randomRatio: ratio((r) => r.randomIops) };
  });
}

const range = (s: Summary | null, digits: number) => (s ? `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}–${s.max.toFixed(digits)})` : '—');
const times = (ratio: number | null) => (ratio === null ? '—' : `${ratio.toFixed(2)}×`);

export function formatBlkGuest(result: BlkGuestResult): string {
  const text = table(
    ['VMM', 'image', '64 KiB seq. MB/s', '4 KiB random reads/s', 'loop alone /s', 'device µs/read', 'tsvmm / this: seq.', 'random', 'note'],
    result.rows.map((r) => (r.sequentialMBs
      ? [r.vmm, r.image, range(r.sequentialMBs, 1), range(r.randomIops, 1), range(r.loopIops, 1), range(r.deviceUs, 0), times(r.sequentialRatio), times(r.randomRatio), r.note]
      : [r.vmm, r.image, '—', '—', '—', '—', '—', '—', r.failed ?? r.note])),
  );
  const l = result.loads;
  return `${text}\n\n${l.diskBytes / 2 ** 20} MiB images; per run ${l.sequentialReads} sequential 64 KiB reads and ${l.randomSeeks} random offsets × ${RANDOM_BURST} 4 KiB reads, ${result.runs} runs per VMM, the VMMs taking turns run by run (one boot each). Goal: tsvmm / QEMU ≥ 1.0× on every row.`;
}

export function chartBlkGuest(result: BlkGuestResult): ChartPanel[] {
  const bar = (series: string, s: Summary | null, failed?: string) =>
    (s ? { series, value: s.median, min: s.min, max: s.max } : { series, value: 0, missing: failed ?? 'not installed' });
  const images = ['raw', 'qcow2'] as const;
  return [
    {
      title: 'blk-guest: 64 KiB O_DIRECT sequential reads in the default guest',
      unit: 'MB/s',
      better: 'higher',
      groups: images.map((image) => ({ label: image, bars: result.rows.filter((r) => r.image === image).map((r) => bar(r.vmm, r.sequentialMBs, r.failed)) })),
    },
    {
      title: 'blk-guest: 4 KiB O_DIRECT random reads (a dd per read) in the default guest',
      unit: 'reads/s',
      better: 'higher',
      groups: images.map((image) => ({ label: image, bars: result.rows.filter((r) => r.image === image).map((r) => bar(r.vmm, r.randomIops, r.failed)) })),
    },
  ];
}
