// What a disk device sees of a disk image: synchronous, byte-addressed reads
// and writes of the virtual disk. The device runs these in its I/O worker
// thread, and the buffers it passes are often views straight into guest RAM.
export { StorageError } from './errors.ts';
export { openDisk, type DiskFormat, type OpenDiskOptions } from './open-disk.ts';

/** What a range of the virtual disk holds, from its start: `length` bytes of one kind. */
export interface BlockStatus {
  /** data: read it; zero: reads as zeros; unallocated: neither this image nor its backing chain has it (reads as zeros). */
  kind: 'data' | 'zero' | 'unallocated';
  length: number;
}

export interface BlockBackend {
  /** Virtual disk size in bytes (a multiple of 512). */
  readonly size: number;
  readonly readOnly: boolean;
  /** Short description for messages: "disk.qcow2 (qcow2)". */
  readonly description: string;
  /** Fills `buffer` with the bytes at virtual offset `offset`. Throws StorageError on an I/O error. offset+length <= size (the caller checks). */
  read(offset: number, buffer: Uint8Array): void;
  /** Writes `data` at virtual offset `offset`. Throws StorageError if readOnly or on an I/O error. */
  write(offset: number, data: Uint8Array): void;
  /**
   * What the disk holds from `offset` (at most `length` bytes, at least one
   * byte): lets a copy skip what reads as zeros without reading it. Optional:
   * a backend without it is all data.
   */
  blockStatus?(offset: number, length: number): BlockStatus;
  /** Makes every completed write durable (fdatasync of the file(s), after metadata is written). */
  flush(): void;
  close(): void;
}
