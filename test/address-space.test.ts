import { describe, expect, it } from 'vitest';
import { AddressSpace, BusError, type BusDevice } from '../src/bus/index.ts';

class Recorder implements BusDevice {
  readonly log: string[] = [];
  constructor(readonly name: string, private readonly value = 0x12345678) {}
  read(offset: number, size: number): number {
    this.log.push(`r${size}@${offset}`);
    return this.value & (size === 4 ? 0xffffffff : (1 << (size * 8)) - 1);
  }
  write(offset: number, size: number, value: number): void {
    this.log.push(`w${size}@${offset}=${value.toString(16)}`);
  }
}

describe('AddressSpace (PIO)', () => {
  it('dispatches with offsets relative to the range base', () => {
    const pio = AddressSpace.ports();
    const uart = new Recorder('uart');
    pio.register(0x3f8, 8, uart);
    pio.write(0x3f8, 1, 0x41);
    expect(pio.read(0x3fd, 1)).toBe(0x78);
    expect(uart.log).toEqual(['w1@0=41', 'r1@5']);
  });

  it('refuses overlapping registrations and names both devices', () => {
    const pio = AddressSpace.ports();
    pio.register(0x3f8, 8, new Recorder('COM1'));
    expect(() => pio.register(0x3ff, 2, new Recorder('other'))).toThrow(BusError);
    expect(() => pio.register(0x3f0, 9, new Recorder('other'))).toThrow(/overlaps COM1/);
    pio.register(0x400, 1, new Recorder('next door'));
    expect(() => pio.register(0xffff, 2, new Recorder('too far'))).toThrow(/outside/);
  });

  it('unclaimed ports read all-ones of the access width, drop writes, and are counted', () => {
    const pio = AddressSpace.ports();
    expect(pio.read(0x80, 1)).toBe(0xff);
    expect(pio.read(0x80, 2)).toBe(0xffff);
    expect(pio.read(0x80, 4)).toBe(0xffffffff);
    pio.write(0x80, 1, 0);
    expect(pio.unclaimedReads).toBe(3);
    expect(pio.unclaimedWrites).toBe(1);
  });

  it('an access running past the end of a device is unclaimed, not passed on', () => {
    const pio = AddressSpace.ports();
    const dev = new Recorder('two ports');
    pio.register(0x500, 2, dev);
    expect(pio.read(0x501, 4)).toBe(0xffffffff);
    expect(dev.log).toEqual([]);
  });
});

describe('AddressSpace: byte-wide ISA devices', () => {
  class ByteRegisters implements BusDevice {
    readonly byteWide = true;
    readonly regs = new Uint8Array(2);
    constructor(readonly name: string) {}
    read(offset: number): number { return this.regs[offset]!; }
    write(offset: number, _size: number, value: number): void { this.regs[offset] = value; }
  }

  it('out 0x70, ax writes AL to 0x70 and AH to 0x71; in ax reads them back low byte first', () => {
    const pio = AddressSpace.ports();
    const cmos = new ByteRegisters('cmos');
    pio.register(0x70, 2, cmos);
    pio.write(0x70, 2, 0x060b);
    expect([...cmos.regs]).toEqual([0x0b, 0x06]);
    expect(pio.read(0x70, 2)).toBe(0x060b);
  });

  it('a wide access that runs past the device reaches the next port\'s owner, or all-ones', () => {
    const pio = AddressSpace.ports();
    pio.register(0x70, 2, new ByteRegisters('cmos'));
    expect(pio.read(0x71, 2)).toBe(0xff00);
    expect(pio.unclaimedReads).toBe(1);
  });
});

describe('AddressSpace (MMIO)', () => {
  it('finds ranges among many and splits 8-byte accesses for 4-byte devices', () => {
    const mmio = AddressSpace.memory();
    const devices = Array.from({ length: 10 }, (_, i) => new Recorder(`dev${i}`, 0x1000 + i));
    devices.forEach((d, i) => mmio.register(0xd000_0000 + i * 0x1000, 0x200, d));
    expect(mmio.read(0xd000_3004, 4)).toBe(0x1003);
    expect(mmio.read(0xd000_3200, 4)).toBe(0xffffffff); // in the gap after dev3
    mmio.write64(0xd000_5008, 0x1122_3344_5566_7788n);
    expect(devices[5]!.log).toEqual(['w4@8=55667788', 'w4@12=11223344']);
    expect(mmio.read64(0xd000_6000)).toBe((0x1006n << 32n) | 0x1006n);
  });

  it('uses a device\'s own 8-byte handlers when it has them', () => {
    const mmio = AddressSpace.memory();
    const seen: bigint[] = [];
    mmio.register(0x1_0000_0000, 16, {
      name: 'wide', read: () => 0, write: () => {},
      read64: () => 0xfedc_ba98_7654_3210n, write64: (_o, v) => { seen.push(v); },
    });
    expect(mmio.read64(0x1_0000_0008)).toBe(0xfedc_ba98_7654_3210n);
    mmio.write64(0x1_0000_0000, 5n);
    expect(seen).toEqual([5n]);
    expect(mmio.read64(0x2_0000_0000)).toBe(0xffff_ffff_ffff_ffffn);
    expect(mmio.unclaimedReads).toBe(1);
  });

  it('asks onUnclaimed before a miss counts: a range it registers then serves the same access (a BAR another vCPU thread moved)', () => {
    const mmio = AddressSpace.memory();
    const moved = new Recorder('bar', 0x55);
    let asked = 0;
    mmio.onUnclaimed = () => {
      asked++;
      if (mmio.find(0xe000_1000, 4)) return false; // nothing new: the miss stands
      mmio.register(0xe000_1000, 0x1000, moved);
      return true;
    };
    expect(mmio.read(0xe000_1004, 4)).toBe(0x55);
    mmio.write64(0xe000_1008, 7n);
    expect(moved.log).toEqual(['r4@4', 'w4@8=7', 'w4@12=0']);
    expect(mmio.unclaimedReads + mmio.unclaimedWrites).toBe(0);
    expect(mmio.read(0xf000_0000, 4)).toBe(0xffff_ffff);
    expect([asked, mmio.unclaimedReads]).toEqual([2, 1]);
  });
});
