// What the ACPI tables describe: the machine's CPUs, interrupt controllers
// and power-management registers. `AcpiLayout` names where they are;
// `acpiPlatform()` turns it into the description the tables are built from.
import { ACPI_RESET_VALUE, ACPI_SLEEP_PORT_COUNT, AcpiSleepRegister } from '../../devices/acpi-sleep.ts';
import { ACPI_GED_MMIO_SIZE } from '../../devices/acpi-ged.ts';
import { InputError } from '../../errors.ts';
import { BootLayout, IrqLayout, MmioLayout, PortLayout } from '../../layout.ts';

/**
 * The ACPI tables and the ACPI hardware in the terms the FADT and MADT use,
 * taken from the machine's map (src/layout.ts).
 */
export const AcpiLayout = {
  TABLES_ADDRESS: BootLayout.ACPI_TABLES,
  TABLES_MAX_SIZE: BootLayout.ACPI_TABLES_MAX_SIZE,
  /**
   * The FACS, right after the RSDP on its 64-byte boundary (buildAcpiTables
   * puts it there): where the guest leaves its waking vector for the S3 resume.
   */
  FACS_ADDRESS: BootLayout.ACPI_TABLES + 0x40,
  /** The acpi-sleep device: control, status and reset, one byte port each. */
  SLEEP_PORT_BASE: PortLayout.ACPI_SLEEP,
  SLEEP_CONTROL_PORT: PortLayout.ACPI_SLEEP + AcpiSleepRegister.CONTROL,
  SLEEP_STATUS_PORT: PortLayout.ACPI_SLEEP + AcpiSleepRegister.STATUS,
  RESET_PORT: PortLayout.ACPI_SLEEP + AcpiSleepRegister.RESET,
  SLEEP_PORT_COUNT: ACPI_SLEEP_PORT_COUNT,
  /** What the guest writes to RESET_PORT to reset the machine. */
  RESET_VALUE: ACPI_RESET_VALUE,
  GED_MMIO_BASE: MmioLayout.ACPI_GED,
  GED_MMIO_SIZE: ACPI_GED_MMIO_SIZE,
  GED_GSI: IrqLayout.ACPI_GED,
  /** The PCI host bridge, when the machine has one: its one bus and the window its BARs live in. */
  PCI_BUS: 0,
  PCI_MEMORY_WINDOW_BASE: MmioLayout.PCI_BAR_WINDOW_BASE,
  PCI_MEMORY_WINDOW_END: MmioLayout.PCI_BAR_WINDOW_END,
  IOAPIC_ADDRESS: MmioLayout.IOAPIC,
  /** KVM's IOAPIC has ID 0 after reset. */
  IOAPIC_ID: 0,
  IOAPIC_PINS: IrqLayout.IOAPIC_PINS,
  LOCAL_APIC_ADDRESS: MmioLayout.LOCAL_APIC,
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
  /** The ACPI PM timer's port (FADT PM_TMR_BLK). */
  pmTimerPort: number;
  /** The PM1a event and control blocks (FADT PM1a_EVT_BLK, PM1a_CNT_BLK). */
  pm1aEventPort: number;
  pm1aControlPort: number;
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
  /** QEMU's fw_cfg (QEMU0002): its ports, selector and data through DMA; null without one. */
  fwCfg: { port: number; count: number } | null;
  /** QEMU's pvpanic (QEMU0001): its port; null without one. */
  pvpanic: { port: number } | null;
  virtioMmio: readonly AcpiVirtioMmio[];
  /** The VT-d remapping unit (a DMAR table), when the machine has one. */
  iommu: { address: number; hostAddressWidth: number; interruptRemapping: boolean } | null;
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
  devices: {
    pci?: { interrupts: readonly AcpiPciInterrupt[] }; virtioMmio?: readonly AcpiVirtioMmio[]; pvpanic?: boolean;
    iommu?: AcpiPlatform['iommu'];
  } = {},
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
    pmTimerPort: PortLayout.ACPI_PM_TIMER,
    pm1aEventPort: PortLayout.ACPI_PM1A_EVENT,
    pm1aControlPort: PortLayout.ACPI_PM1A_CONTROL,
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
    uarts: [{ port: PortLayout.COM1, irq: IrqLayout.COM1_COM3 }],
    fwCfg: { port: PortLayout.FW_CFG, count: PortLayout.FW_CFG_DMA + PortLayout.FW_CFG_DMA_COUNT - PortLayout.FW_CFG },
    pvpanic: devices.pvpanic ? { port: PortLayout.PVPANIC } : null,
    virtioMmio: devices.virtioMmio ?? [],
    iommu: devices.iommu ?? null,
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
  port('PM1a event block', platform.pm1aEventPort);
  port('PM1a control block', platform.pm1aControlPort);
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
