// The guest-physical memory map of a PC: RAM from 0, and above 3.25 GiB a gap
// for MMIO (PCI BARs, the IOAPIC, the local APIC) with any further RAM above
// 4 GiB. Same gap as kvmtool and Firecracker.
import { GIB } from './config.ts';

export const MMIO_GAP_START = 0xd000_0000;
export const MMIO_GAP_END = 4 * GIB;
/** KVM_SET_TSS_ADDR: three pages Intel VT-x needs for real mode, inside the gap. */
export const TSS_ADDRESS = 0xfffb_d000;
/** KVM_SET_IDENTITY_MAP_ADDR: one page, just below the TSS. */
export const IDENTITY_MAP_ADDRESS = 0xfffb_c000;

export interface RamLayoutEntry {
  guestAddress: number;
  size: number;
}

export function ramLayout(memoryBytes: number): RamLayoutEntry[] {
  if (memoryBytes <= MMIO_GAP_START) return [{ guestAddress: 0, size: memoryBytes }];
  return [
    { guestAddress: 0, size: MMIO_GAP_START },
    { guestAddress: MMIO_GAP_END, size: memoryBytes - MMIO_GAP_START },
  ];
}
