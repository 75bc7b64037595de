// The e820 memory map a Linux guest is given: what of the guest-physical
// map (src/layout.ts) is RAM it may use and what is reserved.
import { BootLayout, type RamLayoutEntry } from '../layout.ts';


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
