// A disk image in a byte array, for driving virtio-blk without files: the
// tests fill it with a pattern, read what the device wrote, and can make its
// reads fail like a broken host disk.
import type { BlockBackend, BlockStatus } from '../../src/storage/block-backend.ts';

export class MemoryDisk implements BlockBackend {
  readonly size: number;
  readonly readOnly: boolean;
  readonly description = 'memory disk';
  flushes = 0;
  /** Makes every read throw, as an I/O error on the host's disk would. */
  failReads = false;

  /** `bytes` is the disk's content, used in place (a multiple of 512 bytes). */
  constructor(readonly bytes: Uint8Array, options: { readOnly?: boolean } = {}) {
    this.size = bytes.length;
    this.readOnly = options.readOnly ?? false;
  }

  /** A disk of `sectors` sectors whose byte i is `pattern(i)`. */
  static filled(sectors: number, pattern: (i: number) => number = () => 0, options: { readOnly?: boolean } = {}): MemoryDisk {
    return new MemoryDisk(new Uint8Array(sectors * 512).map((_, i) => pattern(i) & 0xff), options);
  }

  read(offset: number, buffer: Uint8Array): void {
    if (this.failReads) throw new Error('host disk on fire');
    buffer.set(this.bytes.subarray(offset, offset + buffer.length));
  }

  write(offset: number, data: Uint8Array): void {
    this.bytes.set(data, offset);
  }

  blockStatus(_offset: number, length: number): BlockStatus {
    return { kind: 'data', length };
  }

  flush(): void {
    this.flushes++;
  }

  close(): void {}
}

/** A virtio-blk request header (virtio 1.2, 5.2.6): type, reserved, sector, little-endian. */
export function blkRequestHeader(type: number, sector: number): Uint8Array {
  const bytes = new Uint8Array(16);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, type, true);
  view.setBigUint64(8, BigInt(sector), true);
  return bytes;
}
