// Damaged qcow2 images, built from an image qemu-img made and qemu-io wrote,
// by patching the bytes a corrupt image would have wrong. The script is kept,
// not the images: each test builds its own in a scratch directory.
import { copyFileSync } from 'node:fs';
import { qemuImg, qemuIo } from './images.ts';
import { l2EntryOffset, readBytes, readU64, writeBytes, writeU16, writeU32, writeU64 } from './patch.ts';

export const CLUSTER = 65536;
const COPIED = 1n << 63n;
const OFFSET_MASK = 0x00fffffffffffe00n;

/** Where a small image's metadata is, as its header says. */
export interface Layout {
  l1: number;
  refcountTable: number;
  refcountBlock0: number;
  l2ForCluster0: number;
  /** Host offset of guest cluster 0's data. */
  data0: number;
}

export function layoutOf(path: string): Layout {
  const l1 = Number(readU64(path, 40));
  const refcountTable = Number(readU64(path, 48));
  return {
    l1,
    refcountTable,
    refcountBlock0: Number(readU64(path, refcountTable)),
    l2ForCluster0: Number(readU64(path, l1) & OFFSET_MASK),
    data0: Number(readU64(path, l2EntryOffset(path, 0, CLUSTER)) & OFFSET_MASK),
  };
}

/**
 * A 64 MiB image with 64 KiB clusters and 16-bit refcounts, guest clusters 0
 * and 1 written with 0x11, and 1 MiB at 4 MiB with 0x22: header, refcount
 * table, one refcount block, L1, one L2 table, data. `compat` 0.10 is version 2.
 */
export function makeBaseImage(path: string, compat: '1.1' | '0.10' = '1.1'): Layout {
  qemuImg(['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${CLUSTER},compat=${compat}`, path, '64M']);
  qemuIo(path, ['write -P 0x11 0 128k', 'write -P 0x22 4M 1M']);
  return layoutOf(path);
}

/** The 16-bit refcount of host cluster `cluster` (first refcount block). */
function setRefcount(path: string, layout: Layout, cluster: number, value: number): void {
  writeU16(path, layout.refcountBlock0 + cluster * 2, value);
}

/** Each way of damaging an image the audit found, by name: it patches `path` in place. */
export const DAMAGES = {
  /** Refcount table entry 0 is zero: clusters 0.. look free, header included. */
  'refcount table entry 0 zero': (path: string, layout: Layout) => writeU64(path, layout.refcountTable, 0n),
  /** Refcount table entry 0 points at the refcount table itself. */
  'refcount table entry pointing at itself': (path: string, layout: Layout) => writeU64(path, layout.refcountTable, BigInt(layout.refcountTable)),
  /** The header, L1 and L2 clusters counted 0: the allocator would hand them out. */
  'metadata refcounts zero': (path: string, layout: Layout) => {
    for (const offset of [0, layout.l1, layout.l2ForCluster0]) setRefcount(path, layout, offset / CLUSTER, 0);
  },
  /** Guest cluster 0 maps (copied: written in place) to the refcount table. */
  'L2 entry pointing at the refcount table': (path: string, layout: Layout) => pointCluster0At(path, layout.refcountTable),
  'L2 entry pointing at the L1 table': (path: string, layout: Layout) => pointCluster0At(path, layout.l1),
  'L2 entry pointing at its own L2 table': (path: string, layout: Layout) => pointCluster0At(path, layout.l2ForCluster0),
  'L2 entry pointing at a refcount block': (path: string, layout: Layout) => pointCluster0At(path, layout.refcountBlock0),
} as const;

export type DamageName = keyof typeof DAMAGES;

function pointCluster0At(path: string, hostOffset: number): void {
  writeU64(path, l2EntryOffset(path, 0, CLUSTER), BigInt(hostOffset) | COPIED);
}

/**
 * Item 9 of the audit: guest cluster 0 says "shared" (copied flag clear) and
 * names a host cluster far past the end of the file, which no refcount block
 * counts. A write there copies the cluster and, at the next flush or close,
 * frees the old one: its refcount would go below zero.
 */
export const FAR_CLUSTER = 4295032833;

export function sharedBeyondRefcounts(path: string): void {
  writeU64(path, l2EntryOffset(path, 0, CLUSTER), BigInt(FAR_CLUSTER) * BigInt(CLUSTER));
}

/** refcount_order 7 (128-bit refcounts): out of range. */
export function refcountOrderOutOfRange(path: string): void {
  writeU32(path, 96, 7);
}

/** The header's bytes, the incompatible "corrupt" bit (bit 1 of byte 79) masked out. */
export function headerWithoutCorruptBit(path: string, length = 104): Uint8Array {
  const bytes = readBytes(path, 0, length);
  if (length > 79) bytes[79] = bytes[79]! & ~0x02;
  return bytes;
}

export function isMarkedCorrupt(path: string): boolean {
  return (readBytes(path, 79, 1)[0]! & 0x02) !== 0;
}

/** Sets the corrupt bit, as QEMU leaves an image it found corrupt. */
export function markCorrupt(path: string): void {
  writeBytes(path, 79, Uint8Array.of(readBytes(path, 79, 1)[0]! | 0x02));
}

export function copyImage(from: string, to: string): string {
  copyFileSync(from, to);
  return to;
}
