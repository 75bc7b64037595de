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
import { InputError } from '../errors.ts';
import { MemoryRegionFlag } from '../kvm/index.ts';
import type { MachineConfig } from '../machine/config.ts';
import type { Machine } from '../machine/machine.ts';
import { PAGE_SIZE } from '../memory/dirty-pages.ts';
import type { MigrationInfo, MigrationParameters, MigrationStatus } from '../qmp/target.ts';
import { basename, dirname, join } from 'node:path';
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
  private abortStream: (() => void) | null = null;
  private downtimeStartedAt = 0;

  constructor(private readonly machine: Machine, private readonly config: MachineConfig, private readonly options: OutgoingOptions) {}

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
      await sendSnapshot(uri, { machine: machineShape(this.config) }, async (writer) => {
        if (file !== null && machine.paused) {
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
        // Round 0: every page that is not zero (the destination's RAM starts zeroed).
        this.harvestDirtyPages();
        await this.sendPages(writer, null);
        for (let round = 1; ; round++) {
          const dirty = this.harvestDirtyPages();
          this.ram.remaining = dirty.length * PAGE_SIZE;
          this.expectedDowntimeMs = this.ram.bytesPerMs > 0 ? this.ram.remaining / this.ram.bytesPerMs : Infinity;
          if (this.expectedDowntimeMs > this.options.parameters.downtimeLimitMs && round < MAX_ROUNDS) {
            await this.sendPages(writer, dirty);
            continue;
          }
          // Stop and copy: what is still dirty goes with the machine paused.
          this.downtimeStartedAt = Date.now();
          pausedHere = !machine.paused;
          await machine.pause();
          // Still "active", as QEMU's without pause-before-switchover: "device" is that capability's pause.
          this.options.onStopped();
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
      const limit = this.options.parameters.maxBandwidth;
      if (limit > 0) {
        // Ahead of max-bandwidth: wait until the bytes so far fit it.
        const dueMs = (this.ram.transferred / limit) * 1000 - (Date.now() - this.startedAt);
        if (dueMs > 1) await new Promise((resolve) => setTimeout(resolve, dueMs));
      }
    }
    if (bytes > 0) this.ram.bytesPerMs = bytes / Math.max(1, Date.now() - started);
  }

  private startDirtyLogging(): void {
    const { vm, ram } = this.machine.kvm;
    ram.descriptors.forEach((r, slot) => vm.setUserMemoryRegion(slot, r.guestAddress, r.size, r.hostAddress, MemoryRegionFlag.KVM_MEM_LOG_DIRTY_PAGES));
    this.machine.dirtyLog.start();
  }

  private stopDirtyLogging(): void {
    const { vm, ram } = this.machine.kvm;
    this.machine.dirtyLog.stop();
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
        const saved = reader.config as { machine?: unknown } | null;
        const mismatch = describeShapeMismatch(saved?.machine, machineShape(this.config));
        if (mismatch) throw new InputError(`${uri}: ${mismatch}`);
        this.onStatus('active');
        for await (const record of reader.records()) {
          if (record.type === 'ram') record.applyTo(this.machine.memory);
          else if (record.name === MACHINE_SECTION) state = record.readValue() as MachineState;
          else if (record.name === RAM_FILE_SECTION) ramFile = record.readValue() as RamFileLayout;
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
}
