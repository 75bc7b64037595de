// The DMA Remapping Reporting table (Intel VT-d 3.4, chapter 8): how an OS
// finds the VT-d unit. One DRHD describes tsvmm's one unit with
// INCLUDE_PCI_ALL (it remaps every PCI function of segment 0) and, as a
// device scope, the IOAPIC whose interrupts it remaps: an OS enables
// interrupt remapping only when every IOAPIC is under a unit.
import { newTable, sealTable, SDT_HEADER_SIZE } from './sdt.ts';
import type { AcpiPlatform } from './platform.ts';

/** The header after the SDT header: Host Address Width, Flags, 10 reserved bytes. */
const DMAR_HEADER_SIZE = SDT_HEADER_SIZE + 12;
/** DMAR flags: INTR_REMAP (the platform supports interrupt remapping). */
const DMAR_INTR_REMAP = 1 << 0;
/** Remapping structure type 0, DRHD: 16 bytes, then its device scopes. */
const DRHD_TYPE = 0;
const DRHD_SIZE = 16;
const DRHD_INCLUDE_PCI_ALL = 1 << 0;
/** Device scope type 3, an IOAPIC: 6 bytes, then one (device, function) path entry. */
const SCOPE_IOAPIC = 3;
const IOAPIC_SCOPE_SIZE = 8;

/**
 * The IOAPIC's requester id as the DRHD names it: QEMU's q35 pseudo-device
 * (bus 0xff, device 0, function 0), which no PCI function can take.
 */
export const IOAPIC_SCOPE_BUS = 0xff;

export function buildDmar(iommu: NonNullable<AcpiPlatform['iommu']>, ioapicId: number): Uint8Array {
  const length = DMAR_HEADER_SIZE + DRHD_SIZE + IOAPIC_SCOPE_SIZE;
  const t = newTable('DMAR', length, 1, 'TSVMDMAR');
  // Host Address Width is N - 1 for N bits of DMA-addressable memory.
  t.u8(SDT_HEADER_SIZE, iommu.hostAddressWidth - 1);
  t.u8(SDT_HEADER_SIZE + 1, iommu.interruptRemapping ? DMAR_INTR_REMAP : 0);
  let at = DMAR_HEADER_SIZE;
  t.u16(at, DRHD_TYPE);
  t.u16(at + 2, DRHD_SIZE + IOAPIC_SCOPE_SIZE);
  t.u8(at + 4, DRHD_INCLUDE_PCI_ALL);
  // Byte 5: the register set's size as 2^n pages (0: one page); bytes 6-7: segment 0.
  t.u64(at + 8, iommu.address);
  at += DRHD_SIZE;
  t.u8(at, SCOPE_IOAPIC);
  t.u8(at + 1, IOAPIC_SCOPE_SIZE);
  t.u8(at + 4, ioapicId);
  t.u8(at + 5, IOAPIC_SCOPE_BUS);
  // Path: device 0, function 0.
  return sealTable(t);
}
