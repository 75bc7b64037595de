// Which chunks of a disk the guest wrote while a block migration copies it.
// The virtio-blk device marks every write it carries out (in the I/O thread);
// the migration (in the main thread) harvests the marks and sends those
// chunks again. One bit per DISK_CHUNK_SIZE bytes of the virtual disk, in a
// SharedArrayBuffer both threads reach with Atomics, as DirtyPageLog does
// for guest RAM. Marking is a single load while no migration runs.

/** The unit a block migration copies and tracks: 1 MiB, as QEMU's block migration's BLK_MIG_BLOCK_SIZE. */
export const DISK_CHUNK_SIZE = 1 << 20;

/** Word 0: 1 while logging; then the bitmap, 32 chunks per word. */
const HEADER_WORDS = 1;

export class DiskDirtyLog {
  private readonly words: Int32Array;

  /** A log for a disk of `diskSize` bytes, not logging yet. */
  static create(diskSize: number): SharedArrayBuffer {
    return new SharedArrayBuffer((HEADER_WORDS + Math.ceil(chunkCount(diskSize) / 32)) * 4);
  }

  constructor(readonly buffer: SharedArrayBuffer) {
    this.words = new Int32Array(buffer);
  }

  get logging(): boolean {
    return Atomics.load(this.words, 0) === 1;
  }

  /** Starts logging, with nothing marked. */
  start(): void {
    this.words.fill(0, HEADER_WORDS);
    Atomics.store(this.words, 0, 1);
  }

  stop(): void {
    Atomics.store(this.words, 0, 0);
  }

  /** Marks the chunks of [offset, offset + length) written, while logging. */
  mark(offset: number, length: number): void {
    if (Atomics.load(this.words, 0) !== 1 || length <= 0) return;
    const capacity = (this.words.length - HEADER_WORDS) * 32;
    const last = Math.min(Math.floor((offset + length - 1) / DISK_CHUNK_SIZE), capacity - 1);
    for (let chunk = Math.floor(offset / DISK_CHUNK_SIZE); chunk <= last; chunk++) {
      Atomics.or(this.words, HEADER_WORDS + (chunk >>> 5), 1 << (chunk & 31));
    }
  }

  /** The chunk numbers marked since the last harvest, in order; clears them. */
  harvest(): number[] {
    const chunks: number[] = [];
    for (let w = HEADER_WORDS; w < this.words.length; w++) {
      if (Atomics.load(this.words, w) === 0) continue;
      const bits = Atomics.exchange(this.words, w, 0);
      for (let b = 0; b < 32; b++) if (bits & (1 << b)) chunks.push((w - HEADER_WORDS) * 32 + b);
    }
    return chunks;
  }
}

/** Chunks of a disk of `diskSize` bytes (the last may be short). */
export function chunkCount(diskSize: number): number {
  return Math.ceil(diskSize / DISK_CHUNK_SIZE);
}
