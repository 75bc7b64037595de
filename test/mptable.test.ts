// The MP table read back the way a guest finds it: a signature scan of the
// EBDA's first KiB on 16-byte boundaries, both checksums, then the entries.
import { describe, expect, it } from 'vitest';
import { acpiPlatform } from '../src/boot/acpi/index.ts';
import { bootLinux } from '../src/boot/linux.ts';
import { E820 } from '../src/boot/memory-map.ts';
import { MP_TABLE_MAX_CPUS, writeMpTable } from '../src/boot/mptable.ts';
import { BootLayout, ramLayout } from '../src/layout.ts';
import { GuestMemory } from '../src/memory/index.ts';
import { fakeVmlinux, POWER_ON_STATE } from './helpers/fake-kernels.ts';

type Entry =
  | { type: 'processor'; apicId: number; version: number; enabled: boolean; bsp: boolean }
  | { type: 'bus'; id: number; name: string }
  | { type: 'ioapic'; id: number; version: number; enabled: boolean; address: number }
  | { type: 'io-interrupt'; kind: number; flags: number; bus: number; busIrq: number; ioapic: number; pin: number }
  | { type: 'local-interrupt'; kind: number; flags: number; bus: number; busIrq: number; lapic: number; lint: number };

const sum = (bytes: Uint8Array) => bytes.reduce((s, b) => (s + b) & 0xff, 0);
const text = (bytes: Uint8Array) => Buffer.from(bytes).toString('latin1');

/** What Linux's smp_scan_config and smp_read_mpc do, minus the side effects. */
function parseMpTable(memory: GuestMemory) {
  let pointer = -1;
  for (let at = BootLayout.EBDA_START; at < BootLayout.EBDA_START + 1024; at += 16) {
    if (text(memory.read(at, 4)) === '_MP_') { pointer = at; break; }
  }
  if (pointer < 0) throw new Error('no _MP_ in the EBDA');
  const fp = memory.read(pointer, 16);
  expect(sum(fp)).toBe(0);
  expect(fp[8]).toBe(1); // length in paragraphs
  expect(fp[9]).toBe(4); // MP spec 1.4
  expect(fp[11]).toBe(0); // a configuration table, not a default configuration
  const config = memory.readU32(pointer + 4);
  expect(text(memory.read(config, 4))).toBe('PCMP');
  const length = memory.readU16(config + 4);
  expect(sum(memory.read(config, length))).toBe(0);
  expect(memory.readU8(config + 6)).toBe(4);
  const count = memory.readU16(config + 34);
  const lapicAddress = memory.readU32(config + 36);
  const entries: Entry[] = [];
  let at = config + 44;
  for (let i = 0; i < count; i++) {
    const type = memory.readU8(at);
    const b = (n: number) => memory.readU8(at + n);
    switch (type) {
      case 0:
        entries.push({ type: 'processor', apicId: b(1), version: b(2), enabled: (b(3) & 1) !== 0, bsp: (b(3) & 2) !== 0 });
        at += 20;
        continue;
      case 1: entries.push({ type: 'bus', id: b(1), name: text(memory.read(at + 2, 6)) }); break;
      case 2: entries.push({ type: 'ioapic', id: b(1), version: b(2), enabled: (b(3) & 1) !== 0, address: memory.readU32(at + 4) }); break;
      case 3: entries.push({ type: 'io-interrupt', kind: b(1), flags: memory.readU16(at + 2), bus: b(4), busIrq: b(5), ioapic: b(6), pin: b(7) }); break;
      case 4: entries.push({ type: 'local-interrupt', kind: b(1), flags: memory.readU16(at + 2), bus: b(4), busIrq: b(5), lapic: b(6), lint: b(7) }); break;
      default: throw new Error(`entry type ${type}`);
    }
    at += 8;
  }
  expect(at).toBe(config + length);
  return { pointer, config, lapicAddress, entries };
}

const lowRam = () => GuestMemory.ofArrayBuffers([{ guestAddress: 0, size: 0x10_0000 }]);
const ofType = <T extends Entry['type']>(entries: Entry[], type: T) => entries.filter((e): e is Extract<Entry, { type: T }> => e.type === type);

describe('MP table', () => {
  it('is found in the EBDA and lists N processors, the BSP first, with KVM\'s LAPIC version', () => {
    const memory = lowRam();
    writeMpTable(memory, 4);
    const table = parseMpTable(memory);
    expect(table.pointer).toBe(0x9fc00);
    expect(table.lapicAddress).toBe(0xfee0_0000);
    expect(ofType(table.entries, 'processor')).toEqual([0, 1, 2, 3].map((id) => ({ type: 'processor', apicId: id, version: 0x14, enabled: true, bsp: id === 0 })));
    expect(table.entries.map((e) => e.type)).toEqual([...table.entries.map((e) => e.type)].sort((a, b) => order(a) - order(b)));
  });

  it('has the IOAPIC after the CPUs\' IDs, the 16 ISA IRQs on their own pins, ExtINT on LINT0 and NMI on LINT1', () => {
    const memory = lowRam();
    writeMpTable(memory, 2);
    const { entries } = parseMpTable(memory);
    expect(ofType(entries, 'bus')).toEqual([{ type: 'bus', id: 0, name: 'ISA   ' }]);
    expect(ofType(entries, 'ioapic')).toEqual([{ type: 'ioapic', id: 2, version: 0x11, enabled: true, address: 0xfec0_0000 }]);
    const io = ofType(entries, 'io-interrupt');
    expect(io.map((e) => [e.busIrq, e.pin])).toEqual(Array.from({ length: 16 }, (_, irq) => [irq, irq]));
    expect(io.every((e) => e.kind === 0 && e.flags === 0 && e.bus === 0 && e.ioapic === 2)).toBe(true);
    expect(ofType(entries, 'local-interrupt').map((e) => [e.kind, e.lapic, e.lint])).toEqual([[3, 0xff, 0], [1, 0xff, 1]]);
  });

  it('follows the interrupt routing it is given: an IRQ 0 override to pin 2 replaces IRQ 2, PCI slots are level-triggered INTA', () => {
    const memory = lowRam();
    writeMpTable(memory, 1, {
      isaInterruptOverrides: [{ irq: 0, gsi: 2, trigger: 'conforms', polarity: 'conforms' }, { irq: 9, gsi: 9, trigger: 'level', polarity: 'high' }],
      pci: { bus: 0, memoryWindow: { base: 0xe000_0000, end: 0xfe9f_ffff }, interrupts: [{ slot: 1, gsi: 16 }, { slot: 2, gsi: 17 }] },
    });
    const { entries } = parseMpTable(memory);
    expect(ofType(entries, 'bus')).toEqual([{ type: 'bus', id: 0, name: 'PCI   ' }, { type: 'bus', id: 1, name: 'ISA   ' }]);
    const io = ofType(entries, 'io-interrupt');
    const isa = io.filter((e) => e.bus === 1);
    expect(isa.map((e) => e.busIrq)).toEqual([0, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    expect(isa.find((e) => e.busIrq === 0)!.pin).toBe(2);
    expect(isa.find((e) => e.busIrq === 9)!.flags).toBe(0b1101); // level (3 << 2), active high (1)
    expect(io.filter((e) => e.bus === 0).map((e) => [e.busIrq, e.pin, e.flags])).toEqual([[1 << 2, 16, 0], [2 << 2, 17, 0]]);
    expect(ofType(entries, 'local-interrupt').every((e) => e.bus === 1)).toBe(true);
  });

  it(`describes up to ${MP_TABLE_MAX_CPUS} CPUs and refuses more, or a pin the IOAPIC does not have`, () => {
    const memory = lowRam();
    writeMpTable(memory, MP_TABLE_MAX_CPUS);
    const { entries } = parseMpTable(memory);
    expect(ofType(entries, 'processor')).toHaveLength(MP_TABLE_MAX_CPUS);
    expect(ofType(entries, 'ioapic')[0]!.id).toBe(254);
    expect(() => writeMpTable(memory, MP_TABLE_MAX_CPUS + 1)).toThrow(/1 to 254/);
    expect(() => writeMpTable(memory, 0)).toThrow(/1 to 254/);
    expect(() => writeMpTable(memory, 1, { isaInterruptOverrides: [{ irq: 0, gsi: 24, trigger: 'edge', polarity: 'high' }], pci: null }))
      .toThrow(/not an IOAPIC pin/);
  });
});

describe('bootLinux with cpus', () => {
  const boot = (request: { cpus?: number; pci?: boolean }) => {
    const ram = ramLayout(64 << 20);
    const memory = GuestMemory.ofArrayBuffers([ram[0]!]);
    const acpi = acpiPlatform(request.cpus ?? 1, undefined, request.pci ? { pci: { interrupts: [{ slot: 1, gsi: 16 }] } } : {});
    const { plan } = bootLinux(memory, { kernel: fakeVmlinux({ pvhEntry: 0x100000 }), kernelSource: 'vmlinux', cmdline: '', ram, acpi,
      ...(request.cpus === undefined ? {} : { cpus: request.cpus }) }, POWER_ON_STATE);
    return { memory, plan };
  };

  it('writes the MP table into e820-reserved memory, with the ACPI tables\' interrupt routing', () => {
    const { memory, plan } = boot({ cpus: 2, pci: true });
    const { pointer, config, entries } = parseMpTable(memory);
    expect(plan.mpTable).toEqual({ floatingPointer: pointer, configTable: config, configLength: memory.readU16(config + 4) });
    const reserved = plan.e820.find((e) => e.type === E820.RESERVED && e.address <= pointer && config + plan.mpTable!.configLength <= e.address + e.size);
    expect(reserved).toBeDefined();
    expect(ofType(entries, 'processor')).toHaveLength(2);
    expect(ofType(entries, 'io-interrupt').filter((e) => e.bus === 0).map((e) => [e.busIrq, e.pin])).toEqual([[4, 16]]);
  });

  it('writes none without cpus', () => {
    const { memory, plan } = boot({});
    expect(plan.mpTable).toBeUndefined();
    expect(() => parseMpTable(memory)).toThrow(/no _MP_/);
  });
});

function order(type: Entry['type']): number {
  return ['processor', 'bus', 'ioapic', 'io-interrupt', 'local-interrupt'].indexOf(type);
}
