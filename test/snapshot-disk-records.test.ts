// Block migration's pieces without a guest: the disk record of the stream
// format (written, read back, applied to images), its refusals of a hostile
// or damaged record before a byte is written, the dirty-chunk log the
// virtio-blk device marks, and the zero handling of chunk reads and writes.
import { describe, expect, it } from 'vitest';
import { InputError } from '../src/errors.ts';
import { SnapshotReader, type DiskRecord } from '../src/snapshot/index.ts';
import { DISK_FLAG_ZERO, DISK_HEADER_BYTES, RecordType } from '../src/snapshot/format.ts';
import type { BlockBackend, BlockStatus } from '../src/storage/block-backend.ts';
import { readChunk, writeChunk } from '../src/storage/chunk-copy.ts';
import { DISK_CHUNK_SIZE, DiskDirtyLog, chunkCount } from '../src/storage/dirty-chunks.ts';
import { MemoryDisk } from './helpers/memory-disk.ts';
import { encodeRecord, insertBeforeEnd, snapshotBytes, streamOf } from './helpers/snapshot-streams.ts';

const MiB = DISK_CHUNK_SIZE;

/** Every disk record of a stream. */
async function diskRecords(bytes: Buffer): Promise<DiskRecord[]> {
  const records: DiskRecord[] = [];
  for await (const record of (await SnapshotReader.open(streamOf(bytes, 4096))).records()) {
    if (record.type === 'disk') records.push(record);
  }
  return records;
}

/** A disk record's payload as a hostile writer might make it. */
function diskPayload(disk: number, flags: number, offset: bigint, length: number, data: Uint8Array = new Uint8Array(0)): Buffer {
  const payload = Buffer.alloc(DISK_HEADER_BYTES + data.length);
  payload.writeUInt32LE(disk, 0);
  payload.writeUInt32LE(flags, 4);
  payload.writeBigUInt64LE(offset, 8);
  payload.writeUInt32LE(length, 16);
  payload.set(data, DISK_HEADER_BYTES);
  return payload;
}

/** A stream holding only the given record (between the config and the end). */
async function streamWith(payload: Buffer): Promise<Buffer> {
  return insertBeforeEnd(await snapshotBytes(async () => {}), encodeRecord(RecordType.disk, payload));
}

/** A MemoryDisk whose block status reports zero ranges, as a qcow2 with unallocated clusters does. */
class SparseDisk extends MemoryDisk {
  writes = 0;
  override blockStatus(offset: number, length: number): BlockStatus {
    const zero = this.bytes.subarray(offset, offset + length).every((b) => b === 0);
    return { kind: zero ? 'zero' : 'data', length };
  }
  override write(offset: number, data: Uint8Array): void {
    this.writes++;
    super.write(offset, data);
  }
}

describe('disk records', () => {
  it('carry a chunk with its data, and a zero chunk without any, to the disk they name', async () => {
    const data = new Uint8Array(MiB).map((_, i) => (i * 7 + 3) & 0xff);
    const bytes = await snapshotBytes(async (writer) => {
      await writer.writeDiskChunk(1, 2 * MiB, MiB, data);
      await writer.writeDiskChunk(0, 0, 4096, null);
    });
    // The zero chunk's record is its header alone.
    expect(bytes.length).toBeLessThan(MiB + 200);
    const records = await diskRecords(bytes);
    expect(records.map(({ disk, offset, length }) => ({ disk, offset, length }))).toEqual([
      { disk: 1, offset: 2 * MiB, length: MiB },
      { disk: 0, offset: 0, length: 4096 },
    ]);
    expect(Buffer.from(records[0]!.data!).equals(data)).toBe(true);
    expect(records[1]!.data).toBeNull();

    const disks = [MemoryDisk.filled(8, () => 0xaa), MemoryDisk.filled(6 * MiB / 512)];
    for (const record of records) record.applyTo(disks);
    expect(Buffer.from(disks[1]!.bytes.subarray(2 * MiB, 3 * MiB)).equals(data)).toBe(true);
    expect(disks[0]!.bytes.every((b) => b === 0)).toBe(true);
  });

  it('a chunk outside the disk, or for a disk the stream does not copy, is refused before anything is written', async () => {
    const [record] = await diskRecords(await snapshotBytes(async (writer) => {
      await writer.writeDiskChunk(0, MiB - 512, 1024, new Uint8Array(1024).fill(9));
    }));
    const small = MemoryDisk.filled(MiB / 512);
    expect(() => record!.applyTo([small])).toThrow(/record 2 \(disk at byte \d+\) has 1024 bytes at 1048064, outside disk 0 \(1048576 bytes\)/);
    expect(small.bytes.every((b) => b === 0)).toBe(true);
    expect(() => record!.applyTo([])).toThrow(/is for disk 0, which the stream does not copy/);
    expect(() => record!.applyTo([undefined, small])).toThrow(InputError);
  });

  it('an offset past 2^53 is outside any disk', async () => {
    const [record] = await diskRecords(await streamWith(diskPayload(0, 0, 2n ** 63n, 512, new Uint8Array(512))));
    expect(() => record!.applyTo([MemoryDisk.filled(8)])).toThrow(/outside disk 0/);
  });

  it.each([
    ['a header cut short', diskPayload(0, 0, 0n, 512).subarray(0, 12), /its header is 12 bytes/],
    ['unknown flags', diskPayload(0, 4, 0n, 512, new Uint8Array(512)), /unknown flags 0x4/],
    ['a chunk of no bytes', diskPayload(0, DISK_FLAG_ZERO, 0n, 0), /chunk of 0 bytes/],
    ['a chunk beyond the largest', diskPayload(0, DISK_FLAG_ZERO, 0n, 64 * MiB), /chunk of 67108864 bytes/],
    ['less data than its length', diskPayload(0, 0, 0n, 1024, new Uint8Array(512)), /carries 512 bytes of data for a chunk of 1024/],
    ['data with a zero chunk', diskPayload(0, DISK_FLAG_ZERO, 0n, 512, new Uint8Array(512)), /carries 512 bytes of data for a zero chunk of 512/],
  ])('%s: a damaged record, one line', async (_what, payload, message) => {
    const error = await diskRecords(await streamWith(payload)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InputError);
    expect((error as Error).message).toMatch(/^snapshot: damaged: record 2 \(disk at byte \d+\): /);
    expect((error as Error).message).toMatch(message);
    expect((error as Error).message).not.toContain('\n');
  });

  it('the writer refuses a chunk no record can carry', async () => {
    await snapshotBytes(async (writer) => {
      await expect(writer.writeDiskChunk(0, 0, 0, null)).rejects.toThrow(/not one a disk record can carry/);
      await expect(writer.writeDiskChunk(0, -512, 512, null)).rejects.toThrow(/not one a disk record can carry/);
      await expect(writer.writeDiskChunk(0, 0, 1024, new Uint8Array(512))).rejects.toThrow(/with 512 bytes of data/);
    });
  });
});

describe('the dirty-chunk log', () => {
  it('marks nothing until started; then each chunk a write touches, once, until harvested', () => {
    const log = new DiskDirtyLog(DiskDirtyLog.create(70 * MiB + 512));
    log.mark(0, 512);
    expect(log.logging).toBe(false);
    log.start();
    expect(log.harvest()).toEqual([]);
    log.mark(MiB - 512, 1024); // across the boundary of chunks 0 and 1
    log.mark(64 * MiB + 7, 1);
    log.mark(70 * MiB, 512); // the short last chunk
    log.mark(3 * MiB, 0);
    expect(log.harvest()).toEqual([0, 1, 64, 70]);
    expect(log.harvest()).toEqual([]);
    log.stop();
    log.mark(0, 512);
    expect(log.harvest()).toEqual([]);
    expect(chunkCount(70 * MiB + 512)).toBe(71);
  });

  it('starting again forgets what was marked before', () => {
    const log = new DiskDirtyLog(DiskDirtyLog.create(4 * MiB));
    log.start();
    log.mark(2 * MiB, 512);
    log.stop();
    log.start();
    expect(log.harvest()).toEqual([]);
  });

  it('another thread\'s marks are seen through the shared buffer', async () => {
    const buffer = DiskDirtyLog.create(40 * MiB);
    const log = new DiskDirtyLog(buffer);
    log.start();
    const { Worker } = await import('node:worker_threads');
    const worker = new Worker(`
      const { workerData } = require('node:worker_threads');
      const words = new Int32Array(workerData);
      // As DiskDirtyLog.mark does for chunk 33: word 1 + (33 >>> 5), bit 33 & 31.
      Atomics.or(words, 1 + (33 >>> 5), 1 << (33 & 31));
    `, { eval: true, workerData: buffer });
    await new Promise((resolve, reject) => worker.once('exit', resolve).once('error', reject));
    expect(log.harvest()).toEqual([33]);
  });
});

describe('chunk reads and writes', () => {
  it('a chunk that reads as zeros comes back as null, whether the backend says so or its bytes do', () => {
    const disk = new SparseDisk(new Uint8Array(2 * MiB));
    expect(readChunk(disk, 0, MiB)).toBeNull();
    const plain = MemoryDisk.filled(2 * MiB / 512);
    expect(readChunk(plain, MiB, MiB)).toBeNull();
    plain.bytes[MiB + 5] = 1;
    expect(readChunk(plain, MiB, MiB)![5]).toBe(1);
  });

  it('a zero chunk leaves a range that already reads as zeros unwritten, and zeroes one that does not', () => {
    const disk = new SparseDisk(new Uint8Array(2 * MiB));
    writeChunk(disk, 0, MiB, null);
    expect(disk.writes).toBe(0);
    disk.bytes.fill(0xee, MiB + 100, MiB + 200);
    writeChunk(disk, MiB, MiB, null);
    expect(disk.writes).toBe(1);
    expect(disk.bytes.every((b) => b === 0)).toBe(true);
  });

  it('a chunk with data is written as it is', () => {
    const disk: BlockBackend = MemoryDisk.filled(8);
    writeChunk(disk, 512, 512, new Uint8Array(512).fill(7));
    const back = new Uint8Array(1024);
    disk.read(0, back);
    expect(back.subarray(0, 512).every((b) => b === 0)).toBe(true);
    expect(back.subarray(512).every((b) => b === 7)).toBe(true);
  });
});
