// The snapshot stream format (docs/snapshot-format.md), written and read in
// memory: what goes in comes out, and every way a stream can be damaged,
// cut short or hostile is refused with one line before any RAM is touched.
import { Readable, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { InputError } from '../src/errors.ts';
import { GuestMemory } from '../src/memory/index.ts';
import { PAGE_SIZE, SnapshotReader, SnapshotWriter, pagesInBitmap } from '../src/snapshot/index.ts';
import {
  CONFIG, encodeRecord, fillPage, insertBeforeEnd, readBack, recordSpans, snapshotBytes, streamOf,
} from './helpers/snapshot-streams.ts';

const KIB = 1024;
const MIB = 1024 * KIB;

/** Two RAM ranges with a hole between them, in 64 KiB host chunks so pages meet chunk boundaries. */
function twoRangeMemory(): GuestMemory {
  return GuestMemory.ofArrayBuffers([{ guestAddress: 0, size: 640 * KIB }, { guestAddress: MIB, size: 3 * MIB }], 64 * KIB);
}

function sameBytes(a: GuestMemory, b: GuestMemory): boolean {
  return a.ranges.every((range) => Buffer.from(a.read(range.guestAddress, range.size)).equals(b.read(range.guestAddress, range.size)));
}

const scratchMemory = twoRangeMemory();

/** The error a read of `bytes` ends with (its RAM applied to a scratch memory). */
async function readError(bytes: Buffer): Promise<Error> {
  try {
    await readBack(bytes, scratchMemory);
  } catch (e) {
    return e as Error;
  }
  throw new Error('the stream was accepted');
}

/** A small stream: config, a section, a RAM record with data and zero pages, end. */
async function smallStream(): Promise<Buffer> {
  const memory = twoRangeMemory();
  fillPage(memory, 0x1000, 1);
  fillPage(memory, MIB + 0x2000, 2);
  return snapshotBytes(async (writer) => {
    await writer.writeValue('vcpu0', { rip: 0xfff0n, regs: new Uint8Array([1, 2, 3]) });
    await writer.writeRamPages(memory, [0x1000, 0x3000, MIB + 0x2000]);
  });
}

/** Reads every record of a stream, for the error it ends with. */
async function readBackFrom(stream: Readable): Promise<number> {
  let records = 0;
  for await (const record of (await SnapshotReader.open(stream)).records()) records += record.type === 'ram' ? 1 : 0;
  return records;
}

describe('a snapshot stream round trip', () => {
  it('gives back the config, the sections and every page of RAM, across ranges and host chunks', async () => {
    const source = twoRangeMemory();
    const pages = [0, 0xf000, 0x10000, 0x9f000, MIB, MIB + 0x10000, 4 * MIB - PAGE_SIZE];
    pages.forEach((address, i) => fillPage(source, address, i + 1));
    source.writeU8(0x20000 + 17, 0x5a); // a page whose only non-zero byte is in its middle
    const state = { regs: new BigUint64Array([1n, 2n ** 63n]), lapic: new Uint8Array(1024).fill(7), name: 'cpu0', map: new Map([[1, 'a']]) };
    let written = { dataPages: 0, zeroPages: 0, bytes: 0 };
    const bytes = await snapshotBytes(async (writer) => {
      await writer.writeValue('vcpu0', state);
      await writer.writeSection('raw', Buffer.from('opaque bytes'));
      written = await writer.writeRamPages(source, 'nonzero');
    });

    const restored = twoRangeMemory();
    const back = await readBack(bytes, restored, 777);
    expect(back.config).toEqual(CONFIG);
    expect(sameBytes(source, restored)).toBe(true);
    expect(back.sections.get('raw')!.toString()).toBe('opaque bytes');
    const reader = await SnapshotReader.open(streamOf(bytes));
    for await (const record of reader.records()) {
      if (record.type === 'section' && record.name === 'vcpu0') expect(record.readValue()).toEqual(state);
    }
    // A full snapshot leaves zero pages out.
    expect(written).toMatchObject({ dataPages: pages.length + 1, zeroPages: 0 });
    expect(bytes.length).toBeLessThan((pages.length + 2) * (PAGE_SIZE + 8) + 1024);
  });

  it('sends a dirty page that is now all zeroes as a zero marker, which zeroes it on the destination', async () => {
    const source = twoRangeMemory();
    fillPage(source, 0x3000, 1);
    const destination = twoRangeMemory();
    fillPage(destination, 0x3000, 9);
    fillPage(destination, MIB + 0x5000, 9); // stale: the source has zeroed this page since
    let written = { dataPages: 0, zeroPages: 0, bytes: 0 };
    const bytes = await snapshotBytes(async (writer) => {
      written = await writer.writeRamPages(source, [0x3000, MIB + 0x5000]);
    });
    await readBack(bytes, destination);
    expect(written).toMatchObject({ dataPages: 1, zeroPages: 1 });
    expect(sameBytes(source, destination)).toBe(true);
  });

  it('splits RAM into records of at most 256 pages', async () => {
    const source = GuestMemory.ofArrayBuffers([{ guestAddress: 0, size: 4 * MIB }]);
    for (let address = 0; address < 4 * MIB; address += PAGE_SIZE) fillPage(source, address, address / PAGE_SIZE);
    const bytes = await snapshotBytes((writer) => writer.writeRamPages(source, 'nonzero').then(() => {}));
    const restored = GuestMemory.ofArrayBuffers([{ guestAddress: 0, size: 4 * MIB }]);
    const back = await readBack(bytes, restored, 64 * KIB);
    expect(back.ramRecords).toBe(4);
    expect(sameBytes(source, restored)).toBe(true);
  });

  it('pagesInBitmap() reads a KVM dirty bitmap: bit n of the bitmap is page n of the slot', () => {
    const bitmap = new Uint8Array([0b0000_0101, 0, 0b1000_0000]);
    expect([...pagesInBitmap(MIB, bitmap)]).toEqual([MIB, MIB + 2 * PAGE_SIZE, MIB + 23 * PAGE_SIZE]);
  });
});

describe('a damaged stream', () => {
  it('fails the CRC check of the record a flipped byte is in, whichever record and field', async () => {
    const bytes = await smallStream();
    const spans = recordSpans(bytes);
    expect(spans.map((s) => s.type)).toEqual([1, 3, 2, 4]);
    for (const [i, span] of spans.entries()) {
      const positions = [span.offset, span.end - 1]; // the type field and the CRC
      if (span.length > 0) positions.push(span.offset + 8 + Math.floor(span.length / 2));
      for (const at of positions) {
        const damaged = Buffer.from(bytes);
        damaged[at]! ^= 0x20;
        const error = await readError(damaged);
        expect(error).toBeInstanceOf(InputError);
        expect(error.message).toMatch(new RegExp(`^snapshot: damaged: record ${i + 1} \\(.* at byte ${span.offset}\\) fails its CRC32 check$`));
      }
    }
  });

  it('is refused wherever a byte is flipped, with an InputError', async () => {
    const bytes = await smallStream();
    for (let at = 0; at < bytes.length; at++) {
      const damaged = Buffer.from(bytes);
      damaged[at]! ^= 0x01;
      expect(await readError(damaged), `byte ${at}`).toBeInstanceOf(InputError);
    }
  });

  it('is truncated when it ends at any byte, at a record boundary or inside a record', async () => {
    const bytes = await smallStream();
    const boundaries = new Set(recordSpans(bytes).map((s) => s.offset));
    for (let length = 12; length < bytes.length; length++) {
      const error = await readError(bytes.subarray(0, length));
      expect(error, `cut at ${length}`).toBeInstanceOf(InputError);
      expect(error.message, `cut at ${length}`).toMatch(boundaries.has(length)
        ? /^snapshot: truncated: the stream ends after record \d+ \(byte \d+\) with no end record$/
        : /^snapshot: truncated: the stream ends inside record \d+ \(which starts at byte \d+\)$/);
    }
    for (let length = 1; length < 12; length++) {
      expect((await readError(bytes.subarray(0, length))).message).toBe(`snapshot: not a tsvmm snapshot, or truncated (the stream ends after ${length} bytes)`);
    }
    expect((await readError(Buffer.alloc(0))).message).toBe('snapshot: not a tsvmm snapshot (the stream is empty)');
  });

  it('without its magic is not a tsvmm snapshot', async () => {
    const elf = Buffer.concat([Buffer.from('\x7fELF\x02\x01\x01\x00', 'latin1'), Buffer.alloc(64)]);
    expect((await readError(elf)).message).toBe('snapshot: not a tsvmm snapshot (it starts with 7f454c4602010100)');
  });

  it('of another format version is refused before its records are read', async () => {
    const bytes = await smallStream();
    bytes.writeUInt32LE(2, 8);
    expect((await readError(bytes)).message).toBe('snapshot: snapshot format version 2: this tsvmm reads version 1');
  });

  it('with a record type no tsvmm writes is refused', async () => {
    const bytes = insertBeforeEnd(await smallStream(), encodeRecord(9, Buffer.from('future')));
    const at = recordSpans(bytes)[3]!.offset;
    expect((await readError(bytes)).message).toBe(`snapshot: damaged: record 4 at byte ${at} has an unknown type 9`);
  });

  it('with data after its end record is refused', async () => {
    const bytes = Buffer.concat([await smallStream(), Buffer.from([0])]);
    expect((await readError(bytes)).message).toMatch(/^snapshot: damaged: data follows the end record/);
  });

  it('whose first record is not the machine config is refused', async () => {
    const bytes = await smallStream();
    const [config] = recordSpans(bytes);
    const withoutConfig = Buffer.concat([bytes.subarray(0, 12), bytes.subarray(config!.end)]);
    expect((await readError(withoutConfig)).message).toBe('snapshot: damaged: record 1 is a section record, not the machine config');
  });

  it('with a length beyond any record is refused without reading or allocating it', async () => {
    const bytes = await smallStream();
    bytes.writeUInt32LE(0xffff_fff0, recordSpans(bytes)[1]!.offset + 4);
    expect((await readError(bytes)).message).toMatch(/^snapshot: damaged: record 2 \(section at byte \d+\) claims 4294967280 bytes/);
  });

  it('with a section value that does not decode gives one line naming the section', async () => {
    const bytes = await snapshotBytes((writer) => writer.writeSection('pit', Buffer.from([0xff, 0x0f, 0x99, 0x99, 0x99])));
    const reader = await SnapshotReader.open(streamOf(bytes));
    for await (const record of reader.records()) {
      expect(record.type).toBe('section');
      if (record.type === 'section') expect(() => record.readValue()).toThrow(/^snapshot: damaged: section 'pit' in record 2 \(section at byte \d+\) cannot be decoded/);
    }
  });

  it('whose stream fails mid-way gives one line naming the failure', async () => {
    const bytes = await smallStream();
    const failing = new Readable({
      read() {
        this.push(bytes.subarray(0, 100));
        this.destroy(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET', errno: -104 }));
      },
    });
    await expect(readBackFrom(failing)).rejects.toThrow(/^snapshot: read failed: connection reset by peer \(ECONNRESET\)$/);
  });
});

describe('a hostile RAM record', () => {
  /** A stream whose RAM record holds these page entries (address|flags, data or none). */
  function streamWithPages(entries: { entry: bigint; data?: Uint8Array }[]): Promise<Buffer> {
    const payload = Buffer.concat(entries.map(({ entry, data }) => {
      const head = Buffer.alloc(8);
      head.writeBigUInt64LE(entry);
      return data ? Buffer.concat([head, data]) : head;
    }));
    return snapshotBytes(() => Promise.resolve()).then((bytes) => insertBeforeEnd(bytes, encodeRecord(2, payload)));
  }

  const page = new Uint8Array(PAGE_SIZE).fill(0xcc);

  it.each([
    ['past the end of RAM', BigInt(4 * MIB)],
    ['in the hole between two ranges', BigInt(640 * KIB)],
    ['straddling nothing but far beyond 2^53', 1n << 60n],
    ['at the top of the 64-bit space', 0xffff_ffff_ffff_f000n],
  ])('with a page %s is refused, and none of its pages is written', async (_where, address) => {
    const bytes = await streamWithPages([{ entry: 0x5000n, data: page }, { entry: address, data: page }]);
    const memory = twoRangeMemory();
    const reader = await SnapshotReader.open(streamOf(bytes));
    let refused: Error | undefined;
    for await (const record of reader.records()) {
      if (record.type === 'ram') refused = (() => { try { record.applyTo(memory); } catch (e) { return e as Error; } })();
    }
    expect(refused).toBeInstanceOf(InputError);
    expect(refused!.message).toMatch(/^snapshot: record 2 \(ram at byte \d+\) has a page at 0x[0-9a-f]+, outside guest RAM \(0x0-0x9ffff, 0x100000-0x3fffff\)$/);
    expect(memory.readU8(0x5000)).toBe(0);
  });

  it('with unknown page flags is damaged', async () => {
    const bytes = await streamWithPages([{ entry: 0x5000n | 0x2n }]);
    expect((await readError(bytes)).message).toMatch(/^snapshot: damaged: record 2 \(ram at byte \d+\): its page entry at payload byte 0 has unknown flags 0x2$/);
  });

  it('whose page data is cut short is damaged', async () => {
    const bytes = await streamWithPages([{ entry: 0x5000n, data: page.subarray(0, 100) }]);
    expect((await readError(bytes)).message).toMatch(/^snapshot: damaged: record 2 \(ram at byte \d+\): the data of its page at 0x5000 is cut short$/);
  });
});

describe('the writer', () => {
  it('waits for a slow destination instead of buffering the whole of RAM', async () => {
    const memory = GuestMemory.ofArrayBuffers([{ guestAddress: 0, size: 8 * MIB }]);
    for (let address = 0; address < 8 * MIB; address += PAGE_SIZE) fillPage(memory, address, address / PAGE_SIZE);
    let mostBuffered = 0;
    let received = 0;
    const slow = new Writable({
      highWaterMark: 16 * KIB,
      write(chunk: Buffer, _encoding, done) {
        mostBuffered = Math.max(mostBuffered, slow.writableLength);
        received += chunk.length;
        setImmediate(done);
      },
    });
    const writer = await SnapshotWriter.start(slow, CONFIG);
    await writer.writeRamPages(memory, 'nonzero');
    await writer.finish();
    expect(received).toBe(writer.bytesWritten);
    expect(received).toBeGreaterThan(8 * MIB);
    // At most one RAM record (256 pages) waits behind the one being written.
    expect(mostBuffered).toBeLessThanOrEqual(2 * 256 * (PAGE_SIZE + 8) + 16 * KIB);
  });

  it('reports a destination that went away as one line', async () => {
    const gone = new Writable({ write(_chunk, _encoding, done) { done(Object.assign(new Error('write EPIPE'), { code: 'EPIPE', errno: -32 })); } });
    const writer = SnapshotWriter.start(gone, CONFIG, 'exec:true').then((w) => w.writeSection('a', new Uint8Array(1)));
    await expect(writer).rejects.toThrow(/^exec:true: write failed: broken pipe \(EPIPE\)$/);
  });
});
