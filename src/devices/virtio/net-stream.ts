// A virtio-net backend over a connected unix stream socket that carries
// Ethernet frames each after its length, 32 bits big-endian: the protocol of
// QEMU's `-netdev stream` (and its older `-netdev socket`), which passt
// speaks. No virtio-net header crosses the socket: the device offers no
// offloads, so the guest's header is all zeros and is dropped on the way
// out, and a zeroed one goes before each frame on the way in.
//
// A stream can split a frame anywhere, so both directions keep their place
// between calls: a frame read in part waits in `inbound` for the rest, and
// what the socket did not take of a sent frame waits in `outbound` while the
// device sends nothing more (the guest's transmit ring backs up, as it would
// behind a busy wire). The socket outlives the device (passt runs as long as
// tsvmm, across guest resets), so a device that goes away first brings the
// stream to a frame boundary (settle): the next one starts in step.
import { readSync, writeSync, writevSync } from 'node:fs';
import { errorCode, wouldBlock, type NetBackend } from './net-backend.ts';

const HEADER_SIZE = 12;
const LENGTH_SIZE = 4;
/** An Ethernet header: nothing shorter is a frame. */
const MIN_FRAME = 14;
/** Without GSO a frame is at most a 64 KiB IP packet plus its Ethernet header. */
export const MAX_STREAM_FRAME = 65536 + 14;
/** struct virtio_net_hdr_v1 with num_buffers 1, every other field 0 (no offloads negotiated). */
const RECEIVE_HEADER = Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0);

/** Copies `data` into the concatenation of `views`, starting `offset` bytes in. */
function copyInto(views: readonly Uint8Array[], offset: number, data: Uint8Array): void {
  let skip = offset;
  let done = 0;
  for (const view of views) {
    if (done === data.length) return;
    if (skip >= view.length) {
      skip -= view.length;
      continue;
    }
    const take = Math.min(view.length - skip, data.length - done);
    view.set(data.subarray(done, done + take), skip);
    done += take;
    skip = 0;
  }
}

export class StreamBackend implements NetBackend {
  failure: string | null = null;
  /** The frame being read: its length once the 4 length bytes are in, then its bytes. */
  private readonly lengthBytes = new Uint8Array(LENGTH_SIZE);
  private readonly inboundLengthView = new DataView(this.lengthBytes.buffer);
  private readonly inbound = new Uint8Array(MAX_STREAM_FRAME);
  private inboundLength = -1;
  private inboundDone = 0;
  /** The part of a sent frame the socket has not taken yet. */
  private outbound: Uint8Array | null = null;
  private readonly outboundLengthBytes = new Uint8Array(LENGTH_SIZE);
  private readonly outboundLength = new DataView(this.outboundLengthBytes.buffer);
  private readonly iovecs: Uint8Array[] = [];

  /** `fd`: a connected, non-blocking stream socket. The backend does not close it. */
  constructor(readonly fd: number, private readonly peer = 'the network peer') {}

  /** Held-back output stops the guest's transmits, unless the socket failed: then they are lost, as on a cut wire. */
  get blocked(): boolean {
    return this.outbound !== null && this.failure === null;
  }

  receive(views: Uint8Array[], capacity: number): number {
    const frame = this.readFrame();
    if (frame === null) return 0;
    const total = HEADER_SIZE + frame.length;
    if (total > capacity) return -total;
    copyInto(views, 0, RECEIVE_HEADER);
    copyInto(views, HEADER_SIZE, frame);
    return total;
  }

  /** The next whole frame (valid until the next call), or null while it is not all in or the backend failed. */
  private readFrame(): Uint8Array | null {
    if (this.failure) return null;
    if (this.inboundLength < 0) {
      if (!this.fill(this.lengthBytes, LENGTH_SIZE)) return null;
      const length = this.inboundLengthView.getUint32(0, false);
      if (length < MIN_FRAME || length > MAX_STREAM_FRAME) {
        // Nothing after a bad length can be trusted to start a frame.
        this.failure = `${this.peer} sent a frame length of ${length} bytes (${MIN_FRAME} to ${MAX_STREAM_FRAME})`;
        return null;
      }
      this.inboundLength = length;
    }
    const frame = this.inbound.subarray(0, this.inboundLength);
    if (!this.fill(frame, frame.length)) return null;
    this.inboundLength = -1;
    return frame;
  }

  /** A frame, or its length, is read in part. */
  private get readingMidFrame(): boolean {
    return this.inboundLength >= 0 || this.inboundDone > 0;
  }

  /**
   * Finishes the frame being sent and reads the rest of the one being read,
   * which is dropped (a frame lost in a reset, as on a wire), polling the
   * non-blocking socket every millisecond for at most `timeoutMs`. What
   * cannot be finished in time is a failure, reported as the others are.
   */
  settle(timeoutMs: number): void {
    const deadline = Date.now() + timeoutMs;
    const pause = new Int32Array(new SharedArrayBuffer(4));
    for (;;) {
      this.flush();
      if (this.readingMidFrame) this.readFrame();
      if (this.failure || (this.outbound === null && !this.readingMidFrame)) return;
      if (Date.now() >= deadline) {
        this.failure = `${this.peer} left the stream mid-frame for ${timeoutMs} ms as the device stopped`;
        return;
      }
      Atomics.wait(pause, 0, 0, 1);
    }
  }

  /** Reads into `target` until `want` bytes are in (from inboundDone on); false while some are missing. */
  private fill(target: Uint8Array, want: number): boolean {
    while (this.inboundDone < want) {
      let count: number;
      try {
        count = readSync(this.fd, target, this.inboundDone, want - this.inboundDone, null);
      } catch (e) {
        const code = errorCode(e);
        if (!wouldBlock(code)) this.failure = `reading from ${this.peer}: ${code}`;
        return false;
      }
      if (count === 0) {
        this.failure = `${this.peer} closed the connection`;
        return false;
      }
      this.inboundDone += count;
    }
    // The length bytes and the frame share the counter: the next fill starts from 0.
    this.inboundDone = 0;
    return true;
  }

  send(views: readonly Uint8Array[], length: number): string | null {
    if (this.failure) return this.failure;
    if (this.blocked) throw new Error('StreamBackend.send while blocked');
    const frameLength = length - HEADER_SIZE;
    // passt would take a shorter one as the stream going out of step.
    if (frameLength < MIN_FRAME) return `a frame of ${frameLength} bytes, shorter than an Ethernet header`;
    this.outboundLength.setUint32(0, frameLength, false);
    const iovecs = this.iovecs;
    iovecs.length = 0;
    iovecs.push(this.outboundLengthBytes);
    let skip = HEADER_SIZE;
    for (const view of views) {
      if (skip >= view.length) {
        skip -= view.length;
        continue;
      }
      iovecs.push(skip > 0 ? view.subarray(skip) : view);
      skip = 0;
    }
    let written = 0;
    try {
      written = writevSync(this.fd, iovecs);
    } catch (e) {
      const code = errorCode(e);
      if (!wouldBlock(code)) {
        this.failure = `writing to ${this.peer}: ${code}`;
        return this.failure;
      }
    }
    const total = LENGTH_SIZE + frameLength;
    if (written < total) this.outbound = this.rest(iovecs, written, total - written);
    return null;
  }

  /** A copy of the last `count` bytes of `iovecs`, which start `skip` bytes in: guest memory cannot be held. */
  private rest(iovecs: readonly Uint8Array[], skip: number, count: number): Uint8Array {
    const out = new Uint8Array(count);
    let done = 0;
    for (const iovec of iovecs) {
      if (skip >= iovec.length) {
        skip -= iovec.length;
        continue;
      }
      out.set(iovec.subarray(skip), done);
      done += iovec.length - skip;
      skip = 0;
    }
    return out;
  }

  flush(): void {
    while (this.outbound && !this.failure) {
      let written: number;
      try {
        written = writeSync(this.fd, this.outbound);
      } catch (e) {
        const code = errorCode(e);
        if (!wouldBlock(code)) this.failure = `writing to ${this.peer}: ${code}`;
        return;
      }
      this.outbound = written === this.outbound.length ? null : this.outbound.subarray(written);
    }
  }
}
