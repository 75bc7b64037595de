// Reference counts of host clusters: the refcount table (kept in memory) and
// the refcount blocks it points to (read through a small cache). Every change
// is written to the file as it is made.
//
// New refcount blocks are placed in the range they describe, at the first free
// cluster, so a block counts itself; when the table itself is full it is moved
// to the end of the file together with the blocks that cover its new place.
// Each new structure is written and fdatasync'd before anything points to it,
// so the image on disk is consistent after a crash at any point: at worst a
// cluster is counted that nothing references (a leak), never the reverse.
//
// Given a metadata map, every write is checked against it first, and the map
// follows the blocks and the table as they are created and moved.
import { InputError } from '../../errors.ts';
import type { HostFile } from '../host-file.ts';
import { Qcow2CorruptionError } from './corruption.ts';
import type { MetadataMap } from './overlap.ts';
import { clusterSizeOf, FIELD, type Qcow2Header } from './header.ts';
import { TableCache } from './l2-cache.ts';
import { getU64, readRefcountTableEntry, setU64 } from './layout.ts';

const BLOCK_CACHE_BYTES = 2 ** 20;

export class Refcounts {
  readonly clusterSize: number;
  /** Clusters one refcount block covers. */
  readonly entriesPerBlock: number;
  private readonly bits: number;
  private readonly maxRefcount: number;
  private readonly blocks: TableCache;
  /** Host offset of the refcount block for each range of entriesPerBlock clusters (0: none yet). */
  private table: number[];
  private tableOffset: number;
  private tableClusters: number;
  /** No cluster below this one is free. */
  private freeHint = 0;
  /** One past the highest cluster in use: the file's end, or beyond it for clusters allocated but not yet written. */
  private endCluster: number;

  constructor(private readonly file: HostFile, header: Qcow2Header, private readonly map?: MetadataMap) {
    this.clusterSize = clusterSizeOf(header);
    this.bits = 2 ** header.refcountOrder;
    this.entriesPerBlock = (this.clusterSize * 8) / this.bits;
    this.maxRefcount = this.bits === 64 ? Number.MAX_SAFE_INTEGER : 2 ** this.bits - 1;
    this.blocks = new TableCache(file, this.clusterSize, Math.max(4, BLOCK_CACHE_BYTES / this.clusterSize), 'refcount block',
      map && { map, kind: 'refcount block' });
    this.tableOffset = header.refcountTableOffset;
    this.tableClusters = header.refcountTableClusters;
    this.table = this.readTable();
    for (const offset of this.table) if (offset) map?.addRefcountBlock(offset);
    this.endCluster = Math.ceil(file.size() / this.clusterSize);
  }

  private readTable(): number[] {
    const bytes = new Uint8Array(this.tableClusters * this.clusterSize);
    this.file.readExactAt(bytes, this.tableOffset, 'the refcount table');
    const view = new DataView(bytes.buffer);
    const table: number[] = [];
    for (let at = 0; at < bytes.length; at += 8) {
      const offset = readRefcountTableEntry(view, at, this.file.path);
      if (offset % this.clusterSize !== 0) {
        throw new InputError(`${this.file.path}: corrupt qcow2 image: refcount block ${at / 8} at 0x${offset.toString(16)} is not cluster-aligned`);
      }
      table.push(offset);
    }
    return table;
  }

  /** Host offsets of the refcount blocks, for the consistency check. */
  blockOffsets(): readonly number[] {
    return this.table;
  }

  /** Where the refcount table is: [offset, clusters]. */
  tableLocation(): { offset: number; clusters: number } {
    return { offset: this.tableOffset, clusters: this.tableClusters };
  }

  /** The refcount of host cluster `cluster` (an index, not an offset). */
  get(cluster: number): number {
    const block = this.blockFor(cluster);
    return block ? this.readEntry(block, cluster % this.entriesPerBlock) : 0;
  }

  increment(cluster: number): void {
    const count = this.get(cluster);
    if (count >= this.maxRefcount) throw new InputError(`${this.file.path}: the refcount of cluster ${cluster} would overflow ${this.bits} bits`);
    this.setRun(cluster, 1, count + 1);
  }

  decrement(cluster: number): void {
    const count = this.get(cluster);
    if (count === 0) throw new Qcow2CorruptionError(this.file.path, `freeing cluster ${cluster}, whose refcount is already 0`);
    this.setRun(cluster, 1, count - 1);
    if (count === 1) this.freeHint = Math.min(this.freeHint, cluster);
  }

  /**
   * Allocates up to `max` free clusters in a row (fewer where a refcount block
   * ends or a used cluster follows) and sets their refcounts to 1. Returns the
   * first cluster's index and the count. Nothing is synced.
   */
  allocateRun(max: number): { first: number; count: number } {
    for (;;) {
      const first = this.findFree();
      const blockIndex = Math.floor(first / this.entriesPerBlock);
      if (!this.table[blockIndex]) {
        // No block counts this range yet: the new one goes here and counts itself.
        this.createBlockAt(first);
        continue;
      }
      const blockEnd = (blockIndex + 1) * this.entriesPerBlock;
      let count = 1;
      while (count < max && first + count < blockEnd && this.get(first + count) === 0) count++;
      this.setRun(first, count, 1);
      this.freeHint = first + count;
      this.endCluster = Math.max(this.endCluster, first + count);
      return { first, count };
    }
  }

  /**
   * Allocates `count` contiguous clusters past every cluster in use, with
   * refcount 1, for a table larger than the clusters one refcount block
   * counts: the new blocks such a run needs go after it, not inside it (where
   * allocateRun() puts a block, at the start of the range it counts). The
   * blocks are written and synced before the table points to them. Returns
   * the first cluster's index.
   */
  allocateRunAtEnd(count: number): number {
    const E = this.entriesPerBlock;
    const start = this.endCluster;
    let newBlocks: number[] = [];  // block indices that need a new block
    // The new blocks count themselves too: iterate until their number settles.
    for (;;) {
      const end = start + count + newBlocks.length;
      const needed: number[] = [];
      for (let b = Math.floor(start / E); b <= Math.floor((end - 1) / E); b++) if (!this.table[b]) needed.push(b);
      if (needed.length === newBlocks.length) break;
      newBlocks = needed;
    }
    const end = start + count + newBlocks.length;
    if (newBlocks.length > 0 && newBlocks[newBlocks.length - 1]! >= this.table.length) {
      this.growTable(newBlocks[newBlocks.length - 1]! + 1);
      return this.allocateRunAtEnd(count);
    }
    // Leaked refcounts past the end of the file (from a crash) may lie in the way: step over them.
    for (let c = start; c < end; c++) {
      if (this.get(c) !== 0) {
        this.endCluster = c + 1;
        return this.allocateRunAtEnd(count);
      }
    }
    this.map?.checkWrite(start * this.clusterSize, (end - start) * this.clusterSize);
    const blockBytes = new Map(newBlocks.map((b) => [b, new Uint8Array(this.clusterSize)]));
    for (let c = start; c < end; c++) {
      const bytes = blockBytes.get(Math.floor(c / E));
      if (bytes) this.writeEntry(new DataView(bytes.buffer), c % E, 1);
      else this.setRun(c, 1, 1);
    }
    const blockOffset = (i: number) => (start + count + i) * this.clusterSize;
    newBlocks.forEach((b, i) => this.file.writeAt(blockBytes.get(b)!, blockOffset(i)));
    this.file.datasync();  // the blocks are on disk before the table points at them
    newBlocks.forEach((b, i) => {
      this.writeTableEntry(b, blockOffset(i));
      this.blocks.put(blockOffset(i), blockBytes.get(b)!);
      this.map?.addRefcountBlock(blockOffset(i));
    });
    this.endCluster = end;
    return start;
  }

  /** Sets the refcounts of clusters [first, first+count), which share one existing block, to `value`. */
  setRun(first: number, count: number, value: number): void {
    const blockOffset = this.table[Math.floor(first / this.entriesPerBlock)];
    if (!blockOffset) throw new Error(`refcount of cluster ${first} set without a refcount block`);
    const block = this.blocks.get(blockOffset);
    const index = first % this.entriesPerBlock;
    for (let i = index; i < index + count; i++) this.writeEntry(block, i, value);
    const start = Math.floor((index * this.bits) / 8);
    const end = Math.ceil(((index + count) * this.bits) / 8);
    this.blocks.writeThrough(blockOffset, block, start, end);
  }

  private blockFor(cluster: number): DataView | null {
    const offset = this.table[Math.floor(cluster / this.entriesPerBlock)];
    return offset ? this.blocks.get(offset) : null;
  }

  private readEntry(block: DataView, index: number): number {
    switch (this.bits) {
      case 8: return block.getUint8(index);
      case 16: return block.getUint16(index * 2);
      case 32: return block.getUint32(index * 4);
      case 64: return getU64(block, index * 8, 'a 64-bit refcount', this.file.path);
      default: {  // 1, 2 or 4 bits: entry 0 in the least significant bits of byte 0
        const bit = index * this.bits;
        return (block.getUint8(bit >> 3) >> (bit & 7)) & this.maxRefcount;
      }
    }
  }

  private writeEntry(block: DataView, index: number, value: number): void {
    writeRefcountEntry(block, index, value, this.bits);
  }

  /** The first cluster at or after the hint whose refcount is 0; scans whole blocks at a time. */
  private findFree(): number {
    let cluster = this.freeHint;
    for (;;) {
      const blockIndex = Math.floor(cluster / this.entriesPerBlock);
      const blockOffset = this.table[blockIndex];
      if (!blockOffset) break;
      const block = this.blocks.get(blockOffset);
      const end = (blockIndex + 1) * this.entriesPerBlock;
      for (; cluster < end; cluster++) {
        if (this.readEntry(block, cluster % this.entriesPerBlock) === 0) {
          this.freeHint = cluster;
          return cluster;
        }
      }
    }
    this.freeHint = cluster;
    return cluster;
  }

  /** A new refcount block at cluster `cluster`, for the range that contains it. */
  private createBlockAt(cluster: number): void {
    const blockIndex = Math.floor(cluster / this.entriesPerBlock);
    if (blockIndex >= this.table.length) {
      this.growTable(blockIndex + 1);
      return;
    }
    const bytes = new Uint8Array(this.clusterSize);
    const block = new DataView(bytes.buffer);
    this.writeEntry(block, cluster % this.entriesPerBlock, 1);
    const offset = cluster * this.clusterSize;
    this.map?.checkWrite(offset, this.clusterSize);
    this.file.writeAt(bytes, offset);
    this.file.datasync();  // the block is on disk before the table points at it
    this.writeTableEntry(blockIndex, offset);
    this.blocks.put(offset, bytes);
    this.map?.addRefcountBlock(offset);
    this.endCluster = Math.max(this.endCluster, cluster + 1);
  }

  private writeTableEntry(index: number, blockOffset: number): void {
    const entry = new Uint8Array(8);
    setU64(new DataView(entry.buffer), 0, blockOffset);
    this.map?.checkWrite(this.tableOffset + index * 8, 8, 'refcount table');
    this.file.writeAt(entry, this.tableOffset + index * 8);
    this.table[index] = blockOffset;
  }

  /**
   * Moves the refcount table to the end of the file with room for at least
   * `minEntries` blocks. The new table and the new blocks that count it are
   * written and synced, then the header switches to them, then the old
   * table's clusters are freed.
   */
  private growTable(minEntries: number): void {
    const E = this.entriesPerBlock;
    const entriesPerCluster = this.clusterSize / 8;
    const start = this.endCluster;
    let entries = Math.max(minEntries, this.table.length * 2);
    let tableClusters = 0;
    let newBlocks: number[] = [];  // block indices that need a new block
    // The table and its new blocks cover each other: iterate until the sizes agree.
    for (;;) {
      tableClusters = Math.ceil(entries / entriesPerCluster);
      const end = start + tableClusters + newBlocks.length;
      const needed: number[] = [];
      for (let b = Math.floor(start / E); b <= Math.floor((end - 1) / E); b++) {
        if (!this.table[b]) needed.push(b);
      }
      const lastIndex = needed.length ? needed[needed.length - 1]! : 0;
      const settled = needed.length === newBlocks.length && lastIndex < tableClusters * entriesPerCluster;
      newBlocks = needed;
      if (settled) break;
      entries = Math.max(entries, lastIndex + 1);
    }
    const total = tableClusters + newBlocks.length;
    const end = start + total;
    // Leaked refcounts past the end of the file (from a crash) may lie in the way: step over them.
    for (let c = start; c < end; c++) {
      if (this.get(c) !== 0) {
        this.endCluster = c + 1;
        this.growTable(minEntries);
        return;
      }
    }

    this.map?.checkWrite(start * this.clusterSize, total * this.clusterSize);
    const tableBytes = new Uint8Array(tableClusters * this.clusterSize);
    const tableView = new DataView(tableBytes.buffer);
    this.table.forEach((offset, i) => setU64(tableView, i * 8, offset));
    const blockBytes = new Map<number, Uint8Array>();
    newBlocks.forEach((b, i) => {
      const offset = (start + tableClusters + i) * this.clusterSize;
      setU64(tableView, b * 8, offset);
      blockBytes.set(b, new Uint8Array(this.clusterSize));
    });
    // Count the new clusters: in the new blocks, or in blocks that exist already.
    for (let c = start; c < end; c++) {
      const bytes = blockBytes.get(Math.floor(c / E));
      if (bytes) this.writeEntry(new DataView(bytes.buffer), c % E, 1);
      else this.setRun(c, 1, 1);
    }
    newBlocks.forEach((b, i) => this.file.writeAt(blockBytes.get(b)!, (start + tableClusters + i) * this.clusterSize));
    this.file.writeAt(tableBytes, start * this.clusterSize);
    this.file.datasync();

    const location = new Uint8Array(12);
    const locationView = new DataView(location.buffer);
    setU64(locationView, 0, start * this.clusterSize);
    locationView.setUint32(8, tableClusters);
    this.map?.checkWrite(FIELD.refcountTableOffset, location.length, 'qcow2_header');
    this.file.writeAt(location, FIELD.refcountTableOffset);
    this.file.datasync();
    this.map?.setRefcountTable(start * this.clusterSize, tableClusters);

    const oldFirst = this.tableOffset / this.clusterSize;
    const oldClusters = this.tableClusters;
    this.table = Array.from({ length: tableClusters * entriesPerCluster }, (_, i) => this.table[i] ?? 0);
    newBlocks.forEach((b, i) => {
      const offset = (start + tableClusters + i) * this.clusterSize;
      this.table[b] = offset;
      this.blocks.put(offset, blockBytes.get(b)!);
      this.map?.addRefcountBlock(offset);
    });
    this.tableOffset = start * this.clusterSize;
    this.tableClusters = tableClusters;
    this.endCluster = end;
    for (let c = oldFirst; c < oldFirst + oldClusters; c++) this.decrement(c);
  }
}

/** Stores refcount `value` as entry `index` of a refcount block of `bits`-bit entries. */
export function writeRefcountEntry(block: DataView, index: number, value: number, bits: number): void {
  switch (bits) {
    case 8: block.setUint8(index, value); break;
    case 16: block.setUint16(index * 2, value); break;
    case 32: block.setUint32(index * 4, value); break;
    case 64: setU64(block, index * 8, value); break;
    default: {  // 1, 2 or 4 bits: entry 0 in the least significant bits of byte 0
      const bit = index * bits;
      const shift = bit & 7;
      const mask = 2 ** bits - 1;
      const byte = block.getUint8(bit >> 3) & ~(mask << shift);
      block.setUint8(bit >> 3, byte | (value << shift));
    }
  }
}
