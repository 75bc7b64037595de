// Guest RAM as the host sees it: guest-physical ranges backed by host memory,
// with bounds-checked access. Devices use this to read descriptors and move
// data; nothing here knows how the host memory was obtained.
import { hex } from '../hex.ts';

/** One guest-physical range of RAM and the host memory behind it. */
export interface RamRange {
  /** First guest-physical address. */
  readonly guestAddress: number;
  /** Length in bytes. */
  readonly size: number;
  /** The host bytes behind [guestAddress, guestAddress + size), in order. */
  readonly chunks: readonly Uint8Array[];
}

/**
 * Host views are cut into chunks of at most this size: V8 cannot hold an
 * ArrayBuffer over native memory larger than 4 GiB. The cut is invisible to
 * the guest: every accessor takes any range inside RAM, chunk boundaries
 * included.
 */
export const CHUNK_SHIFT = 30;
export const CHUNK_SIZE = 2 ** CHUNK_SHIFT;

export class GuestMemoryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GuestMemoryError';
  }
}

interface Chunk {
  readonly start: number;
  readonly end: number;
  /** end - start, kept so the fast path compares against one field. */
  readonly length: number;
  readonly bytes: Uint8Array;
  readonly view: DataView;
}

/**
 * Guest-physical memory. Every access is checked: an address or length that
 * is not entirely inside guest RAM throws GuestMemoryError, never wraps and
 * never touches host memory outside the guest's. Any range inside RAM works,
 * wherever the host chunks meet; only slices() shows the chunks, as one view
 * per chunk for zero-copy I/O.
 */
export class GuestMemory {
  private readonly chunks: Chunk[] = [];
  /** Where a value that straddles two chunks is put together (at most 8 bytes). */
  private readonly scratch = new Uint8Array(8);
  private readonly scratchView = new DataView(this.scratch.buffer);
  /** Total bytes of RAM. */
  readonly size: number;
  /** One past the highest RAM address. */
  readonly end: number;

  constructor(readonly ranges: readonly RamRange[]) {
    let total = 0;
    for (const range of [...ranges].sort((a, b) => a.guestAddress - b.guestAddress)) {
      let at = range.guestAddress;
      let covered = 0;
      for (const bytes of range.chunks) {
        if (bytes.length === 0 || bytes.length > CHUNK_SIZE) throw new GuestMemoryError(`RAM chunk of ${bytes.length} bytes`);
        this.chunks.push({ start: at, end: at + bytes.length, length: bytes.length, bytes, view: new DataView(bytes.buffer, bytes.byteOffset, bytes.length) });
        at += bytes.length;
        covered += bytes.length;
      }
      if (covered !== range.size) throw new GuestMemoryError(`RAM range at ${hex(range.guestAddress)}: chunks cover ${covered} of ${range.size} bytes`);
      total += range.size;
    }
    for (let i = 1; i < this.chunks.length; i++) {
      if (this.chunks[i]!.start < this.chunks[i - 1]!.end) throw new GuestMemoryError(`RAM ranges overlap at ${hex(this.chunks[i]!.start)}`);
    }
    this.size = total;
    this.end = this.chunks.length ? this.chunks[this.chunks.length - 1]!.end : 0;
  }

  /**
   * Plain JS memory (tests, and devices exercised without KVM). A smaller
   * `chunkSize` puts host chunk boundaries into small test memories.
   */
  static ofArrayBuffers(layout: readonly { guestAddress: number; size: number }[], chunkSize = CHUNK_SIZE): GuestMemory {
    return new GuestMemory(layout.map(({ guestAddress, size }) => {
      const chunks: Uint8Array[] = [];
      for (let off = 0; off < size; off += chunkSize) chunks.push(new Uint8Array(Math.min(chunkSize, size - off)));
      return { guestAddress, size, chunks };
    }));
  }

  /** True when [address, address + length) is all RAM. */
  contains(address: number, length: number): boolean {
    if (!Number.isSafeInteger(address) || !Number.isSafeInteger(length) || address < 0 || length < 0) return false;
    let at = address;
    const end = address + length;
    while (at < end) {
      const chunk = this.chunkAt(at);
      if (!chunk) return false;
      at = chunk.end;
    }
    return length > 0 || this.chunkAt(address) !== undefined;
  }

  // Scalar accessors. The fast path is one chunk lookup and one compare (does
  // the value end inside that chunk?); a value that straddles two host chunks
  // is the rare case and goes byte by byte through a scratch buffer, so no
  // access ever allocates.

  readU8(address: number): number {
    const c = this.chunkHolding(address);
    return c.bytes[address - c.start]!;
  }

  readU16(address: number): number {
    const c = this.chunkHolding(address);
    const offset = address - c.start;
    if (offset + 2 <= c.length) return c.view.getUint16(offset, true);
    return this.gatherScratch(address, 2).getUint16(0, true);
  }

  readU32(address: number): number {
    const c = this.chunkHolding(address);
    const offset = address - c.start;
    if (offset + 4 <= c.length) return c.view.getUint32(offset, true);
    return this.gatherScratch(address, 4).getUint32(0, true);
  }

  readU64(address: number): bigint {
    const c = this.chunkHolding(address);
    const offset = address - c.start;
    if (offset + 8 <= c.length) return c.view.getBigUint64(offset, true);
    return this.gatherScratch(address, 8).getBigUint64(0, true);
  }

  writeU8(address: number, value: number): void {
    const c = this.chunkHolding(address);
    c.bytes[address - c.start] = value;
  }

  writeU16(address: number, value: number): void {
    const c = this.chunkHolding(address);
    const offset = address - c.start;
    if (offset + 2 <= c.length) return c.view.setUint16(offset, value, true);
    this.scratchView.setUint16(0, value, true);
    this.scatterScratch(address, 2);
  }

  writeU32(address: number, value: number): void {
    const c = this.chunkHolding(address);
    const offset = address - c.start;
    if (offset + 4 <= c.length) return c.view.setUint32(offset, value >>> 0, true);
    this.scratchView.setUint32(0, value >>> 0, true);
    this.scatterScratch(address, 4);
  }

  writeU64(address: number, value: bigint): void {
    const c = this.chunkHolding(address);
    const offset = address - c.start;
    if (offset + 8 <= c.length) return c.view.setBigUint64(offset, BigInt.asUintN(64, value), true);
    this.scratchView.setBigUint64(0, BigInt.asUintN(64, value), true);
    this.scatterScratch(address, 8);
  }

  /** The guest bytes of any RAM range, as one view per host chunk it spans. */
  slices(address: number, length: number): Uint8Array[] {
    this.check(address, length);
    const out: Uint8Array[] = [];
    let at = address;
    const end = address + length;
    while (at < end) {
      const c = this.chunkAt(at)!;
      const stop = Math.min(end, c.end);
      out.push(c.bytes.subarray(at - c.start, stop - c.start));
      at = stop;
    }
    return out;
  }

  /** Copies guest bytes out. */
  read(address: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    let at = 0;
    for (const part of this.slices(address, length)) {
      out.set(part, at);
      at += part.length;
    }
    return out;
  }

  /** Copies bytes into guest RAM. */
  write(address: number, data: Uint8Array): void {
    let at = 0;
    for (const part of this.slices(address, data.length)) {
      part.set(data.subarray(at, at + part.length));
      at += part.length;
    }
  }

  fill(address: number, length: number, value: number): void {
    for (const part of this.slices(address, length)) part.fill(value);
  }

  private chunkAt(address: number): Chunk | undefined {
    // A VM has a handful of chunks: a linear scan beats anything cleverer.
    for (const c of this.chunks) if (address >= c.start && address < c.end) return c;
    return undefined;
  }

  /** The chunk holding the byte at `address`, or a GuestMemoryError. */
  private chunkHolding(address: number): Chunk {
    // A fraction would be truncated by the DataView: a different byte than asked for.
    const c = Number.isSafeInteger(address) ? this.chunkAt(address) : undefined;
    if (c === undefined) this.check(address, 1);
    return c!;
  }

  /** Copies the `length` (<= 8) guest bytes at `address` into the scratch buffer. */
  private gatherScratch(address: number, length: number): DataView {
    this.check(address, length);
    for (let i = 0; i < length; i++) {
      const c = this.chunkAt(address + i)!;
      this.scratch[i] = c.bytes[address + i - c.start]!;
    }
    return this.scratchView;
  }

  /** Copies the first `length` bytes of the scratch buffer to guest `address`. */
  private scatterScratch(address: number, length: number): void {
    this.check(address, length);
    for (let i = 0; i < length; i++) {
      const c = this.chunkAt(address + i)!;
      c.bytes[address + i - c.start] = this.scratch[i]!;
    }
  }

  private check(address: number, length: number): void {
    if (!this.contains(address, length)) {
      throw new GuestMemoryError(`guest access at ${hex(address)}+${length} is outside guest RAM (${this.describe()})`);
    }
  }

  private describe(): string {
    return this.ranges.map((r) => `${hex(r.guestAddress)}-${hex(r.guestAddress + r.size - 1)}`).join(', ') || 'none';
  }
}
