// How a PCI function reaches memory as a bus master. Without an IOMMU a
// device's bus address is a guest-physical address; behind one it is an I/O
// virtual address the IOMMU translates. Either way only guest RAM answers: a
// DMA that touches anything else is aborted (the device sees a master abort),
// never carried out on host memory.
import type { GuestMemory } from '../../memory/index.ts';

export interface DmaSpace {
  /** `length` bytes from bus address `address`, or null when the DMA is aborted. */
  read(address: number, length: number): Uint8Array | null;
  /** Writes `data` at bus address `address`; false when the DMA is aborted (nothing written). */
  write(address: number, data: Uint8Array): boolean;
}

/** DMA straight to guest-physical addresses (no IOMMU). */
export class GuestRamDma implements DmaSpace {
  constructor(private readonly memory: GuestMemory) {}

  read(address: number, length: number): Uint8Array | null {
    return this.memory.contains(address, length) ? this.memory.read(address, length) : null;
  }

  write(address: number, data: Uint8Array): boolean {
    if (!this.memory.contains(address, data.length)) return false;
    this.memory.write(address, data);
    return true;
  }
}
