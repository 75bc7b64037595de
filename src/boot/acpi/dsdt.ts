// The DSDT (ACPI 6.5 §5.2.11.1): the AML that tells the guest how to power
// off and where the power button is. In ASL it reads:
//
//   Name (_S0_, Package (4) { 0, 0, 0, 0 })     // SLP_TYP values of S0 (working)
//   Name (_S5_, Package (4) { 5, 5, 0, 0 })     // ... and of S5 (soft off)
//   Scope (_SB) {
//     Device (PWRB) { Name (_HID, EisaId ("PNP0C0C")) Name (_UID, Zero) }
//     Device (GED0) {
//       Name (_HID, "ACPI0013")  Name (_UID, Zero)
//       Name (_CRS, ResourceTemplate () { Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { 23 } })
//       OperationRegion (EREG, SystemMemory, 0xFEA00000, 4)
//       Field (EREG, DWordAcc, NoLock, WriteAsZeros) { ESTS, 32 }
//       Method (_EVT, 1, Serialized) {
//         Local0 = ESTS                              // reading clears the events
//         If (Local0 & 1) { Notify (\_SB.PWRB, 0x80) } // power button pressed
//       }
//     }
//     Device (PCI0) {                               // only when the machine has PCI
//       Name (_HID, EisaId ("PNP0A03"))  Name (_UID, Zero)  Name (_SEG, Zero)  Name (_BBN, Zero)
//       Name (_CRS, ResourceTemplate () {
//         WordBusNumber (...0, 0...)  IO (Decode16, 0xCF8, 0xCF8, 1, 8)
//         WordIO (...0x0000-0x0CF7...)  WordIO (...0x0D00-0xFFFF...)
//         DWordMemory (...0xE0000000-0xFE9FFFFF...) })   // where BARs go
//       Name (_PRT, Package () { Package () { 0x0001FFFF, 0, Zero, gsi }, ... })  // INTA of each slot
//     }
//     Device (COM1) { Name (_HID, EisaId ("PNP0501"))  Name (_UID, One)
//       Name (_CRS, ResourceTemplate () { IO (Decode16, 0x3F8, 0x3F8, 1, 8)  Interrupt (...) { 4 } }) }
//     Device (VR00) { Name (_HID, "LNRO0005")  Name (_UID, Zero)   // one per virtio-mmio device
//       Name (_CRS, ResourceTemplate () { Memory32Fixed (ReadWrite, base, 0x200)  Interrupt (...) { irq } }) }
//     Device (FWCF) { Name (_HID, "QEMU0002")  Name (_STA, 0x0B)       // QEMU's fw_cfg
//       Name (_CRS, ResourceTemplate () { IO (Decode16, 0x510, 0x510, 1, 12) }) }
//     Device (PEVT) { Name (_HID, "QEMU0001")  Name (_STA, 0x0F)       // QEMU's pvpanic, with --device pvpanic
//       Name (_CRS, ResourceTemplate () { IO (Decode16, 0x505, 0x505, 1, 1) }) }
//     Device (PMRS) {                               // motherboard resources:
//       Name (_HID, EisaId ("PNP0C02"))  Name (_UID, One)  // keeps the OS off them
//       Name (_CRS, ResourceTemplate () { IO (...) x3, Memory32Fixed (ReadWrite, 0xFEA00000, 4) })
//     }
//   }
//
// The GED's _CRS may hold interrupts only (Linux's evged rejects any other
// resource), which is why its register window is claimed by PMRS instead.
import { ACPI_GED_MMIO_SIZE, GedEvent } from '../../devices/acpi-ged.ts';
import { SleepType } from '../../devices/acpi-sleep.ts';
import { PVPANIC_PORT_COUNT } from '../../devices/pvpanic.ts';
import { and, device, eisaId, field, FieldAccess, FieldUpdate, ifThen, integer, local, method, name, notify, operationRegion, path, pkg, RegionSpace, scope, store, string, type Aml } from './aml.ts';
import type { AcpiPlatform, AcpiVirtioMmio } from './platform.ts';
import { busNumbers, interrupt, ioPorts, ioWindow, memory32Fixed, memoryWindow, resourceTemplate } from './resources.ts';
import { newTable, SDT_HEADER_SIZE, sealTable } from './sdt.ts';
import { PortLayout } from '../../layout.ts';

/** Notify value 0x80 on a power button device: "button pressed" (§4.8.3.1.1.2 / table 5.166). */
const NOTIFY_BUTTON_PRESSED = 0x80;

/** \_Sx_ (§7.4.2): SLP_TYPa, SLP_TYPb, two reserved. Hardware-reduced ACPI uses only SLP_TYPa. */
function sleepState(stateName: string, sleepType: number): number[] {
  return name(stateName, pkg([integer(sleepType), integer(sleepType), integer(0), integer(0)]));
}

function powerButton(): number[] {
  return device('PWRB', [name('_HID', eisaId('PNP0C0C')), name('_UID', integer(0))]);
}

function genericEventDevice(platform: AcpiPlatform): number[] {
  const status = 'ESTS';
  return device('GED0', [
    name('_HID', string('ACPI0013')),
    name('_UID', integer(0)),
    name('_CRS', resourceTemplate([interrupt(platform.gedGsi, { edge: true, activeLow: false, shared: false })])),
    operationRegion('EREG', RegionSpace.SYSTEM_MEMORY, platform.gedMmioBase, ACPI_GED_MMIO_SIZE),
    field('EREG', FieldAccess.DWORD, false, FieldUpdate.WRITE_AS_ZEROS, [{ name: status, bits: 32 }]),
    method('_EVT', 1, true, [
      store(path(status), local(0)),
      ifThen(and(local(0), integer(GedEvent.POWER_BUTTON)), [
        notify(path('\\_SB.PWRB'), integer(NOTIFY_BUTTON_PRESSED)),
      ]),
    ]),
  ]);
}

/** The PCI configuration ports (mechanism #1): address at 0xcf8, data at 0xcfc. */
const PCI_CONFIG_PORT = PortLayout.PCI_CONFIG;
const PCI_CONFIG_PORT_COUNT = PortLayout.PCI_CONFIG_COUNT;

/** _PRT (§6.2.13): INTA of a slot's function 0 ("any function": address 0xSSSSFFFF) on a GSI, no link device. */
const PRT_ANY_FUNCTION = 0xffff;
const PCI_PIN_INTA = 0;

/**
 * The PCI host bridge: config space through 0xcf8, one bus, the windows it
 * forwards (every I/O port but the config ports, and the BAR window), and
 * the routing table: tsvmm's functions interrupt through INTx, each slot on
 * its own GSI (Linux programs those level-triggered, active low, as PCI's).
 */
function pciHostBridge(pci: NonNullable<AcpiPlatform['pci']>): number[] {
  return device('PCI0', [
    name('_HID', eisaId('PNP0A03')),
    name('_UID', integer(0)),
    name('_SEG', integer(0)),
    name('_BBN', integer(pci.bus)),
    name('_CRS', resourceTemplate([
      busNumbers(pci.bus, pci.bus),
      ioPorts(PCI_CONFIG_PORT, PCI_CONFIG_PORT, 1, PCI_CONFIG_PORT_COUNT),
      ioWindow(0x0000, PCI_CONFIG_PORT - 1),
      ioWindow(PCI_CONFIG_PORT + PCI_CONFIG_PORT_COUNT, 0xffff),
      memoryWindow(pci.memoryWindow.base, pci.memoryWindow.end),
    ])),
    name('_PRT', pkg(pci.interrupts.map(({ slot, gsi }) =>
      pkg([integer(slot * 0x1_0000 + PRT_ANY_FUNCTION), integer(PCI_PIN_INTA), integer(0), integer(gsi)])))),
  ]);
}

/** The ISA interrupts the machine's devices raise: edge, active high, one device each. */
const ISA_INTERRUPT = { edge: true, activeLow: false, shared: false } as const;
const UART_PORT_COUNT = 8;

function uart(index: number, port: number, irq: number): number[] {
  return device(`COM${index + 1}`, [
    name('_HID', eisaId('PNP0501')),
    name('_UID', integer(index + 1)),
    name('_CRS', resourceTemplate([ioPorts(port, port, 1, UART_PORT_COUNT), interrupt(irq, ISA_INTERRUPT)])),
  ]);
}

/** QEMU's fw_cfg ("QEMU0002", the ID Linux's qemu_fw_cfg driver matches), as QEMU describes it. */
function fwCfg(port: number, count: number): number[] {
  return device('FWCF', [
    name('_HID', string('QEMU0002')),
    // Present, decoding, not shown in the UI (QEMU's value).
    name('_STA', integer(0x0b)),
    name('_CRS', resourceTemplate([ioPorts(port, port, 1, count)])),
  ]);
}

/** QEMU's pvpanic ("QEMU0001", the ID Linux's pvpanic driver matches): one port, present and enabled. */
function pvpanic(port: number): number[] {
  return device('PEVT', [
    name('_HID', string('QEMU0001')),
    name('_STA', integer(0x0f)),
    name('_CRS', resourceTemplate([ioPorts(port, port, 1, PVPANIC_PORT_COUNT)])),
  ]);
}

/** A virtio-mmio device ("LNRO0005", the ID Linux's virtio_mmio driver matches). */
function virtioMmio(index: number, dev: AcpiVirtioMmio): number[] {
  return device(`VR${index.toString(16).toUpperCase().padStart(2, '0')}`, [
    name('_HID', string('LNRO0005')),
    name('_UID', integer(index)),
    name('_CRS', resourceTemplate([memory32Fixed(true, dev.address, dev.size), interrupt(dev.irq, ISA_INTERRUPT)])),
  ]);
}

function motherboardResources(platform: AcpiPlatform): number[] {
  const ports = [...new Set([platform.sleepControlPort, platform.sleepStatusPort, platform.resetPort])].sort((a, b) => a - b);
  return device('PMRS', [
    name('_HID', eisaId('PNP0C02')),
    name('_UID', integer(1)),
    name('_CRS', resourceTemplate([
      ...ports.map((port) => ioPorts(port, port, 1, 1)),
      memory32Fixed(true, platform.gedMmioBase, ACPI_GED_MMIO_SIZE),
    ])),
  ]);
}

/** The DSDT's AML body (without the table header). */
export function dsdtAml(platform: AcpiPlatform): Aml {
  return [
    ...sleepState('_S0_', SleepType.S0),
    ...sleepState('_S5_', SleepType.S5),
    ...scope('\\_SB', [
      powerButton(),
      genericEventDevice(platform),
      ...(platform.pci ? [pciHostBridge(platform.pci)] : []),
      ...platform.uarts.map((u, i) => uart(i, u.port, u.irq)),
      ...platform.virtioMmio.map((dev, i) => virtioMmio(i, dev)),
      ...(platform.fwCfg ? [fwCfg(platform.fwCfg.port, platform.fwCfg.count)] : []),
      ...(platform.pvpanic ? [pvpanic(platform.pvpanic.port)] : []),
      motherboardResources(platform),
    ]),
  ];
}

/** Revision 2: AML integers are 64 bits wide. */
export function buildDsdt(platform: AcpiPlatform): Uint8Array {
  const aml = dsdtAml(platform);
  const t = newTable('DSDT', SDT_HEADER_SIZE + aml.length, 2, 'TSVMDSDT');
  t.set(SDT_HEADER_SIZE, aml);
  return sealTable(t);
}
