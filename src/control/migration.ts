// Moving a running VM's state out of this process and into another: QEMU's
// `migrate` and `-incoming`. One stream format (src/snapshot/) serves a
// snapshot file (`exec:cat > FILE`, `file:FILE`) and live migration (tcp:).
//
// Outgoing is pre-copy, as QEMU's and Cloud Hypervisor's: with dirty logging
// on in every memory slot (KVM sees the vCPUs' writes; the DirtyPageLog sees
// the virtio I/O thread's), all of RAM goes out while the guest runs, then
// again each page written since, round after round, until what is left can
// go within the downtime limit at the rate measured so far. Then the machine
// pauses, the last pages and every vCPU's and device's state go out, and the
// destination resumes the guest. The source ends as QEMU's does: postmigrate,
// its disks let go for the destination.
//
// A block migration (QMP migrate's `blk`, or the `block` capability) also
// sends every writable disk: all of it before RAM round 0, read through the
// virtio I/O thread that owns the disk, then in each round the chunks the
// guest wrote since (the devices mark them in a DiskDirtyLog), and the last
// ones with the machine paused, before its state. The destination writes
// them into its own images, which must have the same virtual sizes.
import { InputError } from '../errors.ts';
import { MemoryRegionFlag, ofdByteLocks } from '../kvm/index.ts';
import type { MachineConfig } from '../machine/config.ts';
import type { Machine } from '../machine/machine.ts';
import { PAGE_SIZE } from '../memory/dirty-pages.ts';
import type { MigrationInfo, MigrationParameters, MigrationStatus } from '../qmp/target.ts';
import { basename, dirname, join } from 'node:path';
import type { BlockBackend } from '../storage/block-backend.ts';
import { chunkCount, DISK_CHUNK_SIZE, DiskDirtyLog } from '../storage/dirty-chunks.ts';
import { openDisk } from '../storage/open-disk.ts';
import { mapRamFile, nonZeroPages, parseMigrationUri, receiveSnapshot, sendSnapshot, writeRamFile, type RamFileLayout, type SnapshotWriter } from '../snapshot/index.ts';
import type { MachineState } from '../machine/machine-state.ts';
import { describeShapeMismatch, machineShape } from './machine-shape.ts';

/** Downtime 300 ms as Cloud Hypervisor's default; bandwidth unlimited. */
export const DEFAULT_MIGRATION_PARAMETERS: MigrationParameters = { downtimeLimitMs: 300, maxBandwidth: 0 };

/** Rounds of pre-copy before the machine is stopped whatever is left (QEMU has no limit; a guest that dirties faster than the link would never finish). */
const MAX_ROUNDS = 30;
/** Pages per writeRamPages() call: between two, a cancel and max-bandwidth are looked at. */
const PAGES_PER_BATCH = 1024;
/** The stream section that says where a snapshot's RAM file is (ram-file.ts). */
const RAM_FILE_SECTION = 'ram-file';
/** The stream section that holds MachineState. */
const MACHINE_SECTION = 'machine';

/** A disk a block migration copies, as the stream's header announces it: its index among the machine's disks and its virtual size. */
interface CopiedDisk {
  disk: number;
  size: number;
}

/** Chunks of one copied disk to send. */
interface DiskChunks {
  disk: CopiedDisk;
  chunks: number[];
}

/** The bytes of the disk chunk `chunk` covers (the last one of a disk may be short). */
function chunkBytes(disk: CopiedDisk, chunk: number): number {
  return Math.min(DISK_CHUNK_SIZE, disk.size - chunk * DISK_CHUNK_SIZE);
}

/** The stream's header (its config record). */
interface StreamHeader {
  machine: unknown;
  /** A block migration: the disks that follow in disk records. */
  disks?: CopiedDisk[];
}

/** The file a `file:` URI names, or null for any other URI. */
function snapshotFilePath(uri: string): string | null {
  const parsed = parseMigrationUri(uri);
  return parsed.scheme === 'file' ? parsed.path : null;
}

class Cancelled extends Error {
  constructor() {
    super('cancelled');
  }
}

export interface OutgoingOptions {
  parameters: MigrationParameters;
  onStatus: (status: MigrationStatus) => void;
  /** The machine was paused for the last round (stop-and-copy). */
  onStopped: () => void;
  /** Send the writable disks too (QEMU's block migration). */
  block?: boolean;
}

export class OutgoingMigration {
  private status: MigrationStatus = 'setup';
  private readonly startedAt = Date.now();
  private endedAt: number | null = null;
  private setupMs = 0;
  private downtimeMs: number | null = null;
  private expectedDowntimeMs = 0;
  private cancelRequested = false;
  private error: string | null = null;
  private readonly ram = { transferred: 0, normal: 0, duplicate: 0, remaining: 0, dirtySyncCount: 0, bytesPerMs: 0, dirtyPagesRate: 0, downtimeBytes: 0 };
  /** The block migration's counts, in bytes of the disks (QEMU's `disk` MigrationStats); null without one. */
  private readonly disk: { transferred: number; remaining: number; total: number } | null;
  /** The disks a block migration copies, with their dirty-chunk logs. */
  private readonly copiedDisks: (CopiedDisk & { log: DiskDirtyLog })[];
  private abortStream: (() => void) | null = null;
  private downtimeStartedAt = 0;

  constructor(private readonly machine: Machine, private readonly config: MachineConfig, private readonly options: OutgoingOptions) {
    const disks = (config.virtio ?? []).filter((d) => d.kind === 'blk');
    // Read-only disks (a cdrom, a shared base) are not copied: they must be at the destination.
    this.copiedDisks = options.block
      ? machine.virtio.disks.flatMap((wired, disk) => disks[disk]?.readOnly ? [] : [{ disk, size: wired.size, log: new DiskDirtyLog(wired.dirtyLog) }])
      : [];
    const total = this.copiedDisks.reduce((sum, d) => sum + d.size, 0);
    this.disk = options.block ? { transferred: 0, remaining: total, total } : null;
  }

  get active(): boolean {
    return this.status === 'setup' || this.status === 'active' || this.status === 'device' || this.status === 'cancelling';
  }

  cancel(): void {
    if (!this.active) return;
    this.cancelRequested = true;
    this.setStatus('cancelling');
    this.abortStream?.();
  }

  /** True once the guest is over there; false when cancelled (the machine then runs on here); throws when it failed. */
  async run(uri: string): Promise<boolean> {
    const { machine } = this;
    let pausedHere = false;
    let imagesReleased = false;
    const abort = new AbortController();
    this.abortStream = () => abort.abort(new Cancelled());
    // QEMU's first MIGRATION event: the migration exists, nothing sent yet.
    this.options.onStatus('setup');
    try {
      const file = snapshotFilePath(uri);
      const header: StreamHeader = { machine: machineShape(this.config) };
      if (this.disk) header.disks = this.copiedDisks.map(({ disk, size }) => ({ disk, size }));
      await sendSnapshot(uri, header, async (writer) => {
        if (file !== null && machine.paused && !this.disk) {
          // A paused machine saved to a file: a snapshot. Its RAM goes to a file
          // of its own that a restore maps instead of reading (ram-file.ts).
          this.setupMs = Date.now() - this.startedAt;
          this.setStatus('active');
          this.downtimeStartedAt = Date.now();
          const { layout, bytesWritten } = writeRamFile(`${file}.ram`, `${basename(file)}.ram`, machine.memory);
          this.ram.normal = bytesWritten / PAGE_SIZE;
          this.ram.transferred = bytesWritten;
          await writer.writeValue(RAM_FILE_SECTION, layout);
          await writer.writeValue(MACHINE_SECTION, await machine.saveState());
          machine.releaseImages();
          imagesReleased = true;
          return;
        }
        this.startDirtyLogging();
        this.setupMs = Date.now() - this.startedAt;
        this.setStatus('active');
        // The disks first, whole: what the guest writes meanwhile is logged and goes in the rounds.
        for (const disk of this.copiedDisks) disk.log.start();
        await this.sendDiskChunks(writer, this.copiedDisks.map((disk) => ({ disk, chunks: [...Array(chunkCount(disk.size)).keys()] })));
        // Round 0: every page that is not zero (the destination's RAM starts zeroed).
        this.harvestDirtyPages();
        await this.sendPages(writer, null);
        for (let round = 1; ; round++) {
          const dirty = this.harvestDirtyPages();
          const dirtyChunks = this.harvestDirtyChunks();
          this.ram.remaining = dirty.length * PAGE_SIZE;
          const remaining = this.ram.remaining + (this.disk?.remaining ?? 0);
          this.expectedDowntimeMs = this.ram.bytesPerMs > 0 ? remaining / this.ram.bytesPerMs : Infinity;
          if (this.expectedDowntimeMs > this.options.parameters.downtimeLimitMs && round < MAX_ROUNDS) {
            await this.sendDiskChunks(writer, dirtyChunks);
            await this.sendPages(writer, dirty);
            continue;
          }
          // Stop and copy: what is still dirty goes with the machine paused.
          this.downtimeStartedAt = Date.now();
          pausedHere = !machine.paused;
          await machine.pause();
          // Still "active", as QEMU's without pause-before-switchover: "device" is that capability's pause.
          this.options.onStopped();
          // Paused: no request is in flight, so the last writes are all in the logs.
          await this.sendDiskChunks(writer, this.harvestDirtyChunks(dirtyChunks));
          const before = this.ram.transferred;
          await this.sendPages(writer, [...new Set([...dirty, ...this.harvestDirtyPages()])]);
          this.ram.downtimeBytes = this.ram.transferred - before;
          this.ram.remaining = 0;
          const state: MachineState = await machine.saveState();
          await writer.writeValue(MACHINE_SECTION, state);
          // The destination takes the disks once the stream ends: let them go first.
          machine.releaseImages();
          imagesReleased = true;
          return;
        }
      }, { signal: abort.signal });
      this.downtimeMs = Date.now() - this.downtimeStartedAt;
      this.stopDirtyLogging();
      this.endedAt = Date.now();
      this.setStatus('completed');
      return true;
    } catch (e) {
      this.stopDirtyLogging();
      this.endedAt = Date.now();
      if (imagesReleased) machine.lockImages();
      if (pausedHere) await machine.resume();
      const cancelled = this.cancelRequested || e instanceof Cancelled;
      this.error = cancelled ? null : (e as Error).message;
      this.setStatus(cancelled ? 'cancelled' : 'failed');
      if (!cancelled) throw e;
      return false;
    }
  }

  info(): MigrationInfo {
    const now = this.endedAt ?? Date.now();
    const totalMs = now - this.startedAt;
    const total = this.machine.memory.size;
    const info: MigrationInfo = { status: this.status };
    if (this.status === 'setup') return info;
    info.totalTimeMs = totalMs;
    if (this.active) {
      info.setupTimeMs = this.setupMs;
      info.expectedDowntimeMs = Number.isFinite(this.expectedDowntimeMs) ? Math.round(this.expectedDowntimeMs) : this.options.parameters.downtimeLimitMs;
    }
    if (this.status === 'completed') {
      info.downtimeMs = this.downtimeMs ?? 0;
      info.setupTimeMs = this.setupMs;
    }
    if (this.error) info.errorDesc = this.error;
    if (this.disk) info.disk = { ...this.disk };
    info.ram = {
      transferred: this.ram.transferred,
      remaining: this.ram.remaining,
      total,
      duplicate: this.ram.duplicate,
      normal: this.ram.normal,
      normalBytes: this.ram.normal * PAGE_SIZE,
      dirtySyncCount: this.ram.dirtySyncCount,
      mbps: totalMs > 0 ? (this.ram.transferred * 8) / (totalMs * 1000) : 0,
      pagesPerSecond: totalMs > 0 ? Math.round((this.ram.normal * 1000) / totalMs) : 0,
      dirtyPagesRate: this.ram.dirtyPagesRate,
      pageSize: PAGE_SIZE,
      multifdBytes: 0,
      postcopyRequests: 0,
      precopyBytes: this.ram.transferred - this.ram.downtimeBytes,
      downtimeBytes: this.ram.downtimeBytes,
    };
    return info;
  }

  private setStatus(status: MigrationStatus): void {
    if (this.status === status) return;
    this.status = status;
    this.options.onStatus(status);
  }

  /**
   * Sends `pages` (guest page numbers), or with null every non-zero page, in
   * batches: between two, a cancel is seen and max-bandwidth kept. Measures
   * the rate the expected downtime is worked out from.
   */
  private async sendPages(writer: SnapshotWriter, pages: number[] | null): Promise<void> {
    const started = Date.now();
    const addresses = pages === null ? [...nonZeroPages(this.machine.memory)] : pages.map((page) => page * PAGE_SIZE);
    let bytes = 0;
    for (let at = 0; at < addresses.length; at += PAGES_PER_BATCH) {
      if (this.cancelRequested) throw new Cancelled();
      const sent = await writer.writeRamPages(this.machine.memory, addresses.slice(at, at + PAGES_PER_BATCH));
      this.ram.normal += sent.dataPages;
      this.ram.duplicate += sent.zeroPages;
      this.ram.transferred += sent.bytes;
      bytes += sent.bytes;
      await this.keepToBandwidth();
    }
    if (bytes > 0) this.ram.bytesPerMs = bytes / Math.max(1, Date.now() - started);
  }

  /**
   * Sends the chunks listed for each disk, each read by the I/O thread
   * that owns the disk. Their logs were harvested before: a write racing a
   * read is marked again and goes in the next round.
   */
  private async sendDiskChunks(writer: SnapshotWriter, work: DiskChunks[]): Promise<void> {
    const stats = this.disk;
    if (!stats) return;
    for (const { disk, chunks } of work) {
      for (const chunk of chunks) {
        if (this.cancelRequested) throw new Cancelled();
        const offset = chunk * DISK_CHUNK_SIZE;
        const length = chunkBytes(disk, chunk);
        const data = await this.machine.readDisk(disk.disk, offset, length);
        const bytes = await writer.writeDiskChunk(disk.disk, offset, length, data);
        stats.transferred += bytes;
        stats.remaining = Math.max(0, stats.remaining - length);
        await this.keepToBandwidth();
      }
    }
  }

  /**
   * The chunks each copied disk's guest wrote since the last harvest, with
   * `unsent` (an earlier harvest's) merged in; they count as remaining until sent.
   */
  private harvestDirtyChunks(unsent: DiskChunks[] = []): DiskChunks[] {
    const work = mergeChunks(this.copiedDisks.map((disk) => ({ disk, chunks: disk.log.harvest() })), unsent);
    if (this.disk) {
      this.disk.remaining = 0;
      for (const { disk, chunks } of work) for (const chunk of chunks) this.disk.remaining += chunkBytes(disk, chunk);
    }
    return work;
  }

  /** Ahead of max-bandwidth: waits until the bytes sent so far (RAM and disks) fit it. */
  private async keepToBandwidth(): Promise<void> {
    const limit = this.options.parameters.maxBandwidth;
    if (limit <= 0) return;
    const sent = this.ram.transferred + (this.disk?.transferred ?? 0);
    const dueMs = (sent / limit) * 1000 - (Date.now() - this.startedAt);
    if (dueMs > 1) await new Promise((resolve) => setTimeout(resolve, dueMs));
  }

  private startDirtyLogging(): void {
    const { vm, ram } = this.machine.kvm;
    ram.descriptors.forEach((r, slot) => vm.setUserMemoryRegion(slot, r.guestAddress, r.size, r.hostAddress, MemoryRegionFlag.KVM_MEM_LOG_DIRTY_PAGES));
    this.machine.dirtyLog.start();
  }

  private stopDirtyLogging(): void {
    const { vm, ram } = this.machine.kvm;
    this.machine.dirtyLog.stop();
    for (const disk of this.copiedDisks) disk.log.stop();
    try {
      ram.descriptors.forEach((r, slot) => vm.setUserMemoryRegion(slot, r.guestAddress, r.size, r.hostAddress));
    } catch {
      // The VM is going away (quit during a migration): nothing to log any more.
    }
  }

  /** Guest page numbers written since the last call: by vCPUs (KVM's log) or by tsvmm (the DirtyPageLog). */
  private harvestDirtyPages(): number[] {
    const { vm, ram } = this.machine.kvm;
    const pages = new Set<number>(this.machine.dirtyLog.harvest());
    ram.descriptors.forEach((r, slot) => {
      const count = r.size / PAGE_SIZE;
      const bitmap = vm.getDirtyLog(slot, count);
      const first = r.guestAddress / PAGE_SIZE;
      for (let byte = 0; byte < bitmap.length; byte++) {
        const bits = bitmap[byte]!;
        if (bits === 0) continue;
        for (let bit = 0; bit < 8; bit++) if (bits & (1 << bit) && byte * 8 + bit < count) pages.add(first + byte * 8 + bit);
      }
    });
    this.ram.dirtySyncCount++;
    this.ram.dirtyPagesRate = pages.size;
    return [...pages].sort((a, b) => a - b);
  }
}

/** The chunks of `b` added to those of the same disk in `a` (b may be empty), once each, in order. */
function mergeChunks(a: DiskChunks[], b: DiskChunks[]): DiskChunks[] {
  return a.map((entry, i) => ({ disk: entry.disk, chunks: [...new Set([...entry.chunks, ...(b[i]?.chunks ?? [])])].sort((x, y) => x - y) }));
}

/**
 * The receiving side: reads a stream into a machine built with `restoring`
 * and not yet run. Its machine must be the one the stream was made from
 * (RAM size, vCPUs, devices); anything else, a damaged or truncated stream,
 * is an InputError before the machine runs.
 */
export class IncomingMigration {
  constructor(private readonly machine: Machine, private readonly config: MachineConfig, private readonly onStatus: (status: MigrationStatus) => void) {}

  /** `signal` ends a wait for the source (quit). */
  async receive(uri: string, signal?: AbortSignal): Promise<void> {
    try {
      this.onStatus('setup');
      let state: MachineState | null = null;
      let ramFile: RamFileLayout | null = null;
      await receiveSnapshot(uri, async (reader) => {
        const saved = reader.config as Partial<StreamHeader> | null;
        const mismatch = describeShapeMismatch(saved?.machine, machineShape(this.config));
        if (mismatch) throw new InputError(`${uri}: ${mismatch}`);
        const disks = this.openCopiedDisks(uri, saved?.disks);
        try {
          this.onStatus('active');
          for await (const record of reader.records()) {
            if (record.type === 'ram') record.applyTo(this.machine.memory);
            else if (record.type === 'disk') record.applyTo(disks);
            else if (record.name === MACHINE_SECTION) state = record.readValue() as MachineState;
            else if (record.name === RAM_FILE_SECTION) ramFile = record.readValue() as RamFileLayout;
          }
          for (const disk of disks) disk?.flush();
        } finally {
          // Closed (and unlocked) before the machine takes its images.
          for (const disk of disks) disk?.close();
        }
      }, signal ? { signal } : {});
      if (state === null) throw new InputError(`${uri}: the stream ended without the machine's state`);
      if (ramFile !== null) {
        const file = snapshotFilePath(uri);
        const layout = ramFile as RamFileLayout;
        if (file === null || typeof layout.file !== 'string' || layout.file.includes('/')) {
          throw new InputError(`${uri}: this snapshot keeps its RAM in a file beside it: restore it with --restore FILE`);
        }
        mapRamFile(join(dirname(file), layout.file), layout, this.machine.kvm.ram.descriptors);
      }
      // The source released the disks before it ended the stream.
      this.machine.lockImages();
      this.machine.restoreState(state);
      this.onStatus('completed');
    } catch (e) {
      this.onStatus('failed');
      throw e;
    }
  }

  /**
   * The images a block migration writes into, by disk index (the stream's
   * header lists them), opened here in the main thread: the machine's I/O
   * thread opens them only once the stream is in. Each must have the size
   * of the source's, or nothing is written.
   */
  private openCopiedDisks(uri: string, announced: unknown): (BlockBackend | undefined)[] {
    if (announced === undefined) return [];
    const configs = (this.config.virtio ?? []).filter((d) => d.kind === 'blk');
    if (!Array.isArray(announced) || !announced.every((d: Partial<CopiedDisk> | null) => Number.isSafeInteger(d?.disk) && Number.isSafeInteger(d?.size))) {
      throw new InputError(`${uri}: damaged: the stream's list of disks is not one tsvmm writes`);
    }
    const disks: (BlockBackend | undefined)[] = [];
    try {
      for (const { disk, size } of announced as CopiedDisk[]) {
        const config = configs[disk];
        if (!config || config.readOnly) throw new InputError(`${uri}: the source copies its disk ${disk}, and this machine has no writable disk ${disk}`);
        const backend = openDisk(config.path, { ...(config.format ? { format: config.format } : {}), locking: { locks: ofdByteLocks } });
        disks[disk] = backend;
        if (backend.size !== size) {
          throw new InputError(`${config.path}: ${backend.size} bytes here, ${size} on the source: a block migration needs images of the same virtual size`);
        }
      }
    } catch (e) {
      for (const disk of disks) disk?.close();
      throw e;
    }
    return disks;
  }
}
