// Guest RAM backed by anonymous host memory that KVM can map into a VM.
import { dropGuestMappingOfPage, mapAnonymous, viewOf, type HostMapping } from '../kvm/index.ts';
import { CHUNK_SIZE, GuestMemory, type RamRange } from './guest-memory.ts';

/** What another thread needs to see the same RAM: plain numbers, clonable. */
export interface RamDescriptor {
  readonly guestAddress: number;
  readonly size: number;
  readonly hostAddress: bigint;
}

function viewsOf(descriptor: RamDescriptor): RamRange {
  const chunks: Uint8Array[] = [];
  for (let off = 0; off < descriptor.size; off += CHUNK_SIZE) {
    const length = Math.min(CHUNK_SIZE, descriptor.size - off);
    chunks.push(new Uint8Array(viewOf(descriptor.hostAddress + BigInt(off), length)));
  }
  return { guestAddress: descriptor.guestAddress, size: descriptor.size, chunks };
}

/** Guest RAM for a VM: host mappings plus the GuestMemory over them. */
export class HostRam {
  private constructor(readonly memory: GuestMemory, readonly descriptors: readonly RamDescriptor[]) {}

  /** Maps fresh zeroed memory for each guest-physical range. */
  static allocate(layout: readonly { guestAddress: number; size: number }[]): HostRam {
    const mappings: HostMapping[] = layout.map(({ size }) => mapAnonymous(size));
    const descriptors = layout.map(({ guestAddress, size }, i) => ({ guestAddress, size, hostAddress: mappings[i]!.address }));
    return HostRam.attach(descriptors);
  }

  /**
   * Makes KVM fault in the page at `guestAddress` again on the guest's next
   * access (pc-testdev's flush-page). An address outside RAM is ignored, as
   * QEMU ignores a page it cannot map.
   */
  dropGuestMapping(guestAddress: number): void {
    const page = guestAddress - (guestAddress % 4096);
    const ram = this.descriptors.find((d) => page >= d.guestAddress && page < d.guestAddress + d.size);
    if (ram) dropGuestMappingOfPage(ram.hostAddress + BigInt(page - ram.guestAddress));
  }

  /** Views RAM that another thread of this process allocated. */
  static attach(descriptors: readonly RamDescriptor[]): HostRam {
    return new HostRam(new GuestMemory(descriptors.map(viewsOf)), descriptors);
  }
}
