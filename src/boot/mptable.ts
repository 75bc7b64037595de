// The Intel MultiProcessor Specification 1.4 table: how a guest without ACPI
// (or booted with acpi=off) learns its CPUs, its IOAPIC and how the ISA and
// PCI interrupts reach it. A floating pointer ("_MP_") in the first KiB of the
// EBDA, where Linux scans for it, names the configuration table ("PCMP") that
// follows it. Linux prefers the ACPI MADT when it finds one; this table says
// the same about the machine.
import type { GuestMemory } from '../memory/index.ts';
import { InputError } from '../errors.ts';
import type { AcpiPlatform } from './acpi/index.ts';
import { AcpiLayout } from './acpi/index.ts';
import { BootLayout } from '../layout.ts';

export const MpTableLayout = {
  /** The floating pointer: 16-byte aligned in the EBDA's first KiB (MP spec §4; Linux's smp_scan_config). */
  FLOATING_POINTER: BootLayout.MP_TABLE,
  /** The configuration table follows it, in the hole e820 reserves up to where the ACPI tables start. */
  CONFIG_TABLE: BootLayout.MP_TABLE + 16,
  END: AcpiLayout.TABLES_ADDRESS,
} as const;

/**
 * APIC IDs are 8 bits here and 0xFF is the broadcast ID; the IOAPIC takes the
 * ID after the last CPU's, so 254 CPUs is the most this table can describe.
 */
export const MP_TABLE_MAX_CPUS = 254;

/** How ISA and PCI interrupts reach the IOAPIC: the same description the MADT and DSDT are built from. */
export type MpInterruptRouting = Pick<AcpiPlatform, 'isaInterruptOverrides' | 'pci'>;

const NO_ROUTING_CHANGES: MpInterruptRouting = { isaInterruptOverrides: [], pci: null };

const SPEC_REVISION_1_4 = 4;
const FLOATING_POINTER_SIZE = 16;
const CONFIG_HEADER_SIZE = 44;
const PROCESSOR_ENTRY_SIZE = 20;
const ENTRY_SIZE = 8;
const ISA_IRQS = 16;

const EntryType = { PROCESSOR: 0, BUS: 1, IOAPIC: 2, IO_INTERRUPT: 3, LOCAL_INTERRUPT: 4 } as const;
const InterruptType = { INT: 0, NMI: 1, SMI: 2, EXTINT: 3 } as const;
const ProcessorFlags = { ENABLED: 1, BOOTSTRAP: 2 } as const;
const IOAPIC_ENABLED = 1;
/** Version registers of KVM's in-kernel local APIC and IOAPIC. */
const LOCAL_APIC_VERSION = 0x14;
const IOAPIC_VERSION = 0x11;
/**
 * A processor entry's CPU signature and feature flags are for CPUs without
 * CPUID; Linux reads the real ones from CPUID. tsvmm states a family-6 CPU
 * with an FPU and a local APIC (CPUID.1:EDX bits 0 and 9), as Firecracker does.
 */
const CPU_SIGNATURE = 6 << 8;
const CPU_FEATURES = (1 << 0) | (1 << 9);
/** All local APICs, as the destination of a local interrupt entry. */
const ALL_LOCAL_APICS = 0xff;

/** MPS INTI flags, the encoding the MADT shares (polarity bits 1:0, trigger bits 3:2). */
const POLARITY = { conforms: 0, high: 1, low: 3 } as const;
const TRIGGER = { conforms: 0, edge: 1, level: 3 } as const;

export interface MpTable {
  /** Where the floating pointer went. */
  floatingPointer: number;
  /** Where the configuration table went, and its length. */
  configTable: number;
  configLength: number;
  /** The bytes from the floating pointer to the configuration table's end. */
  image: Uint8Array;
}

/** Sets the byte at `at` so that the bytes [start, end) sum to 0 modulo 256. */
function checksum(bytes: Uint8Array, start: number, end: number, at: number): void {
  let sum = 0;
  for (let i = start; i < end; i++) sum += bytes[i]!;
  bytes[at] = (0x100 - (sum & 0xff)) & 0xff;
}

/** The MP table for `cpus` CPUs (APIC IDs 0..cpus-1, the BSP first), IOAPIC ID `cpus`. */
export function buildMpTable(cpus: number, routing: MpInterruptRouting = NO_ROUTING_CHANGES): MpTable {
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > MP_TABLE_MAX_CPUS) {
    throw new InputError(`MP table: ${cpus} CPUs; it can describe 1 to ${MP_TABLE_MAX_CPUS}`);
  }
  const ioapicId = cpus;
  const pci = routing.pci;
  const pin = (what: string, gsi: number) => {
    if (!Number.isInteger(gsi) || gsi < 0 || gsi >= AcpiLayout.IOAPIC_PINS) throw new InputError(`MP table: ${what} goes to GSI ${gsi}, which is not an IOAPIC pin`);
    return gsi;
  };
  for (const o of routing.isaInterruptOverrides) {
    if (!Number.isInteger(o.irq) || o.irq < 0 || o.irq >= ISA_IRQS) throw new InputError(`MP table: interrupt override for IRQ ${o.irq}: ISA IRQs are 0-15`);
    pin(`ISA IRQ ${o.irq}`, o.gsi);
  }
  for (const i of pci?.interrupts ?? []) {
    if (!Number.isInteger(i.slot) || i.slot < 0 || i.slot > 31) throw new InputError(`MP table: PCI slot ${i.slot} is not 0-31`);
    pin(`PCI slot ${i.slot}`, i.gsi);
  }
  // Buses are numbered as the guest will find them: PCI (when there is one) first, ISA after it.
  const isaBus = pci ? pci.bus + 1 : 0;

  const ioInterrupts: { flags: number; bus: number; busIrq: number; pin: number }[] = [];
  const overridden = new Map(routing.isaInterruptOverrides.map((o) => [o.irq, o]));
  const pinsTakenByOverrides = new Set(routing.isaInterruptOverrides.map((o) => o.gsi));
  for (let irq = 0; irq < ISA_IRQS; irq++) {
    const o = overridden.get(irq);
    if (o) {
      ioInterrupts.push({ flags: POLARITY[o.polarity] | (TRIGGER[o.trigger] << 2), bus: isaBus, busIrq: irq, pin: o.gsi });
    } else if (!pinsTakenByOverrides.has(irq)) {
      // ISA IRQ n on IOAPIC pin n, edge and active high as the ISA bus defines.
      ioInterrupts.push({ flags: 0, bus: isaBus, busIrq: irq, pin: irq });
    }
  }
  // A PCI source IRQ is (device << 2) | INTx; INTA is 0. Flags "conform to the bus": level, active low.
  for (const i of pci?.interrupts ?? []) ioInterrupts.push({ flags: 0, bus: pci!.bus, busIrq: i.slot << 2, pin: i.gsi });

  const buses = pci ? [{ id: pci.bus, type: 'PCI   ' }, { id: isaBus, type: 'ISA   ' }] : [{ id: isaBus, type: 'ISA   ' }];
  const entryCount = cpus + buses.length + 1 + ioInterrupts.length + 2;
  const configLength = CONFIG_HEADER_SIZE + cpus * PROCESSOR_ENTRY_SIZE + (entryCount - cpus) * ENTRY_SIZE;
  const configTable = MpTableLayout.CONFIG_TABLE;
  if (configTable + configLength > MpTableLayout.END) {
    throw new InputError(`MP table: ${configLength} bytes do not fit below 0x${MpTableLayout.END.toString(16)}`);
  }

  const image = new Uint8Array(FLOATING_POINTER_SIZE + configLength);
  const view = new DataView(image.buffer);
  const ascii = (at: number, text: string) => image.set(Buffer.from(text, 'latin1'), at);

  // Floating pointer structure (MP spec §4.1). Feature bytes 0: a configuration
  // table is present, and no IMCR (the PIC is wired in virtual-wire mode).
  ascii(0, '_MP_');
  view.setUint32(4, configTable, true);
  image[8] = FLOATING_POINTER_SIZE / 16;
  image[9] = SPEC_REVISION_1_4;
  checksum(image, 0, FLOATING_POINTER_SIZE, 10);

  // Configuration table header (§4.2).
  const c = FLOATING_POINTER_SIZE;
  ascii(c, 'PCMP');
  view.setUint16(c + 4, configLength, true);
  image[c + 6] = SPEC_REVISION_1_4;
  ascii(c + 8, 'TSVMM   ');
  ascii(c + 16, 'TSVMM PC    ');
  view.setUint16(c + 34, entryCount, true);
  view.setUint32(c + 36, AcpiLayout.LOCAL_APIC_ADDRESS, true);

  // Entries, in the ascending order of their types that the spec requires (§4.3).
  let at = c + CONFIG_HEADER_SIZE;
  for (let apicId = 0; apicId < cpus; apicId++) {
    image[at] = EntryType.PROCESSOR;
    image[at + 1] = apicId;
    image[at + 2] = LOCAL_APIC_VERSION;
    image[at + 3] = ProcessorFlags.ENABLED | (apicId === 0 ? ProcessorFlags.BOOTSTRAP : 0);
    view.setUint32(at + 4, CPU_SIGNATURE, true);
    view.setUint32(at + 8, CPU_FEATURES, true);
    at += PROCESSOR_ENTRY_SIZE;
  }
  for (const bus of buses) {
    image[at] = EntryType.BUS;
    image[at + 1] = bus.id;
    ascii(at + 2, bus.type);
    at += ENTRY_SIZE;
  }
  image[at] = EntryType.IOAPIC;
  image[at + 1] = ioapicId;
  image[at + 2] = IOAPIC_VERSION;
  image[at + 3] = IOAPIC_ENABLED;
  view.setUint32(at + 4, AcpiLayout.IOAPIC_ADDRESS, true);
  at += ENTRY_SIZE;
  for (const i of ioInterrupts) {
    image[at] = EntryType.IO_INTERRUPT;
    image[at + 1] = InterruptType.INT;
    view.setUint16(at + 2, i.flags, true);
    image[at + 4] = i.bus;
    image[at + 5] = i.busIrq;
    image[at + 6] = ioapicId;
    image[at + 7] = i.pin;
    at += ENTRY_SIZE;
  }
  // The 8259's output reaches every local APIC's LINT0 (ExtINT), NMI their LINT1.
  for (const [type, lint] of [[InterruptType.EXTINT, 0], [InterruptType.NMI, 1]] as const) {
    image[at] = EntryType.LOCAL_INTERRUPT;
    image[at + 1] = type;
    image[at + 4] = isaBus;
    image[at + 6] = ALL_LOCAL_APICS;
    image[at + 7] = lint;
    at += ENTRY_SIZE;
  }
  checksum(image, c, c + configLength, c + 7);

  return { floatingPointer: MpTableLayout.FLOATING_POINTER, configTable, configLength, image };
}

/** Writes the MP table for `cpus` CPUs into the EBDA; returns where it went. */
export function writeMpTable(memory: GuestMemory, cpus: number, routing: MpInterruptRouting = NO_ROUTING_CHANGES): MpTable {
  const table = buildMpTable(cpus, routing);
  memory.write(table.floatingPointer, table.image);
  return table;
}
