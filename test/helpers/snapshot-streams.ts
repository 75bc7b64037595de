// Snapshot streams in memory for the format tests: write one into a Buffer,
// read one back from a Buffer handed over in small chunks (as a pipe or a
// socket would), and walk its records the way docs/snapshot-format.md says.
import { Readable, Writable } from 'node:stream';
import { crc32 } from 'node:zlib';
import type { GuestMemory } from '../../src/memory/index.ts';
import { SnapshotReader, SnapshotWriter } from '../../src/snapshot/index.ts';

export const CONFIG = { memoryMiB: 16, cpus: 1, devices: ['serial', 'virtio-blk'] };

/** A collecting Writable: every byte written ends up in bytes(). */
export function sink(): { stream: Writable; bytes: () => Buffer } {
  const parts: Buffer[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      parts.push(Buffer.from(chunk));
      done();
    },
  });
  return { stream, bytes: () => Buffer.concat(parts) };
}

export async function snapshotBytes(write: (writer: SnapshotWriter) => Promise<void>, config: unknown = CONFIG): Promise<Buffer> {
  const out = sink();
  const writer = await SnapshotWriter.start(out.stream, config);
  await write(writer);
  await writer.finish();
  return out.bytes();
}

/** `bytes` as a stream of `chunkSize`-byte chunks. */
export function streamOf(bytes: Buffer, chunkSize = 1000): Readable {
  const chunks: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += chunkSize) chunks.push(bytes.subarray(at, at + chunkSize));
  return Readable.from(chunks);
}

export interface ReadBack {
  config: unknown;
  sections: Map<string, Buffer>;
  ramRecords: number;
}

/** Reads a whole stream, applying its RAM to `memory` when given. */
export async function readBack(bytes: Buffer, memory?: GuestMemory, chunkSize?: number): Promise<ReadBack> {
  const reader = await SnapshotReader.open(streamOf(bytes, chunkSize));
  const result: ReadBack = { config: reader.config, sections: new Map(), ramRecords: 0 };
  for await (const record of reader.records()) {
    if (record.type === 'section') result.sections.set(record.name, record.payload);
    else if (record.type === 'ram') {
      result.ramRecords++;
      if (memory) record.applyTo(memory);
    }
  }
  return result;
}

/** One record's bytes: type, length, payload, CRC32 over all three. */
export function encodeRecord(type: number, payload: Uint8Array): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt32LE(type, 0);
  header.writeUInt32LE(payload.length, 4);
  const crc = Buffer.alloc(4);
  crc.writeUInt32LE(crc32(payload, crc32(header)));
  return Buffer.concat([header, payload, crc]);
}

export interface RecordSpan {
  offset: number;
  type: number;
  length: number;
  /** Offset of the byte after the record's CRC. */
  end: number;
}

/** Where each record of a well-formed stream sits. */
export function recordSpans(bytes: Buffer): RecordSpan[] {
  const spans: RecordSpan[] = [];
  for (let at = 12; at < bytes.length;) {
    const type = bytes.readUInt32LE(at);
    const length = bytes.readUInt32LE(at + 4);
    spans.push({ offset: at, type, length, end: at + 8 + length + 4 });
    at += 8 + length + 4;
  }
  return spans;
}

/** The stream with `record` inserted before its end record. */
export function insertBeforeEnd(bytes: Buffer, record: Buffer): Buffer {
  const end = recordSpans(bytes).at(-1)!;
  return Buffer.concat([bytes.subarray(0, end.offset), record, bytes.subarray(end.offset)]);
}

/** Fills the page at `address` with a pattern derived from `seed` (never all zeroes). */
export function fillPage(memory: GuestMemory, address: number, seed: number): void {
  const page = new Uint8Array(4096);
  for (let i = 0; i < page.length; i++) page[i] = (seed * 31 + i * 7 + 1) & 0xff || 1;
  memory.write(address, page);
}
