// Which chunks of a disk the guest wrote while a block migration copies it.
// The virtio-blk device marks every write it carries out (in the I/O thread);
// the migration (in the main thread) harvests the marks and sends those
// chunks again. One bit per DISK_CHUNK_SIZE bytes of the virtual disk, in a
// SharedArrayBuffer both threads reach with Atomics (memory/dirty-bitmap.ts),
// as DirtyPageLog does for guest RAM. Marking is a single load while no
// migration runs.
import { DirtyBitmap } from '../memory/dirty-bitmap.ts';

/** The unit a block migration copies and tracks: 1 MiB, as QEMU's block migration's BLK_MIG_BLOCK_SIZE. */
export const DISK_CHUNK_SIZE = 1 << 20;

export class DiskDirtyLog extends DirtyBitmap {
  /** A log for a disk of `diskSize` bytes, not logging yet. */
  static create(diskSize: number): SharedArrayBuffer {
    return DirtyBitmap.buffer(chunkCount(diskSize));
  }

  constructor(buffer: SharedArrayBuffer) {
    super(buffer, DISK_CHUNK_SIZE);
  }
}

/** Chunks of a disk of `diskSize` bytes (the last may be short). */
export function chunkCount(diskSize: number): number {
  return Math.ceil(diskSize / DISK_CHUNK_SIZE);
}
