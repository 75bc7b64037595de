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
import { dirname, isAbsolute, join } from 'node:path';
import { constants as zlibConstants, inflateRawSync } from 'node:zlib';
import type { BlockBackend } from '../block-backend.ts';
import { StorageError } from '../errors.ts';
import { HostFile } from '../host-file.ts';
import { ClusterAllocator } from './allocator.ts';
import { clusterSizeOf, FIELD, INCOMPATIBLE, l2EntriesOf, readHeader, type Qcow2Header } from './header.ts';
import { TableCache } from './l2-cache.ts';
import { L1_ENTRY_SIZE, L2_ENTRY_SIZE, readL1Entry, readL2Entry, writeTableEntry, type ClusterMapping } from './layout.ts';
import { Refcounts } from './refcounts.ts';

const L2_CACHE_BYTES = 4 * 2 ** 20;
const MIN_L2_CACHE_TABLES = 4;

export interface Qcow2OpenOptions {
  readOnly?: boolean;
  /** Opens the backing file (read-only) named in the header; `format` is absent when the header does not say. */
  openBacking?: (path: string, format: 'raw' | 'qcow2' | undefined) => BlockBackend;
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
  /** The old content of a cluster being partly rewritten. */
  private readonly cowBuffer: Uint8Array;
  /** The last cluster decompressed: sequential small reads of it inflate it once. */
  private inflated: { hostOffset: number; data: Uint8Array } | null = null;
  private closed = false;

  constructor(path: string, options: Qcow2OpenOptions = {}) {
    this.readOnly = options.readOnly ?? false;
    this.description = `${path} (qcow2)`;
    this.file = HostFile.open(path, this.readOnly);
    try {
      this.header = readHeader(this.file);
      this.size = this.header.size;
      this.clusterSize = clusterSizeOf(this.header);
      this.l2Entries = l2EntriesOf(this.header);
      const l1Bytes = new Uint8Array(this.header.l1Size * L1_ENTRY_SIZE);
      this.file.readExactAt(l1Bytes, this.header.l1TableOffset, 'the L1 table');
      this.l1 = new DataView(l1Bytes.buffer);
      this.l2Cache = new TableCache(this.file, this.clusterSize, Math.max(MIN_L2_CACHE_TABLES, L2_CACHE_BYTES / this.clusterSize), 'L2 table');
      this.cowBuffer = new Uint8Array(this.clusterSize);
      if (this.header.backingFile) this.backing = this.openBacking(path, this.header, options);
      if (!this.readOnly) this.allocator = this.prepareForWriting();
    } catch (e) {
      this.backing?.close();
      this.file.close();
      throw e;
    }
  }

  private prepareForWriting(): ClusterAllocator {
    const { incompatibleFeatures, autoclearFeatures } = this.header;
    if (incompatibleFeatures & INCOMPATIBLE.dirty) {
      throw this.error('has the dirty bit set (it was in use with lazy refcounts); repair it with "qemu-img check -r all", or open it read-only');
    }
    if (incompatibleFeatures & INCOMPATIBLE.corrupt) {
      throw this.error('is marked corrupt; repair it with "qemu-img check -r all", or open it read-only');
    }
    if (autoclearFeatures !== 0n) {
      // Bitmaps are not kept up to date here: clearing the bits tells the next reader so.
      this.file.writeAt(new Uint8Array(8), FIELD.autoclearFeatures);
      this.file.datasync();
    }
    return new ClusterAllocator(this.file, new Refcounts(this.file, this.header));
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

  write(offset: number, data: Uint8Array): void {
    if (this.readOnly) throw this.error('is read-only');
    this.checkRange(offset, data.length);
    for (let done = 0; done < data.length;) {
      const position = offset + done;
      const mapping = this.lookup(position);
      if (mapping.kind === 'normal' && mapping.copied) {
        // The image's own clusters, contiguous on the host: one write in place.
        const length = this.runLength(position, data.length - done, mapping);
        this.file.writeAt(data.subarray(done, done + length), mapping.hostOffset + (position % this.clusterSize));
        done += length;
      } else {
        const length = Math.min(this.clusterSize - (position % this.clusterSize), data.length - done);
        this.writeToNewCluster(position, data.subarray(done, done + length), mapping);
        done += length;
      }
    }
  }

  flush(): void {
    if (this.allocator) this.allocator.flush();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      if (this.allocator) {
        this.allocator.flush();
        this.allocator.releaseReserved();
        this.file.datasync();
      }
    } finally {
      this.file.close();
      this.backing?.close();
    }
  }

  private checkRange(offset: number, length: number): void {
    if (offset < 0 || offset + length > this.size) {
      throw this.error(`access of ${length} bytes at ${offset} is outside the disk (${this.size} bytes)`);
    }
  }

  private error(message: string): StorageError {
    return new StorageError(`${this.file.path}: ${message}`);
  }

  private corrupt(message: string): StorageError {
    return this.error(`corrupt qcow2 image: ${message}`);
  }

  /** The L2 entry for the cluster holding guest offset `position`. */
  private lookup(position: number): ClusterMapping {
    const cluster = Math.floor(position / this.clusterSize);
    const l1Index = Math.floor(cluster / this.l2Entries);
    const { l2Offset } = readL1Entry(this.l1, l1Index * L1_ENTRY_SIZE, this.file.path);
    if (l2Offset === 0) return { kind: 'unallocated' };
    if (l2Offset % this.clusterSize !== 0 || l2Offset < this.clusterSize) {
      throw this.corrupt(`L1 entry ${l1Index} points to 0x${l2Offset.toString(16)}, not a cluster after the header`);
    }
    const table = this.l2Cache.get(l2Offset);
    const mapping = readL2Entry(table, (cluster % this.l2Entries) * L2_ENTRY_SIZE, this.header.clusterBits, this.header.version, this.file.path);
    if ((mapping.kind === 'normal' || (mapping.kind === 'zero' && mapping.hostOffset !== 0))
      && (mapping.hostOffset % this.clusterSize !== 0 || mapping.hostOffset < this.clusterSize)) {
      throw this.corrupt(`guest cluster ${cluster} maps to 0x${mapping.hostOffset.toString(16)}, not a cluster after the header`);
    }
    return mapping;
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
      throw this.corrupt(`the compressed cluster at 0x${mapping.hostOffset.toString(16)} does not inflate: ${e instanceof Error ? e.message : e}`);
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
    const offset = this.allocator!.take();
    const bytes = new Uint8Array(this.clusterSize);
    if (copyOf !== 0) {
      const shared = this.l2Cache.get(copyOf);
      bytes.set(new Uint8Array(shared.buffer, shared.byteOffset, shared.byteLength));
    }
    this.file.writeAt(bytes, offset);
    this.file.datasync();  // the table is on disk before the L1 entry points at it
    this.l2Cache.put(offset, bytes);
    const at = l1Index * L1_ENTRY_SIZE;
    writeTableEntry(this.l1, at, offset, true);
    this.file.writeAt(new Uint8Array(this.l1.buffer, at, L1_ENTRY_SIZE), this.header.l1TableOffset + at);
    if (copyOf !== 0) {
      this.l2Cache.drop(copyOf);
      this.allocator!.freeLater(copyOf, this.clusterSize);
    }
    return offset;
  }
}
