import { describe, expect, it } from 'vitest';
import { CHUNK_SIZE, GuestMemory, GuestMemoryError } from '../src/memory/index.ts';
import { HostRam } from '../src/memory/host-ram.ts';

const MIB = 1 << 20;

describe('GuestMemory', () => {
  const memory = GuestMemory.ofArrayBuffers([
    { guestAddress: 0, size: 2 * MIB },
    { guestAddress: 4 * MIB, size: MIB },
  ]);

  it('reads back what was written, little-endian, at every width', () => {
    memory.writeU8(0x100, 0xab);
    memory.writeU16(0x102, 0xbeef);
    memory.writeU32(0x104, 0xdeadbeef);
    memory.writeU64(0x108, 0x0123_4567_89ab_cdefn);
    expect(memory.readU8(0x100)).toBe(0xab);
    expect(memory.readU16(0x102)).toBe(0xbeef);
    expect(memory.readU32(0x104)).toBe(0xdeadbeef);
    expect(memory.readU64(0x108)).toBe(0x0123_4567_89ab_cdefn);
    expect(memory.readU8(0x108)).toBe(0xef);
    expect([...memory.read(0x104, 4)]).toEqual([0xef, 0xbe, 0xad, 0xde]);
  });

  it('slices() are the guest memory itself, not a copy', () => {
    const [view] = memory.slices(4 * MIB + 16, 4);
    view!.set([1, 2, 3, 4]);
    expect(memory.readU32(4 * MIB + 16)).toBe(0x04030201);
  });

  it('refuses accesses outside RAM: past the end, in a hole, negative, straddling', () => {
    expect(() => memory.readU8(2 * MIB)).toThrow(GuestMemoryError);
    expect(() => memory.readU32(2 * MIB - 2)).toThrow(GuestMemoryError);
    expect(() => memory.readU8(3 * MIB)).toThrow(/outside guest RAM/);
    expect(() => memory.readU8(5 * MIB)).toThrow(GuestMemoryError);
    expect(() => memory.readU8(-1)).toThrow(GuestMemoryError);
    expect(() => memory.write(2 * MIB - 1, new Uint8Array(2))).toThrow(GuestMemoryError);
    expect(() => memory.slices(0, 2 * MIB + 1)).toThrow(GuestMemoryError);
    expect(() => memory.writeU64(2 * MIB - 4, 0n)).toThrow(/outside guest RAM/);
    expect(() => memory.read(2 ** 60, 1)).toThrow(GuestMemoryError);
    expect(() => memory.read(0.5, 1)).toThrow(GuestMemoryError);
  });

  it('contains() answers for whole ranges', () => {
    expect(memory.contains(0, 2 * MIB)).toBe(true);
    expect(memory.contains(0, 2 * MIB + 1)).toBe(false);
    expect(memory.contains(4 * MIB, MIB)).toBe(true);
    expect(memory.contains(2 * MIB - 1, 4 * MIB)).toBe(false);
  });

  it('ranges spanning host chunks come back from slices() as one view per chunk', () => {
    const chunked = new GuestMemory([{ guestAddress: 0, size: 8, chunks: [new Uint8Array(4), new Uint8Array(4)] }]);
    chunked.write(2, Uint8Array.of(1, 2, 3, 4));
    expect(chunked.slices(2, 4).map((s) => [...s])).toEqual([[1, 2], [3, 4]]);
    expect([...chunked.read(0, 8)]).toEqual([0, 0, 1, 2, 3, 4, 0, 0]);
    expect(chunked.readU32(2)).toBe(0x04030201);
  });

  it('rejects overlapping ranges', () => {
    expect(() => GuestMemory.ofArrayBuffers([{ guestAddress: 0, size: MIB }, { guestAddress: MIB / 2, size: MIB }])).toThrow(/overlap/);
  });
});

/**
 * Every accessor at every address near every host chunk boundary, against a
 * flat model of the same bytes: the chunking must be invisible. Two ranges
 * with a hole between them, cut into chunks of uneven sizes (down to 1 byte,
 * smaller than the widest access), so values straddle two and three chunks.
 */
describe('GuestMemory across host chunk boundaries', () => {
  const SECOND = 0x1000;
  const layout = [
    { guestAddress: 0, chunkSizes: [64, 3, 1, 5, 64, 40] },
    { guestAddress: SECOND, chunkSizes: [16, 16, 7, 9, 32] },
  ];
  function chunkedMemory(): { memory: GuestMemory; boundaries: number[]; model: Uint8Array } {
    const boundaries: number[] = [];
    const ranges = layout.map(({ guestAddress, chunkSizes }) => {
      let at = guestAddress;
      const chunks = chunkSizes.map((n) => {
        if (at !== guestAddress) boundaries.push(at);
        at += n;
        return new Uint8Array(n);
      });
      return { guestAddress, size: at - guestAddress, chunks };
    });
    const model = new Uint8Array(SECOND + 80);
    return { memory: new GuestMemory(ranges), boundaries, model };
  }
  const inRam = (memory: GuestMemory, address: number, width: number) => memory.contains(address, width);

  type Width = 1 | 2 | 4 | 8;
  const widths: Width[] = [1, 2, 4, 8];
  const write = (memory: GuestMemory, width: Width, address: number, value: bigint) => {
    if (width === 1) memory.writeU8(address, Number(value));
    else if (width === 2) memory.writeU16(address, Number(value));
    else if (width === 4) memory.writeU32(address, Number(value));
    else memory.writeU64(address, value);
  };
  const read = (memory: GuestMemory, width: Width, address: number): bigint => {
    if (width === 1) return BigInt(memory.readU8(address));
    if (width === 2) return BigInt(memory.readU16(address));
    if (width === 4) return BigInt(memory.readU32(address));
    return memory.readU64(address);
  };
  const modelRead = (model: Uint8Array, width: Width, address: number): bigint => {
    let v = 0n;
    for (let i = width - 1; i >= 0; i--) v = (v << 8n) | BigInt(model[address + i]!);
    return v;
  };
  const modelWrite = (model: Uint8Array, width: Width, address: number, value: bigint) => {
    for (let i = 0; i < width; i++) model[address + i] = Number((value >> BigInt(8 * i)) & 0xffn);
  };
  const wholeRam = (memory: GuestMemory) => memory.ranges.map((r) => [...memory.read(r.guestAddress, r.size)]);
  const wholeModel = (memory: GuestMemory, model: Uint8Array) => memory.ranges.map((r) => [...model.subarray(r.guestAddress, r.guestAddress + r.size)]);

  it('reads and writes of 8, 16, 32 and 64 bits at every offset around each boundary', () => {
    const { memory, boundaries, model } = chunkedMemory();
    expect(boundaries.length).toBe(9);
    let seed = 1;
    const next = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
    for (const b of boundaries) {
      for (const width of widths) {
        for (let address = b - 8; address <= b + 1; address++) {
          if (!inRam(memory, address, width)) continue;
          const value = (BigInt(next()) << 33n ^ BigInt(next())) & ((1n << BigInt(8 * width)) - 1n);
          write(memory, width, address, value);
          modelWrite(model, width, address, value);
          expect(read(memory, width, address)).toBe(value);
          for (const w of widths) {
            for (let a = b - 8; a <= b + 1; a++) if (inRam(memory, a, w)) expect(read(memory, w, a)).toBe(modelRead(model, w, a));
          }
        }
      }
    }
    expect(wholeRam(memory)).toEqual(wholeModel(memory, model));
  });

  it('byte copies, fills and slices over one, two and many chunks', () => {
    const { memory, boundaries, model } = chunkedMemory();
    let value = 0;
    for (const b of boundaries) {
      for (const [from, length] of [[b - 1, 2], [b - 5, 13], [b - 60, 62], [b, 1], [b - 1, 1]] as const) {
        if (!inRam(memory, from, length)) continue;
        const data = Uint8Array.from({ length }, () => ++value & 0xff);
        memory.write(from, data);
        model.set(data, from);
        expect([...memory.read(from, length)]).toEqual([...data]);
        const views = memory.slices(from, length);
        expect(views.reduce((n, v) => n + v.length, 0)).toBe(length);
        expect(views.flatMap((v) => [...v])).toEqual([...data]);
        // A view is the memory itself: writing through it is seen by the accessors.
        views[views.length - 1]![views[views.length - 1]!.length - 1] = 0xa5;
        model[from + length - 1] = 0xa5;
        expect(memory.readU8(from + length - 1)).toBe(0xa5);
      }
      if (inRam(memory, b - 3, 6)) {
        memory.fill(b - 3, 6, 0x5a);
        model.fill(0x5a, b - 3, b + 3);
      }
    }
    expect(wholeRam(memory)).toEqual(wholeModel(memory, model));
  });

  it('an access that runs off the end of a range is still refused, at every width', () => {
    const { memory } = chunkedMemory();
    for (const r of memory.ranges) {
      const end = r.guestAddress + r.size;
      for (const width of widths) {
        for (let address = end - width + 1; address < end; address++) {
          expect(() => read(memory, width, address)).toThrow(/outside guest RAM/);
          expect(() => write(memory, width, address, 0n)).toThrow(/outside guest RAM/);
        }
      }
      expect(() => memory.slices(end - 1, 2)).toThrow(/outside guest RAM/);
    }
    expect(() => memory.readU32(-2)).toThrow(/outside guest RAM/);
  });

  it('ofArrayBuffers(layout, chunkSize) puts boundaries where asked', () => {
    const small = GuestMemory.ofArrayBuffers([{ guestAddress: 0, size: 4096 }], 1024);
    expect(small.slices(1020, 8).map((v) => v.length)).toEqual([4, 4]);
    small.writeU64(1020, 0x1122334455667788n);
    expect(small.readU64(1020)).toBe(0x1122334455667788n);
    expect(small.readU32(1022)).toBe(0x33445566);
  });

  // The real chunking: host RAM is viewed 1 GiB at a time. 2 GiB of
  // MAP_NORESERVE memory costs only the pages touched.
  it('host RAM of 2 GiB: every width across the real 1 GiB chunk boundary', () => {
    const ram = HostRam.allocate([{ guestAddress: 0, size: 2 * CHUNK_SIZE }]);
    const memory = ram.memory;
    expect(memory.slices(CHUNK_SIZE - 2, 4).length).toBe(2);
    // The audit's case: a request header 2 bytes before the boundary.
    memory.write(CHUNK_SIZE - 2, Uint8Array.from({ length: 16 }, (_, i) => i + 1));
    expect(memory.readU32(CHUNK_SIZE - 2)).toBe(0x04030201);
    expect(memory.readU64(CHUNK_SIZE - 2)).toBe(0x0807060504030201n);
    expect(memory.readU16(CHUNK_SIZE - 1)).toBe(0x0302);
    for (const width of widths) {
      for (let address = CHUNK_SIZE - width; address <= CHUNK_SIZE; address++) {
        const value = 0xf0e1d2c3b4a59687n & ((1n << BigInt(8 * width)) - 1n);
        write(memory, width, address, value);
        expect(read(memory, width, address)).toBe(value);
        expect([...memory.read(address, width)]).toEqual(Array.from({ length: width }, (_, i) => Number((value >> BigInt(8 * i)) & 0xffn)));
      }
    }
  });
});
