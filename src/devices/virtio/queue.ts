// A split virtqueue (virtio 1.2, 2.7) from the device's side: take the
// buffers the driver made available, hand back used ones, and decide whether
// the driver wants an interrupt.
//
// Everything in the rings is written by the guest and is treated as hostile.
// A bad ring (addresses outside RAM, an avail index that jumps by more than
// the queue size, a head index past the table) breaks the queue: pop() throws
// VirtqueueError and the device should enter NEEDS_RESET. A bad chain (a
// descriptor outside RAM, a loop, a zero length, a readable buffer after a
// writable one) fails only its request: the chain comes back with `error` set
// and the device completes it with nothing written.
import type { GuestMemory } from '../../memory/index.ts';
import type { DirtyPageLog } from '../../memory/dirty-pages.ts';
import { DescriptorFlag, VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_USED_F_NO_NOTIFY } from './spec.ts';
import { hex } from '../../hex.ts';

export const MAX_QUEUE_SIZE = 32768;
const DESCRIPTOR_SIZE = 16;
/** The used length is a 32-bit field; a chain may not promise more. */
const MAX_CHAIN_BYTES = 0xffff_ffff;

/** A full memory barrier: a locked instruction on x86 orders every earlier store before every later load. */
const fenceWord = new Int32Array(new SharedArrayBuffer(4));
function memoryBarrier(): void {
  Atomics.add(fenceWord, 0, 0);
}

export class VirtqueueError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VirtqueueError';
  }
}

/** Where the driver placed the three parts of the queue, and how many entries it has. */
export interface QueueAddresses {
  size: number;
  /** Descriptor table. */
  descriptors: number;
  /** Driver area: the available ring. */
  available: number;
  /** Device area: the used ring. */
  used: number;
}

export interface QueueFeatures {
  eventIndex: boolean;
  indirectDescriptors: boolean;
}

/**
 * The device's place in a queue's rings: all a queue keeps between requests
 * (the rings themselves are in guest RAM). Free-running 16-bit indexes.
 */
export interface QueuePosition {
  /** The next available entry to take. */
  nextAvailable: number;
  /** The used index after the elements pushed so far (published: used.idx in guest RAM). */
  nextUsed: number;
  /** The used index when the device last decided about an interrupt (EVENT_IDX bookkeeping). */
  usedAtLastSignal: number;
}

const START: QueuePosition = { nextAvailable: 0, nextUsed: 0, usedAtLastSignal: 0 };

/** One guest-physical buffer of a chain. */
export interface BufferSegment {
  address: number;
  length: number;
}

/** A request: the driver-readable buffers, then the device-writable ones. */
export class DescriptorChain {
  readonly readable: BufferSegment[] = [];
  readonly writable: BufferSegment[] = [];
  readableBytes = 0;
  writableBytes = 0;
  /** Why the chain is malformed; the device must complete it without using it. */
  error: string | null = null;

  constructor(readonly head: number) {}
}

/**
 * Reads `length` bytes at `offset` into the concatenation of `segments`
 * (scatter-gather copy out of guest memory).
 */
export function gather(memory: GuestMemory, segments: readonly BufferSegment[], offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let done = 0;
  forEachSpan(segments, offset, length, (address, spanLength) => {
    out.set(memory.read(address, spanLength), done);
    done += spanLength;
  });
  return out;
}

/** Writes `data` at `offset` into the concatenation of `segments`. */
export function scatter(memory: GuestMemory, segments: readonly BufferSegment[], offset: number, data: Uint8Array): void {
  let done = 0;
  forEachSpan(segments, offset, data.length, (address, spanLength) => {
    memory.write(address, data.subarray(done, done + spanLength));
    done += spanLength;
  });
}

/** Calls `visit` for each guest-physical span covering [offset, offset+length) of the segments. */
export function forEachSpan(
  segments: readonly BufferSegment[], offset: number, length: number, visit: (address: number, length: number) => void,
): void {
  let skip = offset;
  let left = length;
  for (const segment of segments) {
    if (left === 0) return;
    if (skip >= segment.length) {
      skip -= segment.length;
      continue;
    }
    const span = Math.min(segment.length - skip, left);
    visit(segment.address + skip, span);
    left -= span;
    skip = 0;
  }
  if (left > 0) throw new VirtqueueError(`buffer of ${offset + length - left} bytes is too short for ${offset + length}`);
}

export class Virtqueue {
  readonly size: number;
  private readonly descriptors: number;
  private readonly available: number;
  private readonly used: number;
  /** Index (free-running, mod 2^16) of the next available entry to take. */
  private nextAvailable = 0;
  /** The used index after the elements pushed so far. */
  private nextUsed = 0;
  /** The used index the driver can see. */
  private publishedUsed = 0;
  /** The used index when we last decided about an interrupt. */
  private usedAtLastSignal = 0;

  /** Each taken chain's writable buffers by head, kept while pages written are logged. */
  private readonly writableByHead: (readonly BufferSegment[])[] = [];

  /**
   * `from`: where a saved device left the queue (position()); absent, the
   * queue starts where a driver's fresh rings do, at 0. `dirty`: where pages
   * this queue writes in guest RAM are logged while a migration runs.
   */
  constructor(
    private readonly memory: GuestMemory, addresses: QueueAddresses, private readonly features: QueueFeatures, from: QueuePosition = START,
    private readonly dirty: DirtyPageLog | null = null,
  ) {
    const { size } = addresses;
    if (!Number.isInteger(size) || size < 1 || size > MAX_QUEUE_SIZE || (size & (size - 1)) !== 0) {
      throw new VirtqueueError(`queue size ${size} is not a power of 2 up to ${MAX_QUEUE_SIZE}`);
    }
    this.size = size;
    this.descriptors = addresses.descriptors;
    this.available = addresses.available;
    this.used = addresses.used;
    // Alignment and extent of the three areas (2.7: 16, 2 and 4 bytes), with
    // the event index words at their ends.
    this.checkArea('descriptor table', this.descriptors, 16, DESCRIPTOR_SIZE * size);
    this.checkArea('available ring', this.available, 2, 6 + 2 * size);
    this.checkArea('used ring', this.used, 4, 6 + 8 * size);
    this.nextAvailable = from.nextAvailable & 0xffff;
    this.nextUsed = from.nextUsed & 0xffff;
    // A saved position was taken after publishing, so used.idx already says nextUsed.
    this.publishedUsed = this.nextUsed;
    this.usedAtLastSignal = from.usedAtLastSignal & 0xffff;
  }

  /**
   * Where the device is in the rings, to save it. Call between requests
   * (after publishUsed), never with a chain popped and not yet pushed,
   * unless the caller gives that chain back (see VirtioDevice.heldBuffers).
   */
  position(): QueuePosition {
    return { nextAvailable: this.nextAvailable, nextUsed: this.nextUsed, usedAtLastSignal: this.usedAtLastSignal };
  }

  private checkArea(what: string, address: number, alignment: number, length: number): void {
    if (address % alignment !== 0) throw new VirtqueueError(`${what} at ${hex(address)} is not ${alignment}-byte aligned`);
    if (!this.memory.contains(address, length)) {
      throw new VirtqueueError(`${what} at ${hex(address)} (+${length}) is outside guest RAM`);
    }
  }

  /** Buffers made available and not yet taken. Throws when the driver's index is impossible. */
  pending(): number {
    const availableIndex = this.memory.readU16(this.available + 2);
    const count = (availableIndex - this.nextAvailable) & 0xffff;
    if (count > this.size) {
      throw new VirtqueueError(`available index jumped by ${count}, more than the queue size ${this.size}`);
    }
    return count;
  }

  /** The next available request, or null when the driver has made none. */
  pop(): DescriptorChain | null {
    if (this.pending() === 0) return null;
    const slot = this.nextAvailable % this.size;
    const head = this.memory.readU16(this.available + 4 + 2 * slot);
    if (head >= this.size) throw new VirtqueueError(`available ring entry ${slot} names descriptor ${head} of ${this.size}`);
    this.nextAvailable = (this.nextAvailable + 1) & 0xffff;
    const chain = new DescriptorChain(head);
    chain.error = this.walk(chain, this.descriptors, this.size, head, false);
    if (this.dirty !== null) this.writableByHead[head] = chain.writable;
    return chain;
  }

  /**
   * Follows a chain through a descriptor table (the queue's own, or an
   * indirect one) and sorts its buffers. Returns why it is malformed, or null.
   */
  private walk(chain: DescriptorChain, table: number, tableSize: number, first: number, indirect: boolean): string | null {
    let index = first;
    // A chain can visit each descriptor of its table at most once: any more is a loop.
    for (let visited = 0; visited < tableSize; visited++) {
      const at = table + DESCRIPTOR_SIZE * index;
      // Two 32-bit halves rather than a BigInt: this runs for every buffer of every request.
      const addressHigh = this.memory.readU32(at + 4);
      const address = addressHigh * 2 ** 32 + this.memory.readU32(at);
      const length = this.memory.readU32(at + 8);
      const flags = this.memory.readU16(at + 12);
      const next = this.memory.readU16(at + 14);

      if (flags & DescriptorFlag.INDIRECT) {
        if (indirect) return 'an indirect table names another indirect table';
        if (!this.features.indirectDescriptors) return 'indirect descriptor without VIRTIO_F_INDIRECT_DESC';
        if (flags & DescriptorFlag.NEXT) return 'indirect descriptor with NEXT set';
        if (length === 0 || length % DESCRIPTOR_SIZE !== 0) return `indirect table of ${length} bytes`;
        // A chain may not be longer than the queue (2.7.5.3.1), indirect or not:
        // this also bounds the walk of a table the size of guest RAM.
        if (length / DESCRIPTOR_SIZE > this.size) return `indirect table of ${length / DESCRIPTOR_SIZE} descriptors, more than the queue size ${this.size}`;
        if (!this.memory.contains(address, length)) {
          return `indirect table at 0x${address.toString(16)} (+${length}) is outside guest RAM`;
        }
        if (chain.readable.length + chain.writable.length > 0) return 'indirect descriptor after direct ones';
        return this.walk(chain, address, length / DESCRIPTOR_SIZE, 0, true);
      }

      if (length === 0) return `descriptor ${index} has length 0`;
      if (!this.memory.contains(address, length)) {
        return `descriptor ${index}: buffer at 0x${address.toString(16)} (+${length}) is outside guest RAM`;
      }
      const segment = { address, length };
      if (flags & DescriptorFlag.WRITE) {
        chain.writable.push(segment);
        chain.writableBytes += length;
      } else {
        if (chain.writable.length > 0) return `descriptor ${index}: a device-readable buffer after a writable one`;
        chain.readable.push(segment);
        chain.readableBytes += length;
      }
      if (chain.readableBytes + chain.writableBytes > MAX_CHAIN_BYTES) return 'chain longer than 4 GiB';

      if (!(flags & DescriptorFlag.NEXT)) return null;
      if (next >= tableSize) return `descriptor ${index} chains to ${next}, past the table of ${tableSize}`;
      index = next;
    }
    return `chain from descriptor ${first} loops (more than ${tableSize} descriptors)`;
  }

  /**
   * Returns a request to the driver with `written` bytes written into its
   * writable buffers. The driver sees it once publishUsed() moves used.idx.
   */
  pushUsed(head: number, written: number): void {
    const slot = this.nextUsed % this.size;
    const element = this.used + 4 + 8 * slot;
    this.memory.writeU32(element, head);
    this.memory.writeU32(element + 4, written);
    this.nextUsed = (this.nextUsed + 1) & 0xffff;
    if (this.dirty !== null && this.dirty.logging) {
      // The device wrote (at most) the chain's writable buffers, and the used ring.
      for (const segment of this.writableByHead[head] ?? []) this.dirty.mark(segment.address, segment.length);
      this.markUsedRing();
    }
  }

  /** Logs the used ring's pages written (idx, elements, avail_event) while a migration runs. */
  private markUsedRing(): void {
    this.dirty?.mark(this.used, 6 + 8 * this.size);
  }

  /**
   * Makes the used elements pushed so far visible: one used.idx store per
   * batch, not per request, since a polling driver reads that cache line all
   * the time. x86 keeps stores in order, so the elements are visible first.
   */
  publishUsed(): void {
    if (this.publishedUsed === this.nextUsed) return;
    this.publishedUsed = this.nextUsed;
    this.memory.writeU16(this.used + 2, this.nextUsed);
    // Its elements may have been pushed before a migration started logging.
    this.markUsedRing();
  }

  /**
   * Whether the driver wants an interrupt for the buffers used since the last
   * call: its used_event index (EVENT_IDX) or its NO_INTERRUPT flag.
   */
  needsInterrupt(): boolean {
    this.publishUsed();
    if (this.nextUsed === this.usedAtLastSignal) return false;
    memoryBarrier();
    if (this.features.eventIndex) {
      const usedEvent = this.memory.readU16(this.available + 4 + 2 * this.size);
      const now = this.nextUsed;
      const before = this.usedAtLastSignal;
      this.usedAtLastSignal = now;
      // vring_need_event: did the used index step over used_event since the last check?
      return ((now - usedEvent - 1) & 0xffff) < ((now - before) & 0xffff);
    }
    this.usedAtLastSignal = this.nextUsed;
    return (this.memory.readU16(this.available) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
  }

  /**
   * Asks the driver to notify us about the next buffer, then looks once more:
   * true when buffers arrived meanwhile (the caller processes them, or it
   * would wait for a notification the driver will not send).
   */
  rearm(): boolean {
    this.publishUsed();
    if (this.features.eventIndex) {
      this.memory.writeU16(this.used + 4 + 8 * this.size, this.nextAvailable);
    } else {
      this.memory.writeU16(this.used, this.memory.readU16(this.used) & ~VIRTQ_USED_F_NO_NOTIFY);
    }
    this.markUsedRing();
    memoryBarrier();
    return this.pending() > 0;
  }
}
