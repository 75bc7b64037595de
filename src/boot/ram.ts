// The guest-physical RAM ranges of a PC: RAM from 0 and, when there is more
// than fits below the MMIO gap (3.25 GiB, as kvmtool and Firecracker), the
// rest from 4 GiB.

export interface RamLayoutEntry {
  guestAddress: number;
  size: number;
}

export const MMIO_GAP_START = 0xd000_0000;
export const MMIO_GAP_END = 0x1_0000_0000;

export function ramLayout(memoryBytes: number): RamLayoutEntry[] {
  if (memoryBytes <= MMIO_GAP_START) return [{ guestAddress: 0, size: memoryBytes }];
  return [
    { guestAddress: 0, size: MMIO_GAP_START },
    { guestAddress: MMIO_GAP_END, size: memoryBytes - MMIO_GAP_START },
  ];
}
