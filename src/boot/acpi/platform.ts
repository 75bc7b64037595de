// What the ACPI tables describe: the machine's CPUs, interrupt controllers
// and power-management registers. `AcpiLayout` holds where tsvmm puts them;
// `acpiPlatform()` turns it into the description the tables are built from.
import { ACPI_RESET_VALUE, ACPI_SLEEP_PORT_COUNT, AcpiSleepRegister } from '../../devices/acpi-sleep.ts';
import { ACPI_GED_MMIO_SIZE } from '../../devices/acpi-ged.ts';
import { COM_PORTS } from '../../devices/serial16550.ts';
import { InputError } from '../../errors.ts';

/**
 * Where the ACPI tables and the ACPI devices sit in a tsvmm PC. None of it
 * collides with COM1 0x3f8-0x3ff, the PIT 0x40-0x43, port 0x61, the i8042
 * 0x60/0x64, CMOS 0x70-0x71, debug-exit 0x501-0x502, PCI 0xcf8-0xcff, the
 * virtio-mmio windows from 0xd1000000, the PCI BARs from 0xe0000000, the
 * IOAPIC or the local APIC.
 */
export const AcpiLayout = {
  /**
   * The tables, RSDP first: in the BIOS area 0xe0000-0xfffff, which the e820
   * map reserves and where Linux scans for "RSD PTR " (16-byte aligned) when
   * neither boot_params nor the PVH start_info gives the RSDP's address.
   */
  TABLES_ADDRESS: 0xe_0000,
  /** Room for them: 0xe0000-0xeffff (they need ~1 KiB), leaving 0xf0000-0xfffff to an MP table. */
  TABLES_MAX_SIZE: 0x1_0000,
  /**
   * The acpi-sleep device (control, status, reset: three byte ports). 0x600
   * is where QEMU's PIIX4 and ICH9 put their PM registers; it is free here.
   */
  SLEEP_PORT_BASE: 0x600,
  SLEEP_CONTROL_PORT: 0x600 + AcpiSleepRegister.CONTROL,
  SLEEP_STATUS_PORT: 0x600 + AcpiSleepRegister.STATUS,
  RESET_PORT: 0x600 + AcpiSleepRegister.RESET,
  SLEEP_PORT_COUNT: ACPI_SLEEP_PORT_COUNT,
  /** What the guest writes to RESET_PORT to reset the machine. */
  RESET_VALUE: ACPI_RESET_VALUE,
  /**
   * The Generic Event Device's status register: one page in the platform
   * device hole below the IOAPIC (QEMU's microvm puts its GED at the same address).
   */
  GED_MMIO_BASE: 0xfea0_0000,
  GED_MMIO_SIZE: ACPI_GED_MMIO_SIZE,
  /**
   * The GED's interrupt: the IOAPIC's last pin, above the 16 ISA lines (all
   * of which are the PC's or virtio's), so nothing else is wired to it.
   */
  GED_GSI: 23,
  /**
   * What the PCI host bridge forwards, when the machine has one: its one bus,
   * and the memory window its functions' BARs live in (from
   * machine/virtio-plan.ts PCI_BAR_BASE up to the GED's page).
   */
  PCI_BUS: 0,
  PCI_MEMORY_WINDOW_BASE: 0xe000_0000,
  PCI_MEMORY_WINDOW_END: 0xfe9f_ffff,
  /** The in-kernel IOAPIC (= machine/layout.ts IOAPIC_ADDRESS); KVM's has 24 pins and ID 0 after reset. */
  IOAPIC_ADDRESS: 0xfec0_0000,
  IOAPIC_ID: 0,
  IOAPIC_PINS: 24,
  /** The local APIC window (= machine/layout.ts LOCAL_APIC_ADDRESS). */
  LOCAL_APIC_ADDRESS: 0xfee0_0000,
} as const;

/** An ISA IRQ that reaches the IOAPIC on another pin or with other polarity/trigger (MADT type 2). */
export interface IsaInterruptOverride {
  irq: number;
  gsi: number;
  /** 'conforms' = the ISA default: edge, active high. */
  trigger: 'conforms' | 'edge' | 'level';
  polarity: 'conforms' | 'high' | 'low';
}

export interface AcpiPlatform {
  /** Number of vCPUs. */
  cpus: number;
  /** Local APIC ID of each vCPU in order, BSP first; default 0..cpus-1. */
  apicIds?: readonly number[];
  localApicAddress: number;
  ioapic: { id: number; address: number; gsiBase: number; pins: number };
  /**
   * Interrupt source overrides (MADT type 2). tsvmm keeps KVM's default GSI
   * routing, where ISA IRQ n is IOAPIC pin n, so it needs none; a machine
   * that routes IRQ 0 to pin 2 as QEMU does would list { irq: 0, gsi: 2 }.
   * (Each device's interrupt, with its trigger and polarity, is in the DSDT.)
   */
  isaInterruptOverrides: readonly IsaInterruptOverride[];
  sleepControlPort: number;
  sleepStatusPort: number;
  resetPort: number;
  resetValue: number;
  gedMmioBase: number;
  gedGsi: number;
  /** The machine has an i8042 at 0x60/0x64 (FADT IAPC_BOOT_ARCH 8042 flag). */
  i8042: boolean;
  /** The machine has a CMOS RTC at 0x70 (otherwise the FADT says CMOS RTC not present). */
  cmosRtc: boolean;
  /**
   * The PCI host bridge (config space at 0xcf8), when the machine has one. A
   * kernel with ACPI looks for PCI buses only where the DSDT says.
   */
  pci: { bus: number; memoryWindow: { base: number; end: number }; interrupts: readonly AcpiPciInterrupt[] } | null;
  /**
   * The ISA UARTs and the virtio-mmio devices, described in the DSDT: with
   * no legacy PIC Linux maps an ISA IRQ only for a device ACPI describes
   * (the IRQ numbers of `virtio_mmio.device=` or of the 8250 driver's
   * built-in COM1 would find no interrupt behind them).
   */
  uarts: readonly { port: number; irq: number }[];
  virtioMmio: readonly AcpiVirtioMmio[];
}

/** The interrupt (GSI) of the INTA pin of the function in `slot` on the bus (a _PRT entry). */
export interface AcpiPciInterrupt {
  slot: number;
  gsi: number;
}

/** A virtio-mmio device: its register window and its interrupt. */
export interface AcpiVirtioMmio {
  address: number;
  size: number;
  irq: number;
}

/** A tsvmm PC with `cpus` vCPUs, as AcpiLayout places its devices; `options.pci`: it has a PCI host bridge. */
export function acpiPlatform(
  cpus: number,
  apicIds?: readonly number[],
  devices: { pci?: { interrupts: readonly AcpiPciInterrupt[] }; virtioMmio?: readonly AcpiVirtioMmio[] } = {},
): AcpiPlatform {
  return {
    cpus,
    ...(apicIds ? { apicIds } : {}),
    localApicAddress: AcpiLayout.LOCAL_APIC_ADDRESS,
    ioapic: { id: AcpiLayout.IOAPIC_ID, address: AcpiLayout.IOAPIC_ADDRESS, gsiBase: 0, pins: AcpiLayout.IOAPIC_PINS },
    isaInterruptOverrides: [],
    sleepControlPort: AcpiLayout.SLEEP_CONTROL_PORT,
    sleepStatusPort: AcpiLayout.SLEEP_STATUS_PORT,
    resetPort: AcpiLayout.RESET_PORT,
    resetValue: AcpiLayout.RESET_VALUE,
    gedMmioBase: AcpiLayout.GED_MMIO_BASE,
    gedGsi: AcpiLayout.GED_GSI,
    i8042: true,
    cmosRtc: true,
    pci: devices.pci
      ? {
        bus: AcpiLayout.PCI_BUS,
        memoryWindow: { base: AcpiLayout.PCI_MEMORY_WINDOW_BASE, end: AcpiLayout.PCI_MEMORY_WINDOW_END },
        interrupts: devices.pci.interrupts,
      }
      : null,
    uarts: [{ port: COM_PORTS[0].base, irq: COM_PORTS[0].irq }],
    virtioMmio: devices.virtioMmio ?? [],
  };
}

/** The largest xAPIC ID: 0xff is the broadcast address (x2APIC IDs would need MADT type 9 entries). */
const MAX_XAPIC_ID = 0xfe;

/** The APIC IDs of the platform's vCPUs, checked: one per vCPU, distinct, xAPIC-sized. */
export function checkedApicIds(platform: AcpiPlatform): readonly number[] {
  const { cpus } = platform;
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > MAX_XAPIC_ID + 1) {
    throw new InputError(`ACPI tables for ${cpus} vCPUs: the MADT describes 1 to ${MAX_XAPIC_ID + 1} (xAPIC IDs)`);
  }
  const ids = platform.apicIds ?? Array.from({ length: cpus }, (_, i) => i);
  if (ids.length !== cpus) throw new InputError(`ACPI tables: ${ids.length} APIC IDs for ${cpus} vCPUs`);
  const seen = new Set<number>();
  for (const id of ids) {
    if (!Number.isInteger(id) || id < 0 || id > MAX_XAPIC_ID) throw new InputError(`ACPI tables: APIC ID ${id} is outside 0..${MAX_XAPIC_ID}`);
    if (seen.has(id)) throw new InputError(`ACPI tables: APIC ID ${id} given to two vCPUs`);
    seen.add(id);
  }
  return ids;
}

/** Checks what the tables cannot express; throws a InputError naming the field. */
export function checkPlatform(platform: AcpiPlatform): void {
  checkedApicIds(platform);
  const port = (what: string, value: number) => {
    if (!Number.isInteger(value) || value < 0 || value > 0xffff) throw new InputError(`ACPI tables: ${what} 0x${value.toString(16)} is not an I/O port`);
  };
  port('sleep control port', platform.sleepControlPort);
  port('sleep status port', platform.sleepStatusPort);
  port('reset port', platform.resetPort);
  if (!Number.isInteger(platform.resetValue) || platform.resetValue < 0 || platform.resetValue > 0xff) {
    throw new InputError(`ACPI tables: reset value ${platform.resetValue} is not a byte`);
  }
  const { ioapic } = platform;
  const gsiEnd = ioapic.gsiBase + ioapic.pins;
  if (!Number.isInteger(platform.gedGsi) || platform.gedGsi < ioapic.gsiBase || platform.gedGsi >= gsiEnd) {
    throw new InputError(`ACPI tables: GED interrupt ${platform.gedGsi} is not an IOAPIC input (GSI ${ioapic.gsiBase}-${gsiEnd - 1})`);
  }
  for (const o of platform.isaInterruptOverrides) {
    if (!Number.isInteger(o.irq) || o.irq < 0 || o.irq > 15) throw new InputError(`ACPI tables: interrupt override for IRQ ${o.irq}: ISA IRQs are 0-15`);
    if (!Number.isInteger(o.gsi) || o.gsi < ioapic.gsiBase || o.gsi >= gsiEnd) throw new InputError(`ACPI tables: interrupt override to GSI ${o.gsi}: not an IOAPIC input`);
  }
  const address32 = (what: string, value: number) => {
    if (!Number.isInteger(value) || value < 0 || value > 0xffff_ffff) throw new InputError(`ACPI tables: ${what} 0x${value.toString(16)} is not a 32-bit address`);
  };
  address32('GED register', platform.gedMmioBase);
  address32('IOAPIC', ioapic.address);
  address32('local APIC', platform.localApicAddress);
}
