// What a disk device sees of a disk image: synchronous, byte-addressed reads
// and writes of the virtual disk. The device runs these in its I/O worker
// thread, and the buffers it passes are often views straight into guest RAM.
export { ImageIoError } from './errors.ts';
export { openDisk, type DiskFormat, type OpenDiskOptions } from './open-disk.ts';

/**
 * What a range of the virtual disk holds, from its start: `length` bytes of
 * one kind. 'data': bytes to read. 'zero': reads as zeros without reading
 * (qcow2 zero clusters, and clusters allocated in no layer of the chain).
 * 'unallocated': this layer cannot tell, or defers to a layer below: read it
 * as data. Neither qcow2 nor raw images answer it (qcow2 asks its backing
 * chain in turn), but a consumer must accept it.
 */
export interface BlockStatus {
  kind: 'data' | 'zero' | 'unallocated';
  length: number;
}

export interface BlockBackend {
  /** Virtual disk size in bytes (a multiple of 512). */
  readonly size: number;
  readonly readOnly: boolean;
  /** Short description for messages: "disk.qcow2 (qcow2)". */
  readonly description: string;
  /** Fills `buffer` with the bytes at virtual offset `offset`. Throws InputError on a corrupt image, ImageIoError on a failed read. offset+length <= size (the caller checks). */
  read(offset: number, buffer: Uint8Array): void;
  /** Writes `data` at virtual offset `offset`. Throws InputError if readOnly or on a corrupt image, ImageIoError on a failed write. */
  write(offset: number, data: Uint8Array): void;
  /**
   * What the disk holds from `offset`: one kind of content over its first
   * `length` bytes at most (length > 0; offset+length <= size). Lets a copy
   * skip what reads as zeros at a cost that follows the allocated data.
   */
  blockStatus(offset: number, length: number): BlockStatus;
  /** Makes every completed write durable (fdatasync of the file(s), after metadata is written). */
  flush(): void;
  close(): void;
}
