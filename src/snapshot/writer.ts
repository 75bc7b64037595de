// Writes a snapshot stream (format.ts) into any Node Writable: a file, a
// command's stdin, a socket. Every write respects the stream's backpressure
// (it waits for 'drain'), so a slow destination holds back the writer instead
// of the process buffering the whole of guest RAM.
import type { Writable } from 'node:stream';
import { serialize } from 'node:v8';
import { crc32 } from 'node:zlib';
import { InputError } from '../errors.ts';
import type { GuestMemory } from '../memory/index.ts';
import {
  DISK_FLAG_ZERO, DISK_HEADER_BYTES, DISK_MAX_CHUNK_BYTES, FORMAT_VERSION, MAGIC, MAX_PAYLOAD_BYTES, MAX_SECTION_NAME_BYTES, PAGE_SIZE, PREAMBLE_BYTES,
  RAM_ENTRY_HEADER_BYTES, RAM_FLAG_ZERO, RAM_PAGES_PER_RECORD, RAM_RECORD_MAX_BYTES, RECORD_CRC_BYTES, RECORD_HEADER_BYTES,
  RecordType,
} from './format.ts';
import { isZeroPage, nonZeroPages } from './ram-pages.ts';
import { systemErrorText } from './system-error.ts';

/**
 * Which pages writeRamPages() sends: 'nonzero' is every page of RAM that is
 * not all zeroes (a full snapshot, or a migration's first pass); a list of
 * page addresses is sent exactly, a page that is now all zeroes as a zero
 * marker (a migration iteration's dirty pages).
 */
export type PageSelection = 'nonzero' | Iterable<number>;

/** What one writeRamPages() call sent. */
export interface RamPagesWritten {
  /** Pages sent with their 4096 bytes. */
  dataPages: number;
  /** Pages sent as a zero marker. */
  zeroPages: number;
  /** Stream bytes those records took. */
  bytes: number;
}



export class SnapshotWriter {
  /** Bytes handed to the stream so far, preamble included. */
  bytesWritten = 0;
  /** The first error the stream reported, kept so no 'error' event goes unheard. */
  private streamError: Error | undefined;
  private finished = false;

  private constructor(private readonly out: Writable, private readonly label: string) {
    out.on('error', (e) => { this.streamError ??= e; });
  }

  /**
   * Starts a stream: the preamble and the machine config record. `config`
   * is anything JSON.stringify takes; the reader hands it back parsed so its
   * caller can refuse a mismatched machine before touching anything.
   * `label` starts every error message (the URI or the file).
   */
  static async start(out: Writable, config: unknown, label = 'snapshot'): Promise<SnapshotWriter> {
    const writer = new SnapshotWriter(out, label);
    const preamble = Buffer.alloc(PREAMBLE_BYTES);
    MAGIC.copy(preamble, 0);
    preamble.writeUInt32LE(FORMAT_VERSION, MAGIC.length);
    await writer.send(preamble);
    await writer.writeRecord(RecordType.config, Buffer.from(JSON.stringify(config), 'utf8'));
    return writer;
  }

  /** A named blob for the machine (vCPU, VM or device state). */
  async writeSection(name: string, payload: Uint8Array): Promise<void> {
    const nameBytes = Buffer.from(name, 'utf8');
    if (nameBytes.length === 0 || nameBytes.length > MAX_SECTION_NAME_BYTES) throw new Error(`section name '${name}': 1 to ${MAX_SECTION_NAME_BYTES} bytes`);
    const body = Buffer.allocUnsafe(2 + nameBytes.length + payload.length);
    body.writeUInt16LE(nameBytes.length, 0);
    nameBytes.copy(body, 2);
    body.set(payload, 2 + nameBytes.length);
    await this.writeRecord(RecordType.section, body);
  }

  /** A section holding `value` as node:v8 serializes it (structured clone: objects, typed arrays, bigints, Maps). */
  async writeValue(name: string, value: unknown): Promise<void> {
    await this.writeSection(name, serialize(value));
  }

  /**
   * Sends guest pages in RAM records. Each page is copied into the record
   * before its CRC is taken, so a vCPU writing the page meanwhile (a live
   * migration) cannot make the record disagree with its CRC: the dirty log
   * has the page sent again later.
   */
  async writeRamPages(memory: GuestMemory, pages: PageSelection): Promise<RamPagesWritten> {
    const written: RamPagesWritten = { dataPages: 0, zeroPages: 0, bytes: 0 };
    const knownNonZero = pages === 'nonzero';
    let record = Buffer.allocUnsafe(RAM_RECORD_MAX_BYTES);
    let at = RECORD_HEADER_BYTES;
    let entries = 0;
    const flush = async (): Promise<void> => {
      written.bytes += await this.sealAndSend(record, RecordType.ram, at - RECORD_HEADER_BYTES);
      // The stream may still hold the old buffer: each record gets a new one.
      record = Buffer.allocUnsafe(RAM_RECORD_MAX_BYTES);
      at = RECORD_HEADER_BYTES;
      entries = 0;
    };
    for (const address of knownNonZero ? nonZeroPages(memory) : pages) {
      if (!Number.isSafeInteger(address) || address % PAGE_SIZE !== 0) throw new Error(`RAM page address ${address} is not a page address`);
      const data = at + RAM_ENTRY_HEADER_BYTES;
      let copied = data;
      for (const part of memory.slices(address, PAGE_SIZE)) {
        record.set(part, copied);
        copied += part.length;
      }
      const zero = !knownNonZero && isZeroPage(record, data);
      record.writeBigUInt64LE(BigInt(address) | (zero ? BigInt(RAM_FLAG_ZERO) : 0n), at);
      at = zero ? data : data + PAGE_SIZE;
      if (zero) written.zeroPages++;
      else written.dataPages++;
      if (++entries === RAM_PAGES_PER_RECORD) await flush();
    }
    if (entries > 0) await flush();
    return written;
  }

  /**
   * One chunk of disk `disk` (its index among the machine's disks): `length`
   * bytes at `offset`, with `data` null when they read as zeros. Returns the
   * stream bytes the record took.
   */
  async writeDiskChunk(disk: number, offset: number, length: number, data: Uint8Array | null): Promise<number> {
    if (!Number.isSafeInteger(offset) || offset < 0 || !(length > 0 && length <= DISK_MAX_CHUNK_BYTES)) {
      throw new Error(`disk chunk of ${length} bytes at ${offset}: not one a disk record can carry`);
    }
    if (data !== null && data.length !== length) throw new Error(`disk chunk of ${length} bytes with ${data.length} bytes of data`);
    const payloadLength = DISK_HEADER_BYTES + (data?.length ?? 0);
    const record = Buffer.allocUnsafe(RECORD_HEADER_BYTES + payloadLength + RECORD_CRC_BYTES);
    const at = RECORD_HEADER_BYTES;
    record.writeUInt32LE(disk, at);
    record.writeUInt32LE(data === null ? DISK_FLAG_ZERO : 0, at + 4);
    record.writeBigUInt64LE(BigInt(offset), at + 8);
    record.writeUInt32LE(length, at + 16);
    if (data !== null) record.set(data, at + DISK_HEADER_BYTES);
    return await this.sealAndSend(record, RecordType.disk, payloadLength);
  }

  /** The `end` record, then the end of the stream; resolves once the stream has flushed everything. */
  async finish(): Promise<void> {
    await this.writeRecord(RecordType.end, Buffer.alloc(0));
    this.finished = true;
    await new Promise<void>((resolve, reject) => {
      const done = (error?: Error): void => {
        this.out.off('finish', onFinish).off('error', onError).off('close', onClose);
        if (error) reject(this.failure(error));
        else resolve();
      };
      const onFinish = (): void => done();
      const onError = (e: Error): void => done(e);
      const onClose = (): void => done(this.streamError ?? new Error('the stream closed before all was written'));
      this.out.on('finish', onFinish).on('error', onError).on('close', onClose);
      this.out.end();
    });
  }

  private async writeRecord(type: number, payload: Uint8Array): Promise<void> {
    if (payload.length > MAX_PAYLOAD_BYTES) throw new Error(`a record of ${payload.length} bytes: at most ${MAX_PAYLOAD_BYTES}`);
    const record = Buffer.allocUnsafe(RECORD_HEADER_BYTES + payload.length + RECORD_CRC_BYTES);
    record.set(payload, RECORD_HEADER_BYTES);
    await this.sealAndSend(record, type, payload.length);
  }

  /** Fills in the header and CRC around the payload already at RECORD_HEADER_BYTES, and sends the record. */
  private async sealAndSend(record: Buffer, type: number, payloadLength: number): Promise<number> {
    record.writeUInt32LE(type, 0);
    record.writeUInt32LE(payloadLength, 4);
    const crcAt = RECORD_HEADER_BYTES + payloadLength;
    record.writeUInt32LE(crc32(record.subarray(0, crcAt)), crcAt);
    const bytes = record.subarray(0, crcAt + RECORD_CRC_BYTES);
    await this.send(bytes);
    return bytes.length;
  }

  private async send(bytes: Buffer): Promise<void> {
    if (this.finished) throw new Error(`${this.label}: written after its end`);
    const stuck = this.streamError ?? this.out.errored ?? (this.out.destroyed || this.out.writableEnded ? new Error('the stream is closed') : undefined);
    if (stuck) throw this.failure(stuck);
    this.bytesWritten += bytes.length;
    if (this.out.write(bytes)) return;
    await new Promise<void>((resolve, reject) => {
      const done = (error?: Error): void => {
        this.out.off('drain', onDrain).off('error', onError).off('close', onClose);
        if (error) reject(this.failure(error));
        else resolve();
      };
      const onDrain = (): void => done();
      const onError = (e: Error): void => done(e);
      const onClose = (): void => done(this.streamError ?? new Error('the stream closed'));
      this.out.on('drain', onDrain).on('error', onError).on('close', onClose);
    });
  }

  /** One line naming the destination and what went wrong (EPIPE: the other side went away). */
  private failure(error: Error): InputError {
    return new InputError(`${this.label}: write failed: ${systemErrorText(error)}`);
  }
}
