// The PCI host bridge's configuration mechanism #1 (ports 0xCF8/0xCFC) and a
// type-0 configuration space, checked register by register as the PCI Local
// Bus spec and Linux's arch/x86/pci/direct.c use them.
import { describe, expect, it } from 'vitest';
import { AddressSpace } from '../src/bus/index.ts';
import {
  CAPABILITY_START, PciCommand, PciConfig, PciConfigSpace, PciHostBridge, PciStatus, SLOT_COUNT, type PciFunction,
} from '../src/devices/pci/index.ts';

const ENABLE = 0x8000_0000;

function configAddress(bus: number, slot: number, fn: number, register: number): number {
  return (ENABLE | (bus << 16) | (slot << 11) | (fn << 8) | (register & 0xfc)) >>> 0;
}

/** A function that answers with its offset and records every access. */
class Recorder implements PciFunction {
  readonly log: string[] = [];
  constructor(readonly name: string) {}
  readConfig(offset: number, size: number): number {
    this.log.push(`r${size}@${offset.toString(16)}`);
    return size === 1 ? offset : size === 2 ? 0xbe00 | offset : (0xcafe_0000 | offset) >>> 0;
  }
  writeConfig(offset: number, size: number, value: number): void {
    this.log.push(`w${size}@${offset.toString(16)}=${value.toString(16)}`);
  }
}

function setup() {
  const pio = AddressSpace.ports();
  const bridge = new PciHostBridge();
  bridge.attach(pio);
  const read = (bus: number, slot: number, fn: number, register: number, size: number) => {
    pio.write(0xcf8, 4, configAddress(bus, slot, fn, register));
    return pio.read(0xcfc + (register & 3), size);
  };
  const write = (bus: number, slot: number, fn: number, register: number, size: number, value: number) => {
    pio.write(0xcf8, 4, configAddress(bus, slot, fn, register));
    pio.write(0xcfc + (register & 3), size, value);
  };
  return { pio, bridge, read, write };
}

describe('PCI configuration mechanism #1', () => {
  it("passes Linux's pci_check_type1: CONFIG_ADDRESS reads back 0x80000000 after the byte write to 0xCFB", () => {
    const { pio, bridge } = setup();
    pio.write(0xcfb, 1, 0x01);
    const saved = pio.read(0xcf8, 4);
    pio.write(0xcf8, 4, 0x8000_0000);
    expect(pio.read(0xcf8, 4)).toBe(0x8000_0000);
    pio.write(0xcf8, 4, saved);
    expect(pio.read(0xcf8, 4)).toBe(saved);
    // The byte write is ignored by the chipset, and counted.
    expect(bridge.ignoredAccesses).toBe(1);
  });

  it("passes pci_sanity_check: 00:00.0 is an Intel host bridge (class 0x0600 read as a word at 0x0a)", () => {
    const { read } = setup();
    expect(read(0, 0, 0, PciConfig.VENDOR_ID, 2)).toBe(0x8086);
    expect(read(0, 0, 0, PciConfig.DEVICE_ID, 2)).toBe(0x29c0);
    expect(read(0, 0, 0, 0x0a, 2)).toBe(0x0600);
    expect(read(0, 0, 0, 0x08, 4) >>> 8).toBe(0x060000);
    expect(read(0, 0, 0, PciConfig.HEADER_TYPE, 1)).toBe(0);
  });

  it('keeps only the enable, bus, device, function and register bits of CONFIG_ADDRESS', () => {
    const { pio } = setup();
    pio.write(0xcf8, 4, 0xffff_ffff);
    expect(pio.read(0xcf8, 4)).toBe(0x80ff_ffff);
    pio.write(0xcf8, 4, 0x7f00_0003);
    expect(pio.read(0xcf8, 4)).toBe(3);
  });

  it('ORs CONFIG_ADDRESS bits 1:0 into the register, as QEMU does (kvm-unit-tests reads the device ID so)', () => {
    const { pio } = setup();
    pio.write(0xcf8, 4, 0x8000_0000 | PciConfig.DEVICE_ID);
    expect(pio.read(0xcfc, 2)).toBe(0x29c0);
    pio.write(0xcf8, 4, 0x8000_0000 | 0x0b);
    expect(pio.read(0xcfc, 1)).toBe(0x06);
  });

  it('with the enable bit clear, data reads all ones and writes go nowhere', () => {
    const { pio, bridge } = setup();
    const fn = new Recorder('fn');
    const { slot } = bridge.addFunction(fn);
    pio.write(0xcf8, 4, configAddress(0, slot, 0, 0) & ~ENABLE);
    expect(pio.read(0xcfc, 4)).toBe(0xffff_ffff);
    expect(pio.read(0xcfe, 2)).toBe(0xffff);
    expect(pio.read(0xcfd, 1)).toBe(0xff);
    pio.write(0xcfc, 4, 0x1234);
    expect(fn.log).toEqual([]);
  });

  it('decodes bus, device, function and register; the data port offset picks the byte in the dword', () => {
    const { pio, bridge } = setup();
    const fn = new Recorder('fn');
    expect(bridge.addFunction(fn)).toEqual({ slot: 1 });
    pio.write(0xcf8, 4, configAddress(0, 1, 0, 0x10));
    expect(pio.read(0xcfc, 4)).toBe(0xcafe_0010);
    expect(pio.read(0xcfd, 1)).toBe(0x11);
    expect(pio.read(0xcfe, 2)).toBe(0xbe12);
    expect(pio.read(0xcff, 1)).toBe(0x13);
    expect(pio.read(0xcfc, 2)).toBe(0xbe10);
    pio.write(0xcfe, 2, 0xabcd);
    pio.write(0xcff, 1, 0x5a);
    pio.write(0xcfc, 4, 0xdead_beef);
    expect(fn.log).toEqual(['r4@10', 'r1@11', 'r2@12', 'r1@13', 'r2@10', 'w2@12=abcd', 'w1@13=5a', 'w4@10=deadbeef']);
  });

  it('absent functions read all ones at every width: empty slots, functions 1-7, other buses', () => {
    const { read, write, bridge } = setup();
    const fn = new Recorder('fn');
    bridge.addFunction(fn);
    expect(read(0, 5, 0, 0, 4)).toBe(0xffff_ffff);
    expect(read(0, 31, 0, 0, 2)).toBe(0xffff);
    expect(read(0, 1, 1, 0, 4)).toBe(0xffff_ffff);
    expect(read(0, 1, 7, 0x3c, 1)).toBe(0xff);
    expect(read(1, 1, 0, 0, 4)).toBe(0xffff_ffff);
    expect(read(255, 0, 0, 0, 4)).toBe(0xffff_ffff);
    write(1, 1, 0, 0x04, 2, 0x0006);
    write(0, 1, 3, 0x04, 2, 0x0006);
    expect(fn.log).toEqual([]);
  });

  it('a Linux-style scan of bus 0 (vendor ID of every devfn) finds exactly the present functions', () => {
    const { read, bridge } = setup();
    bridge.addFunction(new Recorder('a'));
    bridge.addFunction(new Recorder('b'));
    const found: number[] = [];
    for (let devfn = 0; devfn < 256; devfn++) {
      if (read(0, devfn >> 3, devfn & 7, PciConfig.VENDOR_ID, 2) !== 0xffff) found.push(devfn);
    }
    expect(found).toEqual([0x00, 0x08, 0x10]);
  });

  it('an access that crosses the end of CONFIG_DATA is refused by the bus, not passed on', () => {
    const { pio, bridge } = setup();
    const fn = new Recorder('fn');
    bridge.addFunction(fn);
    pio.write(0xcf8, 4, configAddress(0, 1, 0, 0));
    expect(pio.read(0xcfd, 4)).toBe(0xffff_ffff);
    pio.write(0xcfe, 4, 0);
    expect(fn.log).toEqual([]);
    expect(pio.unclaimedReads + pio.unclaimedWrites).toBe(2);
  });

  it('byte and word accesses to CONFIG_ADDRESS are not CONFIG_ADDRESS: ignored, read all ones, counted', () => {
    const { pio, bridge } = setup();
    pio.write(0xcf8, 4, 0x8000_0810);
    pio.write(0xcf8, 2, 0);
    pio.write(0xcfa, 1, 0xff);
    expect(pio.read(0xcf8, 2)).toBe(0xffff);
    expect(pio.read(0xcf9, 1)).toBe(0xff);
    expect(pio.read(0xcf8, 4)).toBe(0x8000_0810);
    expect(bridge.ignoredAccesses).toBe(4);
  });

  it('hands out slots 1 to 31 and then refuses', () => {
    const bridge = new PciHostBridge();
    for (let slot = 1; slot < SLOT_COUNT; slot++) expect(bridge.addFunction(new Recorder(`f${slot}`)).slot).toBe(slot);
    expect(() => bridge.addFunction(new Recorder('one too many'))).toThrow(/no free slot/);
  });

  it('the host bridge has no BARs, no expansion ROM, and only the Command bits it implements', () => {
    const { read, write } = setup();
    for (let bar = 0; bar < 6; bar++) {
      write(0, 0, 0, PciConfig.BAR0 + 4 * bar, 4, 0xffff_ffff);
      expect(read(0, 0, 0, PciConfig.BAR0 + 4 * bar, 4)).toBe(0);
    }
    write(0, 0, 0, PciConfig.EXPANSION_ROM, 4, 0xffff_f800);
    expect(read(0, 0, 0, PciConfig.EXPANSION_ROM, 4)).toBe(0);
    write(0, 0, 0, PciConfig.VENDOR_ID, 4, 0);
    expect(read(0, 0, 0, PciConfig.VENDOR_ID, 2)).toBe(0x8086);
  });
});

describe('a type-0 configuration space', () => {
  function space() {
    return new PciConfigSpace({
      vendorId: 0x1af4, deviceId: 0x1042, revision: 1, classCode: 0x018000,
      subsystemVendorId: 0x1af4, subsystemId: 0x1042, interruptPin: 1, interruptLine: 11,
    });
  }

  it('lays out the identification registers little-endian', () => {
    const c = space();
    expect(c.read(0, 4)).toBe(0x1042_1af4);
    expect(c.read(PciConfig.REVISION_ID, 4)).toBe(0x0180_0001);
    expect(c.read(PciConfig.SUBSYSTEM_VENDOR_ID, 4)).toBe(0x1042_1af4);
    expect(c.read(PciConfig.INTERRUPT_LINE, 2)).toBe(0x010b);
  });

  it('sizes a memory BAR: all ones reads back ~(size-1) with the type bits (32-bit, non-prefetchable)', () => {
    const c = space();
    c.defineMemoryBar(0, 0x4000);
    c.setBarAddress(0, 0xd000_0000);
    const original = c.read(PciConfig.BAR0, 4);
    expect(original).toBe(0xd000_0000);
    c.write(PciConfig.BAR0, 4, 0xffff_ffff);
    const sized = c.read(PciConfig.BAR0, 4);
    expect(sized).toBe(0xffff_c000);
    expect(((~(sized & ~0xf) >>> 0) + 1)).toBe(0x4000);
    c.write(PciConfig.BAR0, 4, original);
    expect(c.barAddress(0)).toBe(0xd000_0000);
    // Unimplemented BARs are hardwired to 0.
    c.write(PciConfig.BAR0 + 4, 4, 0xffff_ffff);
    expect(c.read(PciConfig.BAR0 + 4, 4)).toBe(0);
  });

  it('a BAR takes byte writes too, and never an address below its size', () => {
    const c = space();
    c.defineMemoryBar(0, 0x4000);
    c.write(PciConfig.BAR0 + 3, 1, 0xe0);
    c.write(PciConfig.BAR0 + 1, 1, 0xff);
    expect(c.barAddress(0)).toBe(0xe000_c000);
  });

  it('changes only writable bits: Command, Cache Line Size, Interrupt Line; identification and Status are read-only', () => {
    const c = space();
    c.write(PciConfig.COMMAND, 4, 0xffff_ffff);
    expect(c.command).toBe(PciCommand.IO | PciCommand.MEMORY | PciCommand.BUS_MASTER | PciCommand.PARITY | PciCommand.SERR | PciCommand.INTX_DISABLE);
    expect(c.read(PciConfig.STATUS, 2)).toBe(0);
    c.write(PciConfig.VENDOR_ID, 4, 0);
    c.write(PciConfig.REVISION_ID, 4, 0);
    expect(c.read(0, 4)).toBe(0x1042_1af4);
    expect(c.read(PciConfig.REVISION_ID, 4)).toBe(0x0180_0001);
    c.write(PciConfig.CACHE_LINE_SIZE, 4, 0xffff_ffff);
    expect(c.read(PciConfig.CACHE_LINE_SIZE, 4)).toBe(0x0000_00ff);
    c.write(PciConfig.INTERRUPT_LINE, 4, 0xffff_ff05);
    expect(c.read(PciConfig.INTERRUPT_LINE, 4)).toBe(0x0000_0105);
  });

  it('chains capabilities from 0x40 on dword boundaries and sets Status.CAP_LIST', () => {
    const c = space();
    expect(c.read(PciConfig.STATUS, 2) & PciStatus.CAPABILITIES).toBe(0);
    const a = c.addCapability(0x09, new Uint8Array([16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]));
    const b = c.addCapability(0x09, new Uint8Array([5, 0xaa, 0xbb]));
    const d = c.addCapability(0x05, new Uint8Array(4));
    expect([a, b, d]).toEqual([CAPABILITY_START, 0x50, 0x58]);
    expect(c.read(PciConfig.STATUS, 2) & PciStatus.CAPABILITIES).toBe(PciStatus.CAPABILITIES);
    expect(c.read(PciConfig.CAPABILITIES, 1)).toBe(0x40);
    expect(c.read(0x40, 2)).toBe(0x5009);
    expect(c.read(0x50, 4)).toBe(0xaa05_5809);
    expect(c.read(0x58, 2)).toBe(0x0005);
    // Capabilities are read-only unless made writable.
    c.write(0x50, 4, 0);
    expect(c.read(0x50, 4)).toBe(0xaa05_5809);
  });

  it('refuses impossible BARs at setup', () => {
    const c = space();
    expect(() => c.defineMemoryBar(0, 0x3000)).toThrow(RangeError);
    expect(() => c.defineMemoryBar(6, 0x1000)).toThrow(RangeError);
    c.defineMemoryBar(0, 0x4000);
    expect(() => c.setBarAddress(0, 0xd000_1000)).toThrow(/aligned/);
    expect(() => c.setBarAddress(1, 0xd000_0000)).toThrow(/not implemented/);
  });
});
