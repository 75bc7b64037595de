// Reaching into a qcow2 file by hand, to build images tsvmm would never write
// (zero clusters, damaged refcounts, corrupt headers).
import { closeSync, openSync, readSync, writeSync } from 'node:fs';

export function readBytes(path: string, offset: number, length: number): Uint8Array {
  const fd = openSync(path, 'r');
  try {
    const bytes = new Uint8Array(length);
    readSync(fd, bytes, 0, length, offset);
    return bytes;
  } finally {
    closeSync(fd);
  }
}

export function writeBytes(path: string, offset: number, bytes: Uint8Array): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
}

export function readU64(path: string, offset: number): bigint {
  return new DataView(readBytes(path, offset, 8).buffer).getBigUint64(0);
}

export function writeU64(path: string, offset: number, value: bigint): void {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, value);
  writeBytes(path, offset, bytes);
}

export function writeU32(path: string, offset: number, value: number): void {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value);
  writeBytes(path, offset, bytes);
}

export function writeU16(path: string, offset: number, value: number): void {
  writeBytes(path, offset, new Uint8Array([value >> 8, value & 0xff]));
}

const OFFSET_MASK = 0x00fffffffffffe00n;

/** File offset of the L2 entry for guest cluster `cluster` (its L2 table must exist). */
export function l2EntryOffset(path: string, cluster: number, clusterSize: number): number {
  const l1Offset = Number(readU64(path, 40));
  const entries = clusterSize / 8;
  const l2Offset = Number(readU64(path, l1Offset + Math.floor(cluster / entries) * 8) & OFFSET_MASK);
  if (l2Offset === 0) throw new Error(`guest cluster ${cluster} has no L2 table`);
  return l2Offset + (cluster % entries) * 8;
}

/** File offset of the 16-bit refcount of host cluster `cluster` (first refcount block only). */
export function refcountOffset(path: string, cluster: number): number {
  const tableOffset = Number(readU64(path, 48));
  return Number(readU64(path, tableOffset)) + cluster * 2;
}
