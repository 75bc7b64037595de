import { describe, expect, it } from 'vitest';
import { GuestMemory, GuestMemoryError } from '../src/memory/index.ts';

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

  it('slice() is the guest memory itself, not a copy', () => {
    const view = memory.slice(4 * MIB + 16, 4);
    view.set([1, 2, 3, 4]);
    expect(memory.readU32(4 * MIB + 16)).toBe(0x04030201);
  });

  it('refuses accesses outside RAM: past the end, in a hole, negative, straddling', () => {
    expect(() => memory.readU8(2 * MIB)).toThrow(GuestMemoryError);
    expect(() => memory.readU32(2 * MIB - 2)).toThrow(GuestMemoryError);
    expect(() => memory.readU8(3 * MIB)).toThrow(/outside guest RAM/);
    expect(() => memory.readU8(5 * MIB)).toThrow(GuestMemoryError);
    expect(() => memory.readU8(-1)).toThrow(GuestMemoryError);
    expect(() => memory.write(2 * MIB - 1, new Uint8Array(2))).toThrow(GuestMemoryError);
    expect(() => memory.slice(0, 2 * MIB + 1)).toThrow(GuestMemoryError);
    expect(() => memory.read(2 ** 60, 1)).toThrow(GuestMemoryError);
    expect(() => memory.read(0.5, 1)).toThrow(GuestMemoryError);
  });

  it('contains() answers for whole ranges', () => {
    expect(memory.contains(0, 2 * MIB)).toBe(true);
    expect(memory.contains(0, 2 * MIB + 1)).toBe(false);
    expect(memory.contains(4 * MIB, MIB)).toBe(true);
    expect(memory.contains(2 * MIB - 1, 4 * MIB)).toBe(false);
  });

  it('ranges spanning host chunks are reached piecewise through slices()', () => {
    const chunked = new GuestMemory([{ guestAddress: 0, size: 8, chunks: [new Uint8Array(4), new Uint8Array(4)] }]);
    chunked.write(2, Uint8Array.of(1, 2, 3, 4));
    expect(chunked.slices(2, 4).map((s) => [...s])).toEqual([[1, 2], [3, 4]]);
    expect([...chunked.read(0, 8)]).toEqual([0, 0, 1, 2, 3, 4, 0, 0]);
    expect(() => chunked.readU32(2)).toThrow(/crosses a host chunk/);
  });

  it('rejects overlapping ranges', () => {
    expect(() => GuestMemory.ofArrayBuffers([{ guestAddress: 0, size: MIB }, { guestAddress: MIB / 2, size: MIB }])).toThrow(/overlap/);
  });
});
