// A qcow2 image as a BlockBackend: guest offsets are mapped through the L1
// table (in memory) and L2 tables (cached) to host clusters, to the backing
// file, or to zeros.
//
// Writes to a cluster that is not yet the image's own (unallocated, zero,
// compressed, or shared with a snapshot) go to a new cluster, in this order:
//   1. the new cluster's refcount (durable before anything points at it),
//   2. the whole cluster: the guest's bytes, and around them the old content
//      (from the backing file, the compressed data or the shared cluster),
//      synced when that old content is not all zeros,
//   3. the L2 entry (in a new or copied L2 table that was written and synced
//      before the L1 entry was pointed at it),
//   4. at the next flush, the refcount of the cluster the entry used to name.
// Each step is a write(2) that has completed before the next starts, so a
// process killed at any point leaves at most leaked clusters. The syncs keep
// it so across a power loss too: no entry reaches the disk before what it
// points to, so data the guest did not write is never lost, and writes since
// the last flush are either there or not.
//
// Every write is first checked against the metadata map (overlap.ts). An
// image found corrupt while serving a request (a write that would land on
// metadata, a refcount that would go below zero, a table entry pointing
// outside the file's clusters) fails that request and every later one, and is
// marked corrupt in its header (version 3; version 2 has no such bit, as in
// QEMU), so that it opens only read-only until it is repaired.
import { writeSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { constants as zlibConstants, inflateRawSync } from 'node:zlib';
import type { BlockBackend, BlockStatus } from '../block-backend.ts';
import { InputError } from '../../errors.ts';
import { HostFile } from '../host-file.ts';
import { ClusterAllocator } from './allocator.ts';
import { Qcow2CorruptionError, REPAIR_HINT } from './corruption.ts';
import { clusterSizeOf, FIELD, INCOMPATIBLE, l2EntriesOf, readHeader, type Qcow2Header } from './header.ts';
import { TableCache } from './l2-cache.ts';
import { L1_ENTRY_SIZE, L2_ENTRY_SIZE, readL1Entry, readL2Entry, writeTableEntry, type ClusterMapping } from './layout.ts';
import { MetadataMap } from './overlap.ts';
import { Refcounts } from './refcounts.ts';
import { readSnapshotTable } from './snapshots.ts';

const L2_CACHE_BYTES = 4 * 2 ** 20;
const MIN_L2_CACHE_TABLES = 4;

export interface Qcow2OpenOptions {
  readOnly?: boolean;
  /** Opens the backing file (read-only) named in the header; `format` is absent when the header does not say. */
  openBacking?: (path: string, format: 'raw' | 'qcow2' | undefined) => BlockBackend;
  /** Told once, in one line, when the image is found corrupt while in use (default: a line on stderr). */
  onCorruption?: (message: string) => void;
}

function reportOnStderr(message: string): void {
  writeSync(2, `tsvmm: ${message}\n`);
}

/** Where the backing file named in an image's header is: relative names are relative to the image's directory. */
export function resolveBackingPath(imagePath: string, backingFile: string): string {
  return isAbsolute(backingFile) ? backingFile : join(dirname(imagePath), backingFile);
}

function isAllZero(bytes: Uint8Array): boolean {
  const zeros = ZERO_CHUNK.subarray(0, Math.min(bytes.length, ZERO_CHUNK.length));
  for (let at = 0; at < bytes.length; at += zeros.length) {
    const piece = bytes.subarray(at, at + zeros.length);
    if (Buffer.compare(piece, zeros.subarray(0, piece.length)) !== 0) return false;
  }
  return true;
}
const ZERO_CHUNK = new Uint8Array(65536);

function statusKind(mapping: ClusterMapping): BlockStatus['kind'] {
  if (mapping.kind === 'unallocated') return 'unallocated';
  return mapping.kind === 'zero' ? 'zero' : 'data';
}

export class Qcow2Image implements BlockBackend {
  readonly size: number;
  readonly readOnly: boolean;
  readonly description: string;
  readonly header: Qcow2Header;
  readonly backing: BlockBackend | null = null;
  private readonly file: HostFile;
  private readonly clusterSize: number;
  private readonly l2Entries: number;
  private readonly l1: DataView;
  private readonly l2Cache: TableCache;
  private readonly allocator: ClusterAllocator | null = null;
  /** Where the metadata is, for the checks before each write (writable images only). */
  private readonly metadata: MetadataMap | null = null;
  /** Why the image was found corrupt while open; every request fails from then on. */
  private corruption: string | null = null;
  private readonly onCorruption: (message: string) => void;
  /** The old content of a cluster being partly rewritten. */
  private readonly cowBuffer: Uint8Array;
  /** The last cluster decompressed: sequential small reads of it inflate it once. */
  private inflated: { hostOffset: number; data: Uint8Array } | null = null;
  private closed = false;

  constructor(path: string, options: Qcow2OpenOptions = {}) {
    this.readOnly = options.readOnly ?? false;
    this.description = `${path} (qcow2)`;
    this.onCorruption = options.onCorruption ?? reportOnStderr;
    this.file = HostFile.open(path, this.readOnly);
    try {
      this.header = readHeader(this.file);
      this.size = this.header.size;
      this.clusterSize = clusterSizeOf(this.header);
      this.l2Entries = l2EntriesOf(this.header);
      const l1Bytes = new Uint8Array(this.header.l1Size * L1_ENTRY_SIZE);
      this.file.readExactAt(l1Bytes, this.header.l1TableOffset, 'the L1 table');
      this.l1 = new DataView(l1Bytes.buffer);
      if (!this.readOnly) {
        this.refuseUnsafeWriting();
        this.metadata = this.mapMetadata();
      }
      const cacheTables = Math.max(MIN_L2_CACHE_TABLES, L2_CACHE_BYTES / this.clusterSize);
      this.l2Cache = new TableCache(this.file, this.clusterSize, cacheTables, 'L2 table',
        this.metadata ? { map: this.metadata, kind: 'active L2 table' } : undefined);
      this.cowBuffer = new Uint8Array(this.clusterSize);
      if (this.header.backingFile) this.backing = this.openBacking(path, this.header, options);
      if (this.metadata) this.allocator = this.prepareForWriting(this.metadata);
    } catch (e) {
      this.backing?.close();
      this.file.close();
      throw e;
    }
  }

  /** QEMU opens neither a dirty nor a corrupt image for writing: its refcounts cannot be trusted. */
  private refuseUnsafeWriting(): void {
    const { incompatibleFeatures } = this.header;
    if (incompatibleFeatures & INCOMPATIBLE.dirty) {
      throw this.error(`has the dirty bit set (it was in use with lazy refcounts); ${REPAIR_HINT}, or open it read-only`);
    }
    if (incompatibleFeatures & INCOMPATIBLE.corrupt) {
      throw this.error(`is marked corrupt; ${REPAIR_HINT}, or open it read-only`);
    }
  }

  /** The metadata's places: the header's tables, the snapshots', and the L2 tables of the active L1 table. */
  private mapMetadata(): MetadataMap {
    const map = new MetadataMap(this.file.path, this.header, readSnapshotTable(this.file, this.header));
    for (let i = 0; i < this.header.l1Size; i++) {
      const { l2Offset } = readL1Entry(this.l1, i * L1_ENTRY_SIZE, this.file.path);
      if (l2Offset !== 0) map.addActiveL2(l2Offset - (l2Offset % this.clusterSize));
    }
    return map;
  }

  private prepareForWriting(metadata: MetadataMap): ClusterAllocator {
    if (this.header.autoclearFeatures !== 0n) {
      // Bitmaps are not kept up to date here: clearing the bits tells the next reader so.
      this.file.writeAt(new Uint8Array(8), FIELD.autoclearFeatures);
      this.file.datasync();
    }
    return new ClusterAllocator(this.file, new Refcounts(this.file, this.header, metadata), metadata);
  }

  private openBacking(path: string, header: Qcow2Header, options: Qcow2OpenOptions): BlockBackend {
    const format = header.backingFormat;
    if (format !== undefined && format !== 'raw' && format !== 'qcow2') {
      throw this.error(`has a backing file of format "${format}"; tsvmm reads raw and qcow2`);
    }
    if (!options.openBacking) throw this.error('has a backing file, and no way to open it was given');
    return options.openBacking(resolveBackingPath(path, header.backingFile!), format);
  }

  read(offset: number, buffer: Uint8Array): void {
    this.checkRange(offset, buffer.length);
    this.guarded(() => this.readMapped(offset, buffer));
  }

  write(offset: number, data: Uint8Array): void {
    if (this.readOnly) throw this.error('is read-only');
    this.checkRange(offset, data.length);
    this.guarded(() => this.writeMapped(offset, data));
  }

  flush(): void {
    if (this.allocator) this.guarded(() => this.allocator!.flush());
  }

  /**
   * How far from `offset` (at most `length` bytes) the disk reads one way:
   * 'data' (read it) or 'zero' (reads as zeros: zero clusters, and clusters
   * allocated neither here nor in the backing chain). Unallocated space is
   * passed over a whole L1 entry at a time and allocated space an L2 table
   * at a time, so the cost follows the allocated data, not the virtual size.
   * Never 'unallocated': the backing chain is asked in turn, so the answer is
   * the flattened disk's.
   */
  blockStatus(offset: number, length: number): BlockStatus {
    this.checkRange(offset, length);
    if (length <= 0) throw this.error(`block status of ${length} bytes asked`);
    return this.guarded(() => this.statusOfRange(offset, length));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      if (this.allocator && this.corruption === null) {
        try {
          this.allocator.flush();
          this.allocator.releaseReserved();
        } catch (e) {
          // Found corrupt on the way out: marked so and reported once; closing goes on.
          if (!(e instanceof Qcow2CorruptionError)) throw e;
          this.signalCorruption(e);
        }
        this.file.datasync();
      }
    } finally {
      this.file.close();
      this.backing?.close();
    }
  }

  /** Runs a request; corruption found on the way fails it and everything after it. */
  private guarded<T>(request: () => T): T {
    if (this.corruption !== null) throw this.error(`was found corrupt (${this.corruption}); requests fail until it is repaired`);
    try {
      return request();
    } catch (e) {
      if (e instanceof Qcow2CorruptionError) this.signalCorruption(e);
      throw e;
    }
  }

  /** QEMU's qcow2_signal_corruption: mark the image corrupt on disk where the format can, and say so once. */
  private signalCorruption(error: Qcow2CorruptionError): void {
    if (this.corruption !== null) return;
    this.corruption = error.reason;
    let marked = '';
    if (!this.readOnly && this.header.version === 3) {
      try {
        const features = new Uint8Array(8);
        new DataView(features.buffer).setBigUint64(0, this.header.incompatibleFeatures | INCOMPATIBLE.corrupt);
        this.file.writeAt(features, FIELD.incompatibleFeatures);
        this.file.datasync();
        marked = '; marked corrupt: it opens only read-only until repaired';
      } catch (e) {
        marked = `; marking it corrupt failed too (${e instanceof Error ? e.message : String(e)})`;
      }
    }
    this.onCorruption(`${error.message}${marked}; further requests fail; ${REPAIR_HINT}`);
  }

  private readMapped(offset: number, buffer: Uint8Array): void {
    for (let done = 0; done < buffer.length;) {
      const position = offset + done;
      const mapping = this.lookup(position);
      const length = this.runLength(position, buffer.length - done, mapping);
      const out = buffer.subarray(done, done + length);
      const inCluster = position % this.clusterSize;
      switch (mapping.kind) {
        case 'unallocated': this.readBacking(position, out); break;
        case 'zero': out.fill(0); break;
        case 'normal': this.readHost(mapping.hostOffset + inCluster, out); break;
        case 'compressed': out.set(this.inflate(mapping).subarray(inCluster, inCluster + length)); break;
      }
      done += length;
    }
  }

  private writeMapped(offset: number, data: Uint8Array): void {
    for (let done = 0; done < data.length;) {
      const position = offset + done;
      const mapping = this.lookup(position);
      if (mapping.kind === 'normal' && mapping.copied) {
        // The image's own clusters, contiguous on the host: one write in place.
        const length = this.runLength(position, data.length - done, mapping);
        this.metadata!.checkWrite(mapping.hostOffset + (position % this.clusterSize), length);
        this.file.writeAt(data.subarray(done, done + length), mapping.hostOffset + (position % this.clusterSize));
        done += length;
      } else {
        const length = Math.min(this.clusterSize - (position % this.clusterSize), data.length - done);
        this.writeToNewCluster(position, data.subarray(done, done + length), mapping);
        done += length;
      }
    }
  }

  private checkRange(offset: number, length: number): void {
    if (offset < 0 || offset + length > this.size) {
      throw this.error(`access of ${length} bytes at ${offset} is outside the disk (${this.size} bytes)`);
    }
  }

  private error(message: string): InputError {
    return new InputError(`${this.file.path}: ${message}`);
  }

  private corrupt(message: string): Qcow2CorruptionError {
    return new Qcow2CorruptionError(this.file.path, message);
  }

  /** The L2 table L1 entry `l1Index` points to, or null when there is none. */
  private l2Table(l1Index: number): DataView | null {
    const { l2Offset } = readL1Entry(this.l1, l1Index * L1_ENTRY_SIZE, this.file.path);
    if (l2Offset === 0) return null;
    if (l2Offset % this.clusterSize !== 0 || l2Offset < this.clusterSize) {
      throw this.corrupt(`L1 entry ${l1Index} points to 0x${l2Offset.toString(16)}, not a cluster after the header`);
    }
    return this.l2Cache.get(l2Offset);
  }

  /** Entry `index` of an L2 table (guest cluster `cluster`), checked to name a cluster after the header. */
  private l2Entry(table: DataView, index: number, cluster: number): ClusterMapping {
    const mapping = readL2Entry(table, index * L2_ENTRY_SIZE, this.header.clusterBits, this.header.version, this.file.path);
    if ((mapping.kind === 'normal' || (mapping.kind === 'zero' && mapping.hostOffset !== 0))
      && (mapping.hostOffset % this.clusterSize !== 0 || mapping.hostOffset < this.clusterSize)) {
      throw this.corrupt(`guest cluster ${cluster} maps to 0x${mapping.hostOffset.toString(16)}, not a cluster after the header`);
    }
    return mapping;
  }

  /** The L2 entry for the cluster holding guest offset `position`. */
  private lookup(position: number): ClusterMapping {
    const cluster = Math.floor(position / this.clusterSize);
    const table = this.l2Table(Math.floor(cluster / this.l2Entries));
    return table ? this.l2Entry(table, cluster % this.l2Entries, cluster) : { kind: 'unallocated' };
  }

  /** blockStatus for this layer, with its unallocated ranges answered by the backing chain. */
  private statusOfRange(offset: number, length: number): BlockStatus {
    const run = this.layerRun(offset, length);
    if (run.kind !== 'unallocated') return run;
    const inBacking = this.backing ? Math.min(run.length, this.backing.size - offset) : 0;
    if (inBacking <= 0) return { kind: 'zero', length: run.length };
    const below = this.backing!.blockStatus(offset, inBacking);
    // A backing layer's own 'unallocated' (a backend that cannot tell) must be read: data.
    return { kind: below.kind === 'zero' ? 'zero' : 'data', length: below.length };
  }

  /** How far from `offset` this layer alone has one kind of content; L1 entries without a table are passed whole. */
  private layerRun(offset: number, length: number): BlockStatus {
    const end = offset + length;
    const tableSpan = this.clusterSize * this.l2Entries;
    let kind: BlockStatus['kind'] | null = null;
    let position = offset;
    while (position < end) {
      const cluster = Math.floor(position / this.clusterSize);
      const l1Index = Math.floor(cluster / this.l2Entries);
      const table = this.l2Table(l1Index);
      if (!table) {
        if (kind !== null && kind !== 'unallocated') break;
        kind = 'unallocated';
        position = (l1Index + 1) * tableSpan;
        continue;
      }
      for (let index = cluster % this.l2Entries; index < this.l2Entries && position < end; index++) {
        const here = statusKind(this.l2Entry(table, index, l1Index * this.l2Entries + index));
        if (kind === null) kind = here;
        else if (here !== kind) return { kind, length: position - offset };
        position = (l1Index * this.l2Entries + index + 1) * this.clusterSize;
      }
    }
    return { kind: kind!, length: Math.min(position, end) - offset };
  }

  /**
   * How many of the `maxLength` bytes from `position` share its `mapping`:
   * following clusters of the same kind, and for allocated clusters only while
   * they are contiguous on the host, so one system call serves the run.
   */
  private runLength(position: number, maxLength: number, mapping: ClusterMapping): number {
    let length = Math.min(this.clusterSize - (position % this.clusterSize), maxLength);
    if (mapping.kind === 'compressed') return length;
    while (length < maxLength) {
      const next = this.lookup(position + length);
      if (next.kind !== mapping.kind) break;
      if (next.kind === 'normal' && mapping.kind === 'normal'
        && (next.hostOffset !== mapping.hostOffset + (position % this.clusterSize) + length || next.copied !== mapping.copied)) break;
      length += Math.min(this.clusterSize, maxLength - length);
    }
    return length;
  }

  /** Reads host bytes; past the end of the file (a cluster never fully written) they read as zeros, as in QEMU. */
  private readHost(hostOffset: number, out: Uint8Array): void {
    const got = this.file.readAt(out, hostOffset);
    if (got < out.length) out.fill(0, got);
  }

  /** What the backing file has at `position`; zeros past its end, or without one. */
  private readBacking(position: number, out: Uint8Array): void {
    const available = this.backing ? Math.max(0, Math.min(out.length, this.backing.size - position)) : 0;
    if (available > 0) this.backing!.read(position, out.subarray(0, available));
    out.fill(0, available);
  }

  private inflate(mapping: { hostOffset: number; compressedSize: number }): Uint8Array {
    if (this.inflated?.hostOffset === mapping.hostOffset) return this.inflated.data;
    const compressed = new Uint8Array(mapping.compressedSize);
    // The last sectors named may lie past the end of the file: inflate stops at the end of the stream.
    const got = this.file.readAt(compressed, mapping.hostOffset);
    let data: Buffer;
    try {
      data = inflateRawSync(compressed.subarray(0, got), { finishFlush: zlibConstants.Z_SYNC_FLUSH, maxOutputLength: this.clusterSize });
    } catch (e) {
      throw this.corrupt(`the compressed cluster at 0x${mapping.hostOffset.toString(16)} does not inflate: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (data.length !== this.clusterSize) {
      throw this.corrupt(`the compressed cluster at 0x${mapping.hostOffset.toString(16)} inflates to ${data.length} bytes, not ${this.clusterSize}`);
    }
    this.inflated = { hostOffset: mapping.hostOffset, data };
    return data;
  }

  /** Writes `data` (within one cluster, at guest offset `position`) to a cluster the image owns alone, copying the old content around it. */
  private writeToNewCluster(position: number, data: Uint8Array, old: ClusterMapping): void {
    const inCluster = position % this.clusterSize;
    const clusterStart = position - inCluster;
    const whole = data.length === this.clusterSize;
    if (!whole) this.readOldContent(clusterStart, old, this.cowBuffer);

    // A zero cluster with its own preallocated host cluster is written in place of the zeros.
    const reuse = old.kind === 'zero' && old.hostOffset !== 0 && old.copied;
    const target = reuse ? old.hostOffset : this.allocator!.take();
    this.metadata!.checkWrite(target, this.clusterSize);
    if (whole) {
      this.file.writeAt(data, target);
    } else {
      const head = this.cowBuffer.subarray(0, inCluster);
      const tail = this.cowBuffer.subarray(inCluster + data.length);
      this.file.writevAt([head, data, tail], target);
      // The copy must be durable before the entry that makes the old location unused is.
      if (!isAllZero(head) || !isAllZero(tail)) this.file.datasync();
    }
    this.setL2Entry(clusterStart / this.clusterSize, target);

    if (old.kind === 'compressed') {
      this.allocator!.freeLater(old.hostOffset, old.compressedSize);
      if (this.inflated?.hostOffset === old.hostOffset) this.inflated = null;
    } else if ((old.kind === 'normal' || old.kind === 'zero') && old.hostOffset !== 0 && !reuse) {
      this.allocator!.freeLater(old.hostOffset, this.clusterSize);
    }
  }

  /** The whole cluster at `clusterStart` as the guest sees it now. */
  private readOldContent(clusterStart: number, old: ClusterMapping, out: Uint8Array): void {
    switch (old.kind) {
      case 'unallocated': this.readBacking(clusterStart, out); break;
      case 'zero': out.fill(0); break;
      case 'normal': this.readHost(old.hostOffset, out); break;
      case 'compressed': out.set(this.inflate(old)); break;
    }
  }

  /** Points guest cluster `cluster` at `hostOffset`, with an L2 table of the image's own. */
  private setL2Entry(cluster: number, hostOffset: number): void {
    const l1Index = Math.floor(cluster / this.l2Entries);
    const { l2Offset: current, copied } = readL1Entry(this.l1, l1Index * L1_ENTRY_SIZE, this.file.path);
    const l2Offset = current !== 0 && copied ? current : this.newL2Table(l1Index, current);
    const table = this.l2Cache.get(l2Offset);
    const at = (cluster % this.l2Entries) * L2_ENTRY_SIZE;
    writeTableEntry(table, at, hostOffset, true);
    this.l2Cache.writeThrough(l2Offset, table, at, at + L2_ENTRY_SIZE);
  }

  /** A new L2 table for L1 entry `l1Index`: empty, or a copy of the shared table at `copyOf`. */
  private newL2Table(l1Index: number, copyOf: number): number {
    const metadata = this.metadata!;
    const offset = this.allocator!.take();
    const bytes = new Uint8Array(this.clusterSize);
    if (copyOf !== 0) {
      const shared = this.l2Cache.get(copyOf);
      bytes.set(new Uint8Array(shared.buffer, shared.byteOffset, shared.byteLength));
    }
    metadata.checkWrite(offset, this.clusterSize);
    this.file.writeAt(bytes, offset);
    this.file.datasync();  // the table is on disk before the L1 entry points at it
    this.l2Cache.put(offset, bytes);
    metadata.addActiveL2(offset);
    const at = l1Index * L1_ENTRY_SIZE;
    metadata.checkWrite(this.header.l1TableOffset + at, L1_ENTRY_SIZE, 'active L1 table');
    writeTableEntry(this.l1, at, offset, true);
    this.file.writeAt(new Uint8Array(this.l1.buffer, at, L1_ENTRY_SIZE), this.header.l1TableOffset + at);
    if (copyOf !== 0) {
      metadata.removeActiveL2(copyOf);
      this.l2Cache.drop(copyOf);
      this.allocator!.freeLater(copyOf, this.clusterSize);
    }
    return offset;
  }
}
