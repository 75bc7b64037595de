// Exact-length reads from a Node Readable: the stream hands over chunks of
// whatever size the pipe or socket had; the snapshot reader wants "the next
// n bytes" or to learn that the stream ended first.
import type { Readable } from 'node:stream';

export class ByteSource {
  /** Bytes handed out by read() so far: the stream offset of the next read. */
  offset = 0;
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  private readonly iterator: AsyncIterator<unknown>;

  constructor(stream: Readable) {
    this.iterator = stream[Symbol.asyncIterator]();
  }

  /**
   * The next `length` bytes, or null when the stream ends before them. The
   * bytes that were there count as read (`offset` moves past them), so a
   * caller tells "ended between records" from "ended inside one" by whether
   * `offset` moved. A stream error is thrown as it is.
   */
  async read(length: number): Promise<Buffer | null> {
    while (this.buffered < length) if (!await this.pull()) break;
    if (this.buffered < length) {
      this.offset += this.buffered;
      this.chunks.length = 0;
      this.buffered = 0;
      return null;
    }
    this.offset += length;
    return this.take(length);
  }

  /** True when the stream ended and every byte of it was read. */
  async atEnd(): Promise<boolean> {
    return this.buffered === 0 && !await this.pull();
  }

  /** Buffers the stream's next non-empty chunk; false once the stream has ended. */
  private async pull(): Promise<boolean> {
    while (!this.ended) {
      const next = await this.iterator.next();
      if (next.done) {
        this.ended = true;
        break;
      }
      const chunk = next.value as Buffer | string;
      const bytes = typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk;
      if (bytes.length === 0) continue;
      this.chunks.push(bytes);
      this.buffered += bytes.length;
      return true;
    }
    return false;
  }

  private take(length: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= length) {
      // The common case for small reads: a view, no copy.
      const out = first.subarray(0, length);
      if (first.length === length) this.chunks.shift();
      else this.chunks[0] = first.subarray(length);
      this.buffered -= length;
      return out;
    }
    const out = Buffer.allocUnsafe(length);
    let at = 0;
    while (at < length) {
      const chunk = this.chunks[0]!;
      const part = Math.min(chunk.length, length - at);
      chunk.copy(out, at, 0, part);
      at += part;
      if (part === chunk.length) this.chunks.shift();
      else this.chunks[0] = chunk.subarray(part);
    }
    this.buffered -= length;
    return out;
  }
}
