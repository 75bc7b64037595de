// The qcow2 on-disk format (QEMU's docs/interop/qcow2.txt): big-endian
// 64-bit fields, and the entries of the L1, L2 and refcount tables.
//
// Offsets are JS numbers: tsvmm handles images below 2^53 bytes. 64-bit fields
// are read as BigInt and range-checked, except the L1/L2 entries read on every
// guest request: those are read as two 32-bit halves, which allocates nothing,
// and checked the same way.
import { InputError } from '../../errors.ts';

export const QCOW2_MAGIC = 0x514649fb;  // "QFI\xfb"
export const L1_ENTRY_SIZE = 8;
export const L2_ENTRY_SIZE = 8;
const COMPRESSED_SECTOR_SIZE = 512;

const TWO_32 = 2 ** 32;
const COPIED = 0x80000000;        // bit 63: refcount is exactly one, write in place
const COMPRESSED = 0x40000000;    // bit 62
const ZERO = 1;                   // bit 0 (version 3): reads as zeros
const OFFSET_HIGH = 0x00ffffff;   // bits 32-55 of a host offset
const OFFSET_LOW = 0xfffffe00;    // bits 9-31
const BEYOND_2_53 = 0x00e00000;   // bits 53-55: offsets JS numbers cannot hold exactly

/** A 64-bit field as a number; `what` names it in the error when it does not fit. */
export function getU64(view: DataView, at: number, what: string, file: string): number {
  const value = view.getBigUint64(at);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new InputError(`${file}: ${what} is 0x${value.toString(16)}, beyond what tsvmm handles (corrupt image?)`);
  }
  return Number(value);
}

export function setU64(view: DataView, at: number, value: number): void {
  view.setBigUint64(at, BigInt(value));
}

/** Where a guest cluster's data is, as one L2 entry describes it. */
export type ClusterMapping =
  | { kind: 'unallocated' }
  /** Reads as zeros; `hostOffset` is a preallocated cluster, or 0. */
  | { kind: 'zero'; hostOffset: number; copied: boolean }
  | { kind: 'normal'; hostOffset: number; copied: boolean }
  /** Deflate data of `compressedSize` bytes at the unaligned `hostOffset`. */
  | { kind: 'compressed'; hostOffset: number; compressedSize: number };

const UNALLOCATED: ClusterMapping = { kind: 'unallocated' };

function hostOffsetOf(high: number, low: number, file: string): number {
  if (high & BEYOND_2_53) throw new InputError(`${file}: a table entry points beyond 2^53 bytes (corrupt image?)`);
  return (high & OFFSET_HIGH) * TWO_32 + ((low & OFFSET_LOW) >>> 0);
}

/** Decodes the L2 entry at byte `at` of an L2 table. */
export function readL2Entry(table: DataView, at: number, clusterBits: number, version: number, file: string): ClusterMapping {
  const high = table.getUint32(at);
  const low = table.getUint32(at + 4);
  if (high & COMPRESSED) return readCompressedEntry(table.getBigUint64(at), clusterBits, file);
  const hostOffset = hostOffsetOf(high, low, file);
  const copied = (high & COPIED) !== 0;
  if (version >= 3 && (low & ZERO)) return { kind: 'zero', hostOffset, copied };
  if (hostOffset === 0) {
    if (copied) throw new InputError(`${file}: an L2 entry has host offset 0 with the copied flag (corrupt image)`);
    return UNALLOCATED;
  }
  return { kind: 'normal', hostOffset, copied };
}

function readCompressedEntry(entry: bigint, clusterBits: number, file: string): ClusterMapping {
  // x = 62 - (cluster_bits - 8) bits of byte offset, then the count of extra sectors.
  const offsetBits = BigInt(62 - (clusterBits - 8));
  const descriptor = entry & ((1n << 62n) - 1n);
  const offset = descriptor & ((1n << offsetBits) - 1n);
  const extraSectors = Number(descriptor >> offsetBits);
  if (offset > BigInt(Number.MAX_SAFE_INTEGER)) throw new InputError(`${file}: a compressed cluster lies beyond 2^53 bytes (corrupt image?)`);
  const hostOffset = Number(offset);
  const compressedSize = (extraSectors + 1) * COMPRESSED_SECTOR_SIZE - (hostOffset % COMPRESSED_SECTOR_SIZE);
  return { kind: 'compressed', hostOffset, compressedSize };
}

/** Encodes a standard (uncompressed, not zero) L2 entry, or an L1 entry: the same bits. */
export function writeTableEntry(table: DataView, at: number, hostOffset: number, copied: boolean): void {
  const high = Math.floor(hostOffset / TWO_32);
  table.setUint32(at, (copied ? (high | COPIED) : high) >>> 0);
  table.setUint32(at + 4, hostOffset % TWO_32);
}

/** Sets or clears the copied flag (bit 63) of an L1 entry or an uncompressed L2 entry, leaving the other bits. */
export function setCopiedFlag(table: DataView, at: number, copied: boolean): void {
  const high = table.getUint32(at);
  table.setUint32(at, (copied ? (high | COPIED) : (high & ~COPIED)) >>> 0);
}

/** An L1 entry: the L2 table's host offset (0 when none) and whether it is referenced only once. */
export function readL1Entry(table: DataView, at: number, file: string): { l2Offset: number; copied: boolean } {
  const high = table.getUint32(at);
  return { l2Offset: hostOffsetOf(high, table.getUint32(at + 4), file), copied: (high & COPIED) !== 0 };
}

/** A refcount table entry: the refcount block's offset (bits 9-63), 0 when not allocated. */
export function readRefcountTableEntry(table: DataView, at: number, file: string): number {
  const offset = getU64(table, at, 'a refcount table entry', file);
  return offset - (offset % 512);
}
