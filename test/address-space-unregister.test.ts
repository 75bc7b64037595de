// AddressSpace.unregister: a range can be released and its addresses claimed
// again (PCI BARs move when the guest programs them).
import { describe, expect, it } from 'vitest';
import { AddressSpace, type BusDevice } from '../src/bus/index.ts';

function device(name: string, value: number): BusDevice {
  return { name, read: () => value, write: () => {} };
}

describe('AddressSpace.unregister', () => {
  it('releases an MMIO range: its addresses become unclaimed and can be claimed again', () => {
    const mmio = AddressSpace.memory();
    const a = device('a', 0xaa);
    mmio.register(0xd000_0000, 0x4000, a);
    mmio.register(0xd000_4000, 0x1000, device('b', 0xbb));
    expect(mmio.read(0xd000_0010, 4)).toBe(0xaa);

    expect(mmio.unregister(0xd000_0000)).toBe(a);
    expect(mmio.read(0xd000_0010, 4)).toBe(0xffff_ffff);
    expect(mmio.unclaimedReads).toBe(1);
    expect(mmio.read(0xd000_4000, 4)).toBe(0xbb);
    expect(mmio.list().map((r) => r.device.name)).toEqual(['b']);

    mmio.register(0xd000_2000, 0x2000, device('c', 0xcc));
    expect(mmio.read(0xd000_3ffc, 4)).toBe(0xcc);
  });

  it('forgets the last-hit cache, so a released range is not served from it', () => {
    const mmio = AddressSpace.memory();
    mmio.register(0xe000_0000, 0x1000, device('a', 1));
    expect(mmio.read(0xe000_0000, 4)).toBe(1); // now cached
    mmio.unregister(0xe000_0000);
    expect(mmio.read(0xe000_0000, 4)).toBe(0xffff_ffff);
  });

  it('rebuilds the port table', () => {
    const pio = AddressSpace.ports();
    pio.register(0xcf8, 4, device('address', 1));
    pio.register(0xcfc, 4, device('data', 2));
    pio.unregister(0xcf8);
    expect(pio.read(0xcf8, 1)).toBe(0xff);
    expect(pio.read(0xcfc, 1)).toBe(2);
  });

  it('returns undefined for a base no range starts at, and changes nothing', () => {
    const mmio = AddressSpace.memory();
    mmio.register(0xd000_0000, 0x1000, device('a', 1));
    expect(mmio.unregister(0xd000_0004)).toBeUndefined();
    expect(mmio.unregister(0x1000)).toBeUndefined();
    expect(mmio.list()).toHaveLength(1);
  });
});
