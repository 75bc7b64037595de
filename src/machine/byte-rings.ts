// Guest console output crosses from the vCPU thread to the main thread
// through a byte ring in a SharedArrayBuffer: the vCPU thread pays a store per
// byte, never a syscall, and the main thread writes whole batches to stdout.
import { writeSync } from 'node:fs';
import type { CharSink } from '../devices/char-sink.ts';

const HEAD = 0; // bytes ever written (producer)
const TAIL = 1; // bytes ever consumed (consumer)
const CONSUMER_WAITING = 2;
const HEADER_WORDS = 4;
/** How long the reader lets streaming output gather before the next write(2). */
const BATCH_MS = 1;

export interface ConsoleRingBuffers {
  readonly header: SharedArrayBuffer;
  readonly data: SharedArrayBuffer;
}

export function createConsoleRing(capacity = 64 * 1024): ConsoleRingBuffers {
  if ((capacity & (capacity - 1)) !== 0) throw new Error('console ring capacity must be a power of two');
  return { header: new SharedArrayBuffer(HEADER_WORDS * 4), data: new SharedArrayBuffer(capacity) };
}

/** One end of a ring: its shared header words and bytes. */
abstract class RingEnd {
  protected readonly header: Int32Array;
  protected readonly data: Uint8Array;
  protected readonly mask: number;

  constructor(buffers: ConsoleRingBuffers) {
    this.header = new Int32Array(buffers.header);
    this.data = new Uint8Array(buffers.data);
    this.mask = this.data.length - 1;
  }
}

/** The vCPU thread's end: a CharSink for the UART. */
export class ConsoleRingWriter extends RingEnd implements CharSink {

  writeByte(byte: number): void {
    const header = this.header;
    const head = header[HEAD]!;
    // Full: wait for the main thread to drain, as a real UART's THR stays busy.
    while (((head - Atomics.load(header, TAIL)) | 0) >= this.data.length) {
      Atomics.wait(header, TAIL, Atomics.load(header, TAIL), 100);
    }
    this.data[head & this.mask] = byte;
    Atomics.store(header, HEAD, (head + 1) | 0);
    if (header[CONSUMER_WAITING] !== 0 && Atomics.exchange(header, CONSUMER_WAITING, 0) !== 0) {
      Atomics.notify(header, HEAD);
    }
  }
}

/** The main thread's end: copies everything written so far to a file descriptor. */
export class ConsoleRingReader extends RingEnd {
  private stopped = false;

  constructor(buffers: ConsoleRingBuffers, private readonly fd = 1) {
    super(buffers);
  }

  /** Writes out whatever is in the ring now; returns how many bytes that was. */
  drain(): number {
    const header = this.header;
    let written = 0;
    for (;;) {
      const tail = header[TAIL]!;
      const head = Atomics.load(header, HEAD);
      const pending = (head - tail) | 0;
      if (pending === 0) return written;
      const start = tail & this.mask;
      const length = Math.min(pending, this.data.length - start);
      writeFully(this.fd, this.data.subarray(start, start + length));
      Atomics.store(header, TAIL, (tail + length) | 0);
      Atomics.notify(header, TAIL);
      written += length;
    }
  }

  /**
   * Drains as output arrives until stop(); resolves when stopped. After a
   * drain that found bytes, more are likely on their way: it lets them
   * gather for BATCH_MS instead of asking to be woken by the next byte, so a
   * guest that streams output pays no wake-up per byte. An idle ring is
   * drained as soon as its first byte arrives.
   */
  async pump(): Promise<void> {
    const header = this.header;
    while (!this.stopped) {
      if (this.drain() > 0) {
        await new Promise((resolve) => setTimeout(resolve, BATCH_MS));
        continue;
      }
      Atomics.store(header, CONSUMER_WAITING, 1);
      const seen = Atomics.load(header, HEAD);
      if (seen !== header[TAIL]) continue;
      const wait = Atomics.waitAsync(header, HEAD, seen, 50);
      if (wait.async) await wait.value;
    }
    this.drain();
  }

  stop(): void {
    this.stopped = true;
    Atomics.notify(this.header, HEAD);
  }
}

function writeFully(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) {
    try {
      done += writeSync(fd, bytes, done, bytes.length - done);
    } catch (e) {
      // A non-blocking stdout (a pipe set O_NONBLOCK by someone else): retry.
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
    }
  }
}

/**
 * The other direction: host input (stdin) from the main thread to the vCPU
 * thread. The main thread never blocks, so a full ring refuses bytes (the
 * caller keeps them and retries); the vCPU thread takes what its UART accepts.
 */
export class InputRing extends RingEnd {

  /** Main thread: appends what fits; returns how many bytes were taken. */
  offer(bytes: Uint8Array): number {
    const head = this.header[HEAD]!;
    const free = this.data.length - ((head - Atomics.load(this.header, TAIL)) | 0);
    const n = Math.min(free, bytes.length);
    for (let i = 0; i < n; i++) this.data[(head + i) & this.mask] = bytes[i]!;
    Atomics.store(this.header, HEAD, (head + n) | 0);
    return n;
  }

  /** vCPU thread: bytes waiting. */
  pending(): number {
    return (Atomics.load(this.header, HEAD) - this.header[TAIL]!) | 0;
  }

  /** vCPU thread: hands up to `max` waiting bytes to `take`, which returns how many it accepted. */
  deliver(max: number, take: (bytes: Uint8Array) => number): number {
    const tail = this.header[TAIL]!;
    const n = Math.min(max, this.pending());
    if (n <= 0) return 0;
    const chunk = new Uint8Array(n);
    for (let i = 0; i < n; i++) chunk[i] = this.data[(tail + i) & this.mask]!;
    const accepted = take(chunk);
    Atomics.store(this.header, TAIL, (tail + accepted) | 0);
    return accepted;
  }
}
