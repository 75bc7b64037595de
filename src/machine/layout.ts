// The guest-physical memory map of a PC: RAM from 0, and above 3.25 GiB a gap
// for MMIO (PCI BARs, the IOAPIC, the local APIC) with any further RAM above
// 4 GiB. Same gap as kvmtool and Firecracker.

export { ramLayout } from '../boot/ram.ts';

/** KVM_SET_TSS_ADDR: three pages Intel VT-x needs for real mode, inside the MMIO gap. */
export const TSS_ADDRESS = 0xfffb_d000;
/** KVM_SET_IDENTITY_MAP_ADDR: one page, just below the TSS. */
export const IDENTITY_MAP_ADDRESS = 0xfffb_c000;

/** The in-kernel irqchip's IOAPIC and the local APIC window (KVM serves both). */
export const IOAPIC_ADDRESS = 0xfec0_0000;
export const LOCAL_APIC_ADDRESS = 0xfee0_0000;
