// The blk suite: virtio-blk read throughput through the whole queue path
// (firmware/blkload.S, a ring-3 driver keeping a batch of requests in flight
// on the first virtio-mmio device; notification by ioeventfd, completion
// polled in the used ring) against plain pread(2) of the same file from Node,
// measured alternately in the same run. Each tsvmm figure is
// (time(N requests) - time(0)) / N, which leaves out boot and device setup.
// Goals: 64 KiB sequential >= 0.8x pread, 4 KiB random >= 0.5x pread.
// Each load is also run in-process: the same queue and device code driven by
// a driver in this thread, which separates the device path's own cost from
// the VM's (exits, wake-ups, a guest that polls).
// A third row is the notify cost: one 4 KiB request per notification, with
// ioeventfd/irqfd and with both turned off (the notify exits to tsvmm).
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomFillSync } from 'node:crypto';
import { VirtioBlk } from '../src/devices/virtio/blk.ts';
import { MmioRegister, VirtioMmio } from '../src/devices/virtio/mmio.ts';
import { VirtioDeviceRunner } from '../src/devices/virtio/runner.ts';
import { VirtioSharedState } from '../src/devices/virtio/shared-state.ts';
import { DescriptorFlag, Status, VIRTQ_AVAIL_F_NO_INTERRUPT } from '../src/devices/virtio/spec.ts';
import { VirtioTransport } from '../src/devices/virtio/transport.ts';
import { Machine } from '../src/machine/machine.ts';
import { HostRam } from '../src/memory/host-ram.ts';
import { openDisk } from '../src/storage/block-backend.ts';
import { buildArtifacts, firmwarePath } from './lib/artifacts.ts';
import { summarize, table, type Summary } from './lib/stats.ts';
import type { ChartPanel } from './lib/suite.ts';

export interface BlkOptions {
  runs: number;
  log?: (line: string) => void;
  /** Disk image size (default 128 MiB): larger than any run reads, small enough to stay in the page cache. */
  diskBytes?: number;
}

export interface BlkRow {
  load: string;
  /** "VM" (a guest driver, end to end) or "in-process" (the same device path without a VM). */
  path: 'VM' | 'in-process';
  requestBytes: number;
  requests: number;
  /** MB/s (10^6 bytes). */
  tsvmm: Summary;
  pread: Summary;
  ratio: number;
  goal: number;
}

export interface NotifyRow {
  path: string;
  /** µs per request with one request per notification. */
  perRequestUs: Summary;
}

interface Load {
  name: string;
  requestBytes: number;
  requests: number;
  depth: number;
  random: boolean;
  goal: number;
}

const LOADS: Load[] = [
  { name: '64 KiB sequential read', requestBytes: 65536, requests: 4000, depth: 64, random: false, goal: 0.8 },
  { name: '4 KiB random read', requestBytes: 4096, requests: 16000, depth: 64, random: true, goal: 0.5 },
];

/** A copy of blkload.bin with its parameter block set (firmware/blkload.S). */
function blkloadImage(dir: string, load: { requests: number; requestBytes: number; depth: number; random: boolean }): string {
  const image = Buffer.from(readFileSync(firmwarePath('blkload')));
  if (image.readUInt32LE(8) !== 0x42565354) throw new Error('blkload.bin: parameter block magic not found');
  image.writeUInt32LE(load.requests, 12);
  image.writeUInt32LE(load.requestBytes, 16);
  image.writeUInt32LE(load.depth, 20);
  image.writeUInt32LE(load.random ? 1 : 0, 24);
  const path = join(dir, `blkload-${load.requests}-${load.requestBytes}-${load.depth}-${load.random ? 'r' : 's'}.bin`);
  const fd = openSync(path, 'w');
  writeSync(fd, image);
  closeSync(fd);
  return path;
}

/** Runs blkload under tsvmm; returns the vCPU thread's run time in ns. */
async function runGuest(image: string, disk: string, eventFds: boolean): Promise<number> {
  const devNull = openSync('/dev/null', 'w');
  const machine = Machine.create({
    memoryBytes: 64 << 20, flat: { path: image }, irqchip: true, consoleFd: devNull,
    virtio: [{ kind: 'blk', path: disk, format: 'raw' }],
    ...(eventFds ? {} : { ioeventfd: false, irqfd: false }),
  });
  try {
    const result = await machine.run();
    if (result.stop.cause !== 'debug-exit' || result.stop.status !== 1) {
      throw new Error(`blkload ended with ${result.stop.cause} ${result.stop.status}: ${result.stop.message ?? ''}`);
    }
    const errors = (result.virtio[0] as { errors?: number } | undefined)?.errors;
    if (errors) throw new Error(`blkload: the device refused ${errors} requests`);
    return result.runNs;
  } finally {
    machine.close();
    closeSync(devNull);
  }
}

/**
 * The same reads with pread(2) from Node; returns ns. They rotate through as
 * many buffers as the guest keeps requests in flight, so both sides write the
 * same amount of memory (one hot 64 KiB buffer would stay in the CPU cache,
 * which guest buffers cannot).
 */
function runPread(disk: string, load: Load, diskBytes: number): number {
  const fd = openSync(disk, 'r');
  const buffers = Array.from({ length: load.depth }, () => Buffer.alloc(load.requestBytes));
  const units = Math.floor(diskBytes / load.requestBytes);
  const offsets = Array.from({ length: load.requests }, (_, i) =>
    (load.random ? Math.floor(Math.random() * units) : i % units) * load.requestBytes);
  const started = process.hrtime.bigint();
  for (let i = 0; i < offsets.length; i++) readSync(fd, buffers[i % buffers.length]!, 0, load.requestBytes, offsets[i]);
  const ns = Number(process.hrtime.bigint() - started);
  closeSync(fd);
  return ns;
}

/**
 * The same load through the same queue and device code without a VM: a
 * driver in this thread writes the chains into guest memory and notifies the
 * runner directly. It shows what the device path costs by itself, apart from
 * guest exits, the I/O thread's wake-ups and the guest's polling.
 */
function runInProcess(disk: string, load: Load, diskBytes: number): number {
  const QUEUE = 256;
  const DESCRIPTORS = 0x10_0000;
  const AVAILABLE = 0x10_1000;
  const USED = 0x10_2000;
  const HEADERS = 0x10_3000;
  const STATUSES = 0x10_4000;
  const DATA = 0x100_0000;
  const ram = HostRam.allocate([{ guestAddress: 0, size: 32 << 20 }]);
  const memory = ram.memory;
  const blk = new VirtioBlk(openDisk(disk, { format: 'raw', readOnly: true }), { name: 'blk0', serial: 'bench' });
  const state = VirtioSharedState.create(1);
  const runner = new VirtioDeviceRunner(blk, state, memory, { trigger() {} });
  const mmio = new VirtioMmio(new VirtioTransport(blk.info, state, { notify: (q) => runner.notify(q), statusChanged: () => runner.sync() }));
  const register = (offset: number, value: number) => mmio.write(offset, 4, value);
  register(MmioRegister.STATUS, Status.ACKNOWLEDGE | Status.DRIVER);
  register(MmioRegister.DRIVER_FEATURES_SEL, 1);
  register(MmioRegister.DRIVER_FEATURES, 1); // VERSION_1
  register(MmioRegister.STATUS, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK);
  register(MmioRegister.QUEUE_NUM, QUEUE);
  register(MmioRegister.QUEUE_DESC_LOW, DESCRIPTORS);
  register(MmioRegister.QUEUE_DRIVER_LOW, AVAILABLE);
  register(MmioRegister.QUEUE_DEVICE_LOW, USED);
  register(MmioRegister.QUEUE_READY, 1);
  memory.writeU16(AVAILABLE, VIRTQ_AVAIL_F_NO_INTERRUPT);
  register(MmioRegister.STATUS, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK);
  // The chains blkload.S builds: slot i is header 3i -> data 3i+1 -> status 3i+2.
  for (let i = 0; i < load.depth; i++) {
    const at = DESCRIPTORS + 48 * i;
    memory.writeU64(at, BigInt(HEADERS + 16 * i));
    memory.writeU32(at + 8, 16);
    memory.writeU32(at + 12, DescriptorFlag.NEXT | ((3 * i + 1) << 16));
    memory.writeU64(at + 16, BigInt(DATA + load.requestBytes * i));
    memory.writeU32(at + 24, load.requestBytes);
    memory.writeU32(at + 28, DescriptorFlag.NEXT | DescriptorFlag.WRITE | ((3 * i + 2) << 16));
    memory.writeU64(at + 32, BigInt(STATUSES + i));
    memory.writeU32(at + 40, 1);
    memory.writeU32(at + 44, DescriptorFlag.WRITE);
  }
  const units = Math.floor(diskBytes / load.requestBytes);
  const sectorsPerRequest = load.requestBytes / 512;
  let available = 0;
  const started = process.hrtime.bigint();
  for (let done = 0; done < load.requests; done += load.depth) {
    const batch = Math.min(load.depth, load.requests - done);
    for (let i = 0; i < batch; i++) {
      const unit = load.random ? Math.floor(Math.random() * units) : (done + i) % units;
      memory.writeU32(HEADERS + 16 * i, 0);
      memory.writeU32(HEADERS + 16 * i + 8, unit * sectorsPerRequest);
      memory.writeU16(AVAILABLE + 4 + 2 * (available % QUEUE), 3 * i);
      available = (available + 1) & 0xffff;
    }
    memory.writeU16(AVAILABLE + 2, available);
    mmio.write(MmioRegister.QUEUE_NOTIFY, 4, 0);
  }
  const ns = Number(process.hrtime.bigint() - started);
  if (memory.readU16(USED + 2) !== available || state.errors) throw new Error('in-process blk run: requests went missing');
  blk.close();
  return ns;
}

function makeDisk(dir: string, bytes: number): string {
  const path = join(dir, 'disk.img');
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(1 << 20);
  for (let done = 0; done < bytes; done += chunk.length) {
    randomFillSync(chunk);
    writeSync(fd, chunk);
  }
  closeSync(fd);
  return path;
}

export async function benchBlk(options: BlkOptions): Promise<{ throughput: BlkRow[]; notify: NotifyRow[] }> {
  buildArtifacts();
  const log = options.log ?? (() => {});
  const diskBytes = options.diskBytes ?? 128 << 20;
  const dir = mkdtempSync(join(tmpdir(), 'tsvmm-bench-blk-'));
  try {
    const disk = makeDisk(dir, diskBytes);
    const throughput: BlkRow[] = [];
    for (const load of LOADS) {
      const setup = await runGuest(blkloadImage(dir, { ...load, requests: 0 }), disk, true);
      const image = blkloadImage(dir, load);
      const bytes = load.requests * load.requestBytes;
      const ours: number[] = [];
      const pread: number[] = [];
      for (let run = 0; run < options.runs; run++) {
        const ns = Math.max(1, (await runGuest(image, disk, true)) - setup);
        ours.push((bytes / ns) * 1e3);
        pread.push((bytes / runPread(disk, load, diskBytes)) * 1e3);
        log(`  ${load.name} run ${run + 1}/${options.runs}: tsvmm ${ours[run]!.toFixed(0)} MB/s, pread ${pread[run]!.toFixed(0)} MB/s`);
      }
      const t = summarize(ours);
      const p = summarize(pread);
      throughput.push({ load: load.name, path: 'VM', requestBytes: load.requestBytes, requests: load.requests, tsvmm: t, pread: p, ratio: t.median / p.median, goal: load.goal });

      const inProcess: number[] = [];
      const preadAgain: number[] = [];
      for (let run = 0; run < options.runs; run++) {
        inProcess.push((bytes / runInProcess(disk, load, diskBytes)) * 1e3);
        preadAgain.push((bytes / runPread(disk, load, diskBytes)) * 1e3);
        log(`  ${load.name} in-process run ${run + 1}/${options.runs}: device path ${inProcess[run]!.toFixed(0)} MB/s, pread ${preadAgain[run]!.toFixed(0)} MB/s`);
      }
      const d = summarize(inProcess);
      const p2 = summarize(preadAgain);
      throughput.push({ load: load.name, path: 'in-process', requestBytes: load.requestBytes, requests: load.requests, tsvmm: d, pread: p2, ratio: d.median / p2.median, goal: load.goal });
    }

    // One request per notification: what a notify and an interrupt cost by each path.
    const single = { requests: 300, requestBytes: 4096, depth: 1, random: false };
    const notify: NotifyRow[] = [];
    for (const [path, eventFds] of [['ioeventfd + irqfd', true], ['exit + KVM_IRQ_LINE', false]] as const) {
      const setup = await runGuest(blkloadImage(dir, { ...single, requests: 0 }), disk, eventFds);
      const image = blkloadImage(dir, single);
      const samples: number[] = [];
      for (let run = 0; run < options.runs; run++) {
        samples.push(((await runGuest(image, disk, eventFds)) - setup) / single.requests / 1e3);
        log(`  notify via ${path} run ${run + 1}/${options.runs}: ${samples[run]!.toFixed(1)} µs/request`);
      }
      notify.push({ path, perRequestUs: summarize(samples) });
    }
    return { throughput, notify };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function chartBlk(result: { throughput: BlkRow[]; notify: NotifyRow[] }): ChartPanel[] {
  return [{
    title: 'blk: virtio-blk reads against pread(2)',
    unit: 'MB/s',
    better: 'higher',
    groups: result.throughput.map((t) => ({
      label: `${t.requestBytes / 1024} KiB ${t.load.includes('random') ? 'random' : 'seq.'}, ${t.path}`,
      bars: [
        { series: 'pread', value: t.pread.median, min: t.pread.min, max: t.pread.max },
        { series: 'tsvmm', value: t.tsvmm.median, min: t.tsvmm.min, max: t.tsvmm.max },
      ],
    })),
  }];
}

export function formatBlk(result: { throughput: BlkRow[]; notify: NotifyRow[] }): string {
  const range = (s: Summary, digits: number) => `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}–${s.max.toFixed(digits)})`;
  const throughput = table(
    ['virtio-blk load', 'path', 'tsvmm MB/s', 'pread MB/s', 'tsvmm / pread', 'goal'],
    result.throughput.map((r) => [r.load, r.path, range(r.tsvmm, 0), range(r.pread, 0), `${r.ratio.toFixed(2)}×`, `≥ ${r.goal}×`]),
  );
  const notify = table(
    ['notify path (1 request per notify)', 'µs per request'],
    result.notify.map((r) => [r.path, range(r.perRequestUs, 1)]),
  );
  return `${throughput}\n\n${notify}`;
}
