// Reads a snapshot stream (format.ts) from any Node Readable. Nothing read is
// trusted: every record's CRC32 is checked before its type is believed, every
// length is bounded, every RAM page address is checked against guest RAM
// before a byte is copied, and a stream that stops before its `end` record is
// an error. Each failure is an InputError of one line naming the record.
import type { Readable } from 'node:stream';
import { deserialize } from 'node:v8';
import { crc32 } from 'node:zlib';
import { InputError } from '../errors.ts';
import { hex } from '../hex.ts';
import type { GuestMemory } from '../memory/index.ts';
import { ByteSource } from './byte-source.ts';
import type { BlockBackend } from '../storage/block-backend.ts';
import { writeChunk } from '../storage/chunk-copy.ts';
import {
  DISK_FLAG_ZERO, DISK_HEADER_BYTES, DISK_MAX_CHUNK_BYTES, FORMAT_VERSION, MAGIC, MAX_PAYLOAD_BYTES, PAGE_SIZE, PREAMBLE_BYTES, RAM_ENTRY_HEADER_BYTES, RAM_FLAG_ZERO,
  RAM_FLAGS_MASK, RECORD_CRC_BYTES, RECORD_HEADER_BYTES, RecordType, recordTypeName,
} from './format.ts';
import { isGuestPageZero } from './ram-pages.ts';
import { systemErrorText } from './system-error.ts';

/** Where a record sits, for messages: "record 3 (ram at byte 8240)". */
interface RecordPlace {
  readonly label: string;
  readonly index: number;
  readonly offset: number;
}

function describe(place: RecordPlace, type: string): string {
  return `record ${place.index} (${type} at byte ${place.offset})`;
}

/** One page of a RAM record: its data, or null for a page of zeroes. */
export interface RamPage {
  readonly address: number;
  readonly data: Uint8Array | null;
}

/** A batch of guest pages. */
export class RamRecord {
  readonly type = 'ram';
  readonly pages: readonly RamPage[];

  constructor(private readonly place: RecordPlace, payload: Buffer) {
    const pages: RamPage[] = [];
    for (let at = 0; at < payload.length;) {
      if (at + RAM_ENTRY_HEADER_BYTES > payload.length) throw this.damaged(`its page entry at payload byte ${at} is cut short`);
      const entry = payload.readBigUInt64LE(at);
      const flags = Number(entry & BigInt(RAM_FLAGS_MASK));
      if (flags & ~RAM_FLAG_ZERO) throw this.damaged(`its page entry at payload byte ${at} has unknown flags ${hex(flags)}`);
      // An address beyond 2^53 is outside any RAM; applyTo() refuses it by this stand-in.
      const page = entry - BigInt(flags);
      const address = page <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(page) : Number.MAX_SAFE_INTEGER;
      at += RAM_ENTRY_HEADER_BYTES;
      if (flags & RAM_FLAG_ZERO) {
        pages.push({ address, data: null });
        continue;
      }
      if (at + PAGE_SIZE > payload.length) throw this.damaged(`the data of its page at ${hex(page)} is cut short`);
      pages.push({ address, data: payload.subarray(at, at + PAGE_SIZE) });
      at += PAGE_SIZE;
    }
    this.pages = pages;
  }

  /**
   * Copies the pages into guest RAM (a zero page is zeroed). Every address is
   * checked first: one page outside `memory` refuses the whole record, and
   * nothing of it is written.
   */
  applyTo(memory: GuestMemory): void {
    for (const { address } of this.pages) {
      if (!memory.contains(address, PAGE_SIZE)) {
        const ranges = memory.ranges.map((r) => `${hex(r.guestAddress)}-${hex(r.guestAddress + r.size - 1)}`).join(', ');
        throw new InputError(`${this.place.label}: ${describe(this.place, 'ram')} has a page at ${hex(address)}, outside guest RAM (${ranges})`);
      }
    }
    for (const { address, data } of this.pages) {
      if (data) memory.write(address, data);
      // Only a page that holds something is zeroed: writing the zeroes of fresh RAM would fault every page in.
      else if (!isGuestPageZero(memory, address)) memory.fill(address, PAGE_SIZE, 0);
    }
  }

  private damaged(what: string): InputError {
    return new InputError(`${this.place.label}: damaged: ${describe(this.place, 'ram')}: ${what}`);
  }
}

/** One chunk of a disk (a block migration). */
export class DiskRecord {
  readonly type = 'disk';
  /** The disk's index among the machine's disks. */
  readonly disk: number;
  readonly offset: number;
  readonly length: number;
  /** The chunk's bytes, or null when it reads as zeros. */
  readonly data: Uint8Array | null;

  constructor(private readonly place: RecordPlace, payload: Buffer) {
    if (payload.length < DISK_HEADER_BYTES) throw this.damaged(`its header is ${payload.length} bytes, not ${DISK_HEADER_BYTES}`);
    this.disk = payload.readUInt32LE(0);
    const flags = payload.readUInt32LE(4);
    if (flags & ~DISK_FLAG_ZERO) throw this.damaged(`it has unknown flags ${hex(flags)}`);
    const offset = payload.readBigUInt64LE(8);
    // An offset beyond 2^53 is beyond any disk: applyTo() refuses it by this stand-in.
    this.offset = offset <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(offset) : Number.MAX_SAFE_INTEGER;
    this.length = payload.readUInt32LE(16);
    if (this.length === 0 || this.length > DISK_MAX_CHUNK_BYTES) throw this.damaged(`its chunk of ${this.length} bytes is not 1 to ${DISK_MAX_CHUNK_BYTES}`);
    const dataBytes = payload.length - DISK_HEADER_BYTES;
    const expected = flags & DISK_FLAG_ZERO ? 0 : this.length;
    if (dataBytes !== expected) throw this.damaged(`it carries ${dataBytes} bytes of data for a ${flags & DISK_FLAG_ZERO ? 'zero ' : ''}chunk of ${this.length}`);
    this.data = expected === 0 ? null : payload.subarray(DISK_HEADER_BYTES);
  }

  /**
   * Writes the chunk into `disks[this.disk]` (a zero chunk: makes it read as
   * zeros); `disks` holds the disks the stream copies, by index. A disk that
   * is not there, or a range outside its virtual size, refuses the record
   * before anything is written.
   */
  applyTo(disks: readonly (BlockBackend | undefined)[]): void {
    const target = disks[this.disk];
    if (!target) throw new InputError(`${this.place.label}: ${describe(this.place, 'disk')} is for disk ${this.disk}, which the stream does not copy`);
    if (this.offset + this.length > target.size) {
      throw new InputError(`${this.place.label}: ${describe(this.place, 'disk')} has ${this.length} bytes at ${this.offset}, outside disk ${this.disk} (${target.size} bytes)`);
    }
    writeChunk(target, this.offset, this.length, this.data);
  }

  private damaged(what: string): InputError {
    return new InputError(`${this.place.label}: damaged: ${describe(this.place, 'disk')}: ${what}`);
  }
}

/** A named blob the machine wrote (vCPU, VM or device state). */
export class SectionRecord {
  readonly type = 'section';
  readonly name: string;
  readonly payload: Buffer;

  constructor(private readonly place: RecordPlace, body: Buffer) {
    const nameLength = body.length >= 2 ? body.readUInt16LE(0) : -1;
    if (nameLength < 1 || 2 + nameLength > body.length) {
      throw new InputError(`${place.label}: damaged: ${describe(place, 'section')} has no valid name`);
    }
    this.name = body.toString('utf8', 2, 2 + nameLength);
    this.payload = body.subarray(2 + nameLength);
  }

  /** The value SnapshotWriter.writeValue() stored here. */
  readValue(): unknown {
    try {
      return deserialize(this.payload);
    } catch (e) {
      throw new InputError(`${this.place.label}: damaged: section '${this.name}' in ${describe(this.place, 'section')} cannot be decoded (${(e as Error).message})`);
    }
  }
}

export type SnapshotRecord = RamRecord | SectionRecord | DiskRecord;

export class SnapshotReader {
  private recordsRead = 0;
  private consumed = false;
  private reachedEnd = false;
  private machineConfig: unknown;

  private constructor(private readonly source: ByteSource, private readonly label: string) {}

  /**
   * Reads and checks the preamble and the machine config record. `label`
   * starts every error message (the URI or the file name).
   */
  static async open(input: Readable, label = 'snapshot'): Promise<SnapshotReader> {
    const reader = new SnapshotReader(new ByteSource(input), label);
    await reader.readPreamble();
    reader.machineConfig = await reader.readConfig();
    return reader;
  }

  /** True once records() went through the end record and found nothing behind it. */
  get complete(): boolean {
    return this.reachedEnd;
  }

  /** The machine config the stream was written with, parsed from its JSON. */
  get config(): unknown {
    return this.machineConfig;
  }

  /**
   * The records after the config, in order. The iteration ends normally only
   * after the `end` record, with nothing behind it; a stream that ends sooner
   * throws (truncated), so a caller that got through the loop has everything.
   */
  async *records(): AsyncGenerator<SnapshotRecord> {
    if (this.consumed) throw new Error(`${this.label}: records() was already read`);
    this.consumed = true;
    for (;;) {
      const record = await this.next();
      if (record === 'end') break;
      const place = record.place;
      if (record.type === RecordType.ram) yield new RamRecord(place, record.payload);
      else if (record.type === RecordType.section) yield new SectionRecord(place, record.payload);
      else if (record.type === RecordType.disk) yield new DiskRecord(place, record.payload);
      else throw new InputError(`${this.label}: damaged: ${describe(place, 'config')}: a second machine config`);
    }
    if (!await readEnd(this.source, this.label)) {
      throw new InputError(`${this.label}: damaged: data follows the end record (at byte ${this.source.offset})`);
    }
    this.reachedEnd = true;
  }

  private async readPreamble(): Promise<void> {
    const preamble = await readFrom(this.source, PREAMBLE_BYTES, this.label);
    if (!preamble) {
      // Too short to tell a cut-off snapshot from something else.
      if (this.source.offset === 0) throw new InputError(`${this.label}: not a tsvmm snapshot (the stream is empty)`);
      throw new InputError(`${this.label}: not a tsvmm snapshot, or truncated (the stream ends after ${this.source.offset} bytes)`);
    }
    const magic = preamble.subarray(0, MAGIC.length);
    if (!magic.equals(MAGIC)) throw new InputError(`${this.label}: not a tsvmm snapshot (it starts with ${magic.toString('hex')})`);
    const version = preamble.readUInt32LE(MAGIC.length);
    if (version !== FORMAT_VERSION) {
      throw new InputError(`${this.label}: snapshot format version ${version}: this tsvmm reads version ${FORMAT_VERSION}`);
    }
  }

  private async readConfig(): Promise<unknown> {
    const first = await this.next();
    if (first === 'end' || first.type !== RecordType.config) {
      const what = first === 'end' ? 'the end record' : `a ${recordTypeName(first.type)} record`;
      throw new InputError(`${this.label}: damaged: record 1 is ${what}, not the machine config`);
    }
    try {
      return JSON.parse(first.payload.toString('utf8'));
    } catch (e) {
      throw new InputError(`${this.label}: damaged: the machine config in record 1 is not JSON (${(e as Error).message})`);
    }
  }

  /** The next record, framed and CRC-checked, or 'end'. */
  private async next(): Promise<'end' | { type: number; payload: Buffer; place: RecordPlace }> {
    const place: RecordPlace = { label: this.label, index: this.recordsRead + 1, offset: this.source.offset };
    const header = await readFrom(this.source, RECORD_HEADER_BYTES, this.label);
    if (!header) {
      if (this.source.offset === place.offset) {
        throw new InputError(`${this.label}: truncated: the stream ends after record ${this.recordsRead} (byte ${place.offset}) with no end record`);
      }
      throw this.truncatedInside(place);
    }
    const type = header.readUInt32LE(0);
    const length = header.readUInt32LE(4);
    const typeName = recordTypeName(type) ?? `type ${type}`;
    if (length > MAX_PAYLOAD_BYTES) {
      throw new InputError(`${this.label}: damaged: ${describe(place, typeName)} claims ${length} bytes, more than any record has`);
    }
    const rest = await readFrom(this.source, length + RECORD_CRC_BYTES, this.label);
    if (!rest) throw this.truncatedInside(place);
    const crc = crc32(rest.subarray(0, length), crc32(header));
    if (crc !== rest.readUInt32LE(length)) {
      throw new InputError(`${this.label}: damaged: ${describe(place, typeName)} fails its CRC32 check`);
    }
    if (recordTypeName(type) === undefined) {
      throw new InputError(`${this.label}: damaged: record ${place.index} at byte ${place.offset} has an unknown type ${type}`);
    }
    this.recordsRead++;
    if (type === RecordType.end) return 'end';
    return { type, payload: rest.subarray(0, length), place };
  }

  private truncatedInside(place: RecordPlace): InputError {
    return new InputError(`${this.label}: truncated: the stream ends inside record ${place.index} (which starts at byte ${place.offset})`);
  }
}

/** source.read(), with a failure of the stream itself (a reset connection) as one line. */
async function readFrom(source: ByteSource, length: number, label: string): Promise<Buffer | null> {
  try {
    return await source.read(length);
  } catch (e) {
    throw readFailure(e, label);
  }
}

async function readEnd(source: ByteSource, label: string): Promise<boolean> {
  try {
    return await source.atEnd();
  } catch (e) {
    throw readFailure(e, label);
  }
}

function readFailure(e: unknown, label: string): InputError {
  return new InputError(`${label}: read failed: ${systemErrorText(e)}`);
}
