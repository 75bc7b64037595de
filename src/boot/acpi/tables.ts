// The fixed-format ACPI tables (ACPI 6.5 §5.2): RSDP, XSDT, FADT, MADT. The
// DSDT, the one written in AML, is in dsdt.ts.
import { AccessSize, AddressSpace, checksum, ioPortByte, newTable, OEM_ID, SDT_HEADER_SIZE, sealTable, TableBytes, writeGenericAddress } from './sdt.ts';
import { checkedApicIds, type AcpiPlatform, type IsaInterruptOverride } from './platform.ts';

/** RSDP (§5.2.5.3), revision 2: 36 bytes, found by its signature. */
export const RSDP_SIZE = 36;
const RsdpField = {
  SIGNATURE: 0,
  CHECKSUM: 8, // over the first 20 bytes (the ACPI 1.0 structure)
  OEM_ID: 9,
  REVISION: 15,
  RSDT_ADDRESS: 16,
  LENGTH: 20,
  XSDT_ADDRESS: 24,
  EXTENDED_CHECKSUM: 32, // over all 36 bytes
} as const;
const RSDP_V1_SIZE = 20;

/** The RSDP of an ACPI 2.0+ machine: no RSDT, only the XSDT. */
export function buildRsdp(xsdtAddress: number): Uint8Array {
  const t = new TableBytes(RSDP_SIZE);
  t.ascii(RsdpField.SIGNATURE, 'RSD PTR ', 8);
  t.ascii(RsdpField.OEM_ID, OEM_ID, 6);
  t.u8(RsdpField.REVISION, 2);
  t.u32(RsdpField.RSDT_ADDRESS, 0);
  t.u32(RsdpField.LENGTH, RSDP_SIZE);
  t.u64(RsdpField.XSDT_ADDRESS, xsdtAddress);
  t.u8(RsdpField.CHECKSUM, checksum(t.bytes.subarray(0, RSDP_V1_SIZE)));
  t.u8(RsdpField.EXTENDED_CHECKSUM, checksum(t.bytes));
  return t.bytes;
}

/** XSDT (§5.2.8): the 64-bit addresses of every table but the DSDT (the FADT points at that). */
export function buildXsdt(tableAddresses: readonly number[]): Uint8Array {
  const t = newTable('XSDT', SDT_HEADER_SIZE + 8 * tableAddresses.length, 1, 'TSVMXSDT');
  tableAddresses.forEach((address, i) => t.u64(SDT_HEADER_SIZE + 8 * i, address));
  return sealTable(t);
}

/** FADT (§5.2.9, table 5.9): revision 6.5, 276 bytes. The offsets of the fields tsvmm sets. */
export const FADT_SIZE = 276;
export const FadtField = {
  FIRMWARE_CTRL: 36,
  DSDT: 40,
  PREFERRED_PM_PROFILE: 45,
  SCI_INT: 46,
  PM1A_EVT_BLK: 56,
  PM1A_CNT_BLK: 64,
  PM_TMR_BLK: 76,
  PM1_EVT_LEN: 88,
  PM1_CNT_LEN: 89,
  PM_TMR_LEN: 91,
  IAPC_BOOT_ARCH: 109,
  FLAGS: 112,
  RESET_REG: 116,
  RESET_VALUE: 128,
  MINOR_VERSION: 131,
  X_FIRMWARE_CTRL: 132,
  X_DSDT: 140,
  X_PM1A_EVT_BLK: 148,
  X_PM1A_CNT_BLK: 172,
  X_PM_TMR_BLK: 208,
  SLEEP_CONTROL_REG: 244,
  SLEEP_STATUS_REG: 256,
  HYPERVISOR_VENDOR_ID: 268,
} as const;

/** FADT Flags (table 5.10). */
export const FadtFlags = {
  /** The power button is a control-method device (ours: PNP0C0C), not fixed hardware. */
  PWR_BUTTON: 1 << 4,
  /** No fixed sleep button either. */
  SLP_BUTTON: 1 << 5,
  RESET_REG_SUP: 1 << 10,
  /** An OS uses no PM1/GPE blocks and no SCI: sleep and reset through the registers above. */
  HW_REDUCED_ACPI: 1 << 20,
} as const;

/** IA-PC Boot Architecture Flags (table 5.11). */
export const IapcBootArch = {
  LEGACY_DEVICES: 1 << 0,
  I8042: 1 << 1,
  VGA_NOT_PRESENT: 1 << 2,
  CMOS_RTC_NOT_PRESENT: 1 << 5,
} as const;

export function buildFadt(platform: AcpiPlatform, dsdtAddress: number, facsAddress: number): Uint8Array {
  const t = newTable('FACP', FADT_SIZE, 6, 'TSVMFACP');
  // The FACS through both pointers (kvm-unit-tests reads the 32-bit one), the
  // DSDT only through its 64-bit pointer, no SCI.
  t.u32(FadtField.FIRMWARE_CTRL, facsAddress);
  t.u64(FadtField.X_FIRMWARE_CTRL, facsAddress);
  t.u64(FadtField.X_DSDT, dsdtAddress);
  t.u16(FadtField.IAPC_BOOT_ARCH,
    IapcBootArch.LEGACY_DEVICES | IapcBootArch.VGA_NOT_PRESENT
    | (platform.i8042 ? IapcBootArch.I8042 : 0) | (platform.cmosRtc ? 0 : IapcBootArch.CMOS_RTC_NOT_PRESENT));
  t.u32(FadtField.FLAGS, FadtFlags.HW_REDUCED_ACPI | FadtFlags.RESET_REG_SUP | FadtFlags.PWR_BUTTON | FadtFlags.SLP_BUTTON);
  writeGenericAddress(t, FadtField.RESET_REG, ioPortByte(platform.resetPort));
  t.u8(FadtField.RESET_VALUE, platform.resetValue);
  t.u8(FadtField.MINOR_VERSION, 5);
  writeGenericAddress(t, FadtField.SLEEP_CONTROL_REG, ioPortByte(platform.sleepControlPort));
  writeGenericAddress(t, FadtField.SLEEP_STATUS_REG, ioPortByte(platform.sleepStatusPort));
  // The PM timer, 24 bits (no TMR_VAL_EXT), as QEMU's PC describes it.
  t.u32(FadtField.PM_TMR_BLK, platform.pmTimerPort);
  t.u8(FadtField.PM_TMR_LEN, 4);
  writeGenericAddress(t, FadtField.X_PM_TMR_BLK, { space: AddressSpace.SYSTEM_IO, bitWidth: 32, bitOffset: 0, accessSize: AccessSize.DWORD, address: platform.pmTimerPort });
  // The PM1a blocks, for software that sleeps through them directly (kvm-unit-tests' s3).
  // HW_REDUCED_ACPI tells an OS to ignore them (§5.2.9), so Linux keeps to the sleep registers.
  t.u32(FadtField.PM1A_EVT_BLK, platform.pm1aEventPort);
  t.u8(FadtField.PM1_EVT_LEN, 4);
  writeGenericAddress(t, FadtField.X_PM1A_EVT_BLK, { space: AddressSpace.SYSTEM_IO, bitWidth: 32, bitOffset: 0, accessSize: AccessSize.WORD, address: platform.pm1aEventPort });
  t.u32(FadtField.PM1A_CNT_BLK, platform.pm1aControlPort);
  t.u8(FadtField.PM1_CNT_LEN, 2);
  writeGenericAddress(t, FadtField.X_PM1A_CNT_BLK, { space: AddressSpace.SYSTEM_IO, bitWidth: 16, bitOffset: 0, accessSize: AccessSize.WORD, address: platform.pm1aControlPort });
  t.ascii(FadtField.HYPERVISOR_VENDOR_ID, 'TSVMM   ', 8);
  return sealTable(t);
}

/** FACS (§5.2.10): 64 bytes, 64-byte aligned, not in the XSDT (the FADT points at it). */
export const FACS_SIZE = 64;
export const FACS_ALIGNMENT = 64;
export const FacsField = {
  SIGNATURE: 0,
  LENGTH: 4,
  HARDWARE_SIGNATURE: 8,
  /** Real-mode address the firmware resumes at after S3 (CS:IP = vector >> 4 : vector & 0xf); the guest writes it. */
  FIRMWARE_WAKING_VECTOR: 12,
  GLOBAL_LOCK: 16,
  FLAGS: 20,
  /** A 32- or 64-bit protected-mode waking vector; tsvmm resumes only at the real-mode one. */
  X_FIRMWARE_WAKING_VECTOR: 24,
  VERSION: 32,
  OSPM_FLAGS: 36,
} as const;

/** An FACS with no waking vector yet, no global lock use and no 64-bit wake support (FLAGS 0). */
export function buildFacs(): Uint8Array {
  const t = new TableBytes(FACS_SIZE);
  t.ascii(FacsField.SIGNATURE, 'FACS', 4);
  t.u32(FacsField.LENGTH, FACS_SIZE);
  t.u8(FacsField.VERSION, 2);
  return t.bytes; // the FACS has no checksum
}

/** MADT (§5.2.12): the local APIC address and flags, then one entry per interrupt controller. */
const MADT_HEADER_SIZE = SDT_HEADER_SIZE + 8;
const PCAT_COMPAT = 1 << 0; // the machine also has the dual 8259 PIC (KVM's irqchip does)

/** MADT entry types (table 5.21) and their lengths. */
export const MadtEntry = {
  LOCAL_APIC: { type: 0, length: 8 },
  IO_APIC: { type: 1, length: 12 },
  INTERRUPT_SOURCE_OVERRIDE: { type: 2, length: 10 },
  LOCAL_APIC_NMI: { type: 4, length: 6 },
} as const;

const LOCAL_APIC_ENABLED = 1 << 0;
/** Local APIC NMI: ACPI processor UID 0xff means every processor. */
const ALL_PROCESSORS = 0xff;

// MPS INTI flags (table 5.26): polarity bits 1:0, trigger mode bits 3:2.
const POLARITY = { conforms: 0b00, high: 0b01, low: 0b11 } as const;
const TRIGGER = { conforms: 0b00, edge: 0b01, level: 0b11 } as const;

function intiFlags(o: Pick<IsaInterruptOverride, 'polarity' | 'trigger'>): number {
  return POLARITY[o.polarity] | (TRIGGER[o.trigger] << 2);
}

export function buildMadt(platform: AcpiPlatform): Uint8Array {
  const apicIds = checkedApicIds(platform);
  const overrides = platform.isaInterruptOverrides;
  const length = MADT_HEADER_SIZE
    + apicIds.length * MadtEntry.LOCAL_APIC.length
    + MadtEntry.IO_APIC.length
    + overrides.length * MadtEntry.INTERRUPT_SOURCE_OVERRIDE.length
    + MadtEntry.LOCAL_APIC_NMI.length;
  const t = newTable('APIC', length, 5, 'TSVMAPIC');
  t.u32(SDT_HEADER_SIZE, platform.localApicAddress);
  t.u32(SDT_HEADER_SIZE + 4, PCAT_COMPAT);
  let at = MADT_HEADER_SIZE;
  const entry = (kind: { type: number; length: number }) => {
    t.u8(at, kind.type);
    t.u8(at + 1, kind.length);
    const body = at + 2;
    at += kind.length;
    return body;
  };
  apicIds.forEach((apicId, cpu) => {
    const e = entry(MadtEntry.LOCAL_APIC);
    t.u8(e, cpu); // ACPI processor UID: the vCPU's index
    t.u8(e + 1, apicId);
    t.u32(e + 2, LOCAL_APIC_ENABLED);
  });
  const io = entry(MadtEntry.IO_APIC);
  t.u8(io, platform.ioapic.id);
  t.u32(io + 2, platform.ioapic.address);
  t.u32(io + 6, platform.ioapic.gsiBase);
  for (const o of overrides) {
    const e = entry(MadtEntry.INTERRUPT_SOURCE_OVERRIDE);
    t.u8(e, 0); // bus 0: ISA
    t.u8(e + 1, o.irq);
    t.u32(e + 2, o.gsi);
    t.u16(e + 6, intiFlags(o));
  }
  // LINT1 of every local APIC is the NMI input, as a PC's BIOS wires it.
  const nmi = entry(MadtEntry.LOCAL_APIC_NMI);
  t.u8(nmi, ALL_PROCESSORS);
  t.u16(nmi + 1, intiFlags({ polarity: 'conforms', trigger: 'conforms' }));
  t.u8(nmi + 3, 1); // LINT1
  return sealTable(t);
}
