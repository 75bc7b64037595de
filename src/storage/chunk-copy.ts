// Reading and writing whole chunks of a virtual disk for a block migration:
// the source sends a chunk that reads as zeros as a marker without data, and
// the destination makes the same range read as zeros without writing zeros
// where it already does (a fresh image stays sparse).
import type { BlockBackend } from './block-backend.ts';

const ZEROS = new Uint8Array(1 << 20);

function isAllZero(bytes: Uint8Array): boolean {
  for (let at = 0; at < bytes.length; at += ZEROS.length) {
    const part = bytes.subarray(at, Math.min(at + ZEROS.length, bytes.length));
    if (!Buffer.from(part.buffer, part.byteOffset, part.length).equals(ZEROS.subarray(0, part.length))) return false;
  }
  return true;
}

/** True when the backend says, without reading, that the whole range reads as zeros. */
function knownZero(disk: BlockBackend, offset: number, length: number): boolean {
  for (let at = offset; at < offset + length;) {
    const status = disk.blockStatus(at, offset + length - at);
    if (status.kind !== 'zero') return false;
    at += status.length;
  }
  return true;
}

/** The `length` bytes at `offset` (inside the disk), or null when they read as zeros. */
export function readChunk(disk: BlockBackend, offset: number, length: number): Uint8Array | null {
  if (knownZero(disk, offset, length)) return null;
  const data = new Uint8Array(length);
  disk.read(offset, data);
  return isAllZero(data) ? null : data;
}

/** Makes [offset, offset + length) read as `data`, or as zeros when data is null. */
export function writeChunk(disk: BlockBackend, offset: number, length: number, data: Uint8Array | null): void {
  if (data !== null) {
    disk.write(offset, data);
    return;
  }
  if (readChunk(disk, offset, length) === null) return;
  disk.write(offset, ZEROS.length >= length ? ZEROS.subarray(0, length) : new Uint8Array(length));
}
