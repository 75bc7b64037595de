// Where the VMM puts the structures a Linux guest boots from, in low RAM, and
// the e820 map it reports. The addresses follow Firecracker's x86_64 layout.
import type { RamLayoutEntry } from './ram.ts';

export const BootLayout = {
  /** GDT for the 64-bit and 32-bit entries (4 descriptors). */
  GDT: 0x500,
  /** An empty IDT: the kernel installs its own before enabling interrupts. */
  IDT: 0x520,
  /** PVH hvm_start_info, its module list and its memory map. */
  PVH_START_INFO: 0x6000,
  PVH_MODLIST: 0x6040,
  PVH_MEMMAP: 0x6100,
  /** boot_params, "the zero page" of the Linux boot protocol. */
  ZERO_PAGE: 0x7000,
  /** Identity page tables for the 64-bit entry: PML4, PDPT, then 4 page directories. */
  PML4: 0x9000,
  PDPT: 0xa000,
  PAGE_DIRECTORIES: 0xb000,
  /** Kernel command line (NUL-terminated). */
  CMDLINE: 0x20000,
  CMDLINE_MAX: 0x10000,
  /** End of conventional memory: the EBDA and the BIOS area sit above this. */
  EBDA_START: 0x9fc00,
  /** The protected-mode kernel loads here (1 MiB) unless it asks otherwise. */
  HIGH_MEMORY: 0x10_0000,
} as const;

export const E820 = { RAM: 1, RESERVED: 2 } as const;

export interface E820Entry {
  address: number;
  size: number;
  type: number;
}

/**
 * The e820 map: low RAM up to the EBDA, the EBDA/ROM hole reserved, RAM from
 * 1 MiB to the end of the first RAM range (the MMIO gap below 4 GiB is left
 * out), then any RAM above 4 GiB.
 */
export function e820Map(ram: readonly RamLayoutEntry[]): E820Entry[] {
  const entries: E820Entry[] = [
    { address: 0, size: BootLayout.EBDA_START, type: E820.RAM },
    { address: BootLayout.EBDA_START, size: BootLayout.HIGH_MEMORY - BootLayout.EBDA_START, type: E820.RESERVED },
  ];
  for (const range of ram) {
    const start = Math.max(range.guestAddress, BootLayout.HIGH_MEMORY);
    const end = range.guestAddress + range.size;
    if (end > start) entries.push({ address: start, size: end - start, type: E820.RAM });
  }
  return entries;
}
