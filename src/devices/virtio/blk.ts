// virtio-blk (virtio 1.2, 5.2): one request queue; each request is a 16-byte
// header (type, sector), data buffers, and a status byte the device writes
// last. Reads and writes go straight between the disk backend and guest RAM,
// no copy in between.
import type { GuestMemory } from '../../memory/index.ts';
import type { BlockBackend } from '../../storage/block-backend.ts';
import { readChunk } from '../../storage/chunk-copy.ts';
import type { DiskDirtyLog } from '../../storage/dirty-chunks.ts';
import type { VirtioDevice, VirtioDeviceContext, VirtioDeviceInfo } from './device.ts';
import { gather, scatter, type DescriptorChain, type Virtqueue } from './queue.ts';
import { DeviceType, featureBit } from './spec.ts';

export const SECTOR_SIZE = 512;
const HEADER_SIZE = 16;
/** GET_ID answers with a serial of at most this many bytes (5.2.6). */
export const ID_BYTES = 20;
export const BLK_QUEUE_SIZE = 256;

export const BlkFeature = {
  SEG_MAX: 2n,
  RO: 5n,
  BLK_SIZE: 6n,
  FLUSH: 9n,
} as const;

export const BlkRequest = {
  IN: 0,
  OUT: 1,
  FLUSH: 4,
  GET_ID: 8,
} as const;

export const BlkStatus = {
  OK: 0,
  IOERR: 1,
  UNSUPP: 2,
} as const;

export interface BlkOptions {
  name: string;
  /** What GET_ID returns (the disk's serial number); cut to 20 bytes. */
  serial: string;
  /** Where the device marks what it writes while a block migration copies the disk. */
  dirtyLog?: DiskDirtyLog;
}

/** A header that arrived split over buffers, copied out so it reads like one in guest memory. */
function headerCopy(bytes: Uint8Array): Pick<GuestMemory, 'readU32'> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  return { readU32: (address) => view.getUint32(address, true) };
}

/** The configuration space (5.2.4): capacity in sectors, then the limits we announce. */
function blkConfig(capacitySectors: number, segMax: number): Uint8Array {
  const config = new Uint8Array(24);
  const view = new DataView(config.buffer);
  view.setBigUint64(0, BigInt(capacitySectors), true);
  view.setUint32(8, 0, true); // size_max: not offered
  view.setUint32(12, segMax, true);
  view.setUint32(20, SECTOR_SIZE, true); // blk_size
  return config;
}

export class VirtioBlk implements VirtioDevice {
  readonly info: VirtioDeviceInfo;
  private context: VirtioDeviceContext | null = null;
  private readonly serial: Uint8Array;
  private readonly dirtyLog: DiskDirtyLog | null;
  readonly counts = { reads: 0, writes: 0, flushes: 0, getIds: 0, bytesRead: 0, bytesWritten: 0, ioErrors: 0, unsupported: 0 };

  constructor(private readonly disk: BlockBackend, options: BlkOptions) {
    const capacitySectors = Math.floor(disk.size / SECTOR_SIZE);
    let features = featureBit(BlkFeature.SEG_MAX) | featureBit(BlkFeature.BLK_SIZE) | featureBit(BlkFeature.FLUSH);
    if (disk.readOnly) features |= featureBit(BlkFeature.RO);
    this.info = {
      type: DeviceType.BLOCK,
      name: options.name,
      features,
      queueMaxSizes: [BLK_QUEUE_SIZE],
      // A request needs a header and a status descriptor besides its data.
      config: blkConfig(capacitySectors, BLK_QUEUE_SIZE - 2),
    };
    this.serial = new TextEncoder().encode(options.serial).subarray(0, ID_BYTES);
    this.dirtyLog = options.dirtyLog ?? null;
  }

  /** The disk's virtual size in bytes. */
  get diskSize(): number {
    return this.disk.size;
  }

  /**
   * `length` bytes of the disk at `offset` for a block migration, or null when
   * they read as zeros. Called between requests, in the thread that owns the
   * disk: its cached qcow2 metadata is the current one.
   */
  copyOut(offset: number, length: number): Uint8Array | null {
    if (!(Number.isSafeInteger(offset) && Number.isSafeInteger(length) && offset >= 0 && length > 0 && offset + length <= this.disk.size)) {
      throw new RangeError(`${this.info.name}: ${length} bytes at ${offset} are outside the disk (${this.disk.size} bytes)`);
    }
    return readChunk(this.disk, offset, length);
  }

  activate(context: VirtioDeviceContext): void {
    this.context = context;
  }

  reset(): void {
    this.context = null;
  }

  processQueue(index: number): void {
    const context = this.context;
    context?.serve(index, (chain, queue) => this.complete(queue, chain, context));
  }

  /** A request the device cannot even parse goes back with nothing written. */
  private refuse(queue: Virtqueue, chain: DescriptorChain, context: VirtioDeviceContext, reason: string): void {
    context.countError(`${this.info.name}: ${reason}`);
    queue.pushUsed(chain.head, 0);
  }

  private complete(queue: Virtqueue, chain: DescriptorChain, context: VirtioDeviceContext): void {
    if (chain.error) return this.refuse(queue, chain, context, chain.error);
    if (chain.readableBytes < HEADER_SIZE) return this.refuse(queue, chain, context, `request header of ${chain.readableBytes} bytes`);
    if (chain.writableBytes < 1) return this.refuse(queue, chain, context, 'request without a status byte');

    // The header is almost always one buffer: read it in place, without a copy.
    const memory = context.memory;
    const first = chain.readable[0]!;
    const header = first.length >= HEADER_SIZE
      ? { address: first.address, memory }
      : { address: 0, memory: headerCopy(gather(memory, chain.readable, 0, HEADER_SIZE)) };
    const type = header.memory.readU32(header.address);
    // A sector past 2^53 bytes is past any disk: it fails the range check below.
    const sector = header.memory.readU32(header.address + 12) * 2 ** 32 + header.memory.readU32(header.address + 8);
    // The status byte is the last writable byte; the data sits between the header and it.
    const dataIn = chain.writableBytes - 1;
    const dataOut = chain.readableBytes - HEADER_SIZE;
    let status: number = BlkStatus.OK;
    let written = 0;
    try {
      switch (type) {
        case BlkRequest.IN:
          status = this.transfer(context, chain, sector, dataIn, 'read');
          if (status === BlkStatus.OK) written = dataIn;
          break;
        case BlkRequest.OUT:
          status = this.transfer(context, chain, sector, dataOut, 'write');
          break;
        case BlkRequest.FLUSH:
          this.disk.flush();
          this.counts.flushes++;
          break;
        case BlkRequest.GET_ID: {
          const length = Math.min(dataIn, ID_BYTES);
          const id = new Uint8Array(length);
          id.set(this.serial.subarray(0, length));
          scatter(context.memory, chain.writable, 0, id);
          written = length;
          this.counts.getIds++;
          break;
        }
        default:
          status = BlkStatus.UNSUPP;
          this.counts.unsupported++;
      }
    } catch (e) {
      // A failing host disk is the guest's I/O error, never the VMM's crash.
      status = BlkStatus.IOERR;
      context.countError(`${this.info.name}: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (status === BlkStatus.IOERR) this.counts.ioErrors++;
    const last = chain.writable[chain.writable.length - 1]!;
    memory.writeU8(last.address + last.length - 1, status);
    queue.pushUsed(chain.head, written + 1);
  }

  /** Moves `length` bytes between the disk at `sector` and the chain's data buffers, buffer by buffer. */
  private transfer(context: VirtioDeviceContext, chain: DescriptorChain, sector: number, length: number, direction: 'read' | 'write'): number {
    if (direction === 'write' && this.disk.readOnly) return BlkStatus.IOERR;
    if (length % SECTOR_SIZE !== 0) return BlkStatus.IOERR;
    let offset = sector * SECTOR_SIZE;
    if (offset + length > this.disk.size) return BlkStatus.IOERR;
    // Marked before the write: a migration that harvests after it reads it too.
    if (direction === 'write') this.dirtyLog?.mark(offset, length);
    const memory = context.memory;
    // Reads fill the writable buffers (all but the status byte); writes take
    // the readable ones after the header.
    const segments = direction === 'read' ? chain.writable : chain.readable;
    let skip = direction === 'read' ? 0 : HEADER_SIZE;
    let left = length;
    for (let i = 0; i < segments.length && left > 0; i++) {
      const segment = segments[i]!;
      if (skip >= segment.length) {
        skip -= segment.length;
        continue;
      }
      const span = Math.min(segment.length - skip, left);
      for (const view of memory.slices(segment.address + skip, span)) {
        if (direction === 'read') this.disk.read(offset, view);
        else this.disk.write(offset, view);
        offset += view.length;
      }
      left -= span;
      skip = 0;
    }
    if (direction === 'read') {
      this.counts.reads++;
      this.counts.bytesRead += length;
    } else {
      this.counts.writes++;
      this.counts.bytesWritten += length;
    }
    return BlkStatus.OK;
  }

  flush(): void {
    if (!this.disk.readOnly) this.disk.flush();
  }

  close(): void {
    this.disk.close();
  }

  report(): Record<string, unknown> {
    return { ...this.counts };
  }
}
