// One PCI function's DMA through the VT-d unit: its bus addresses are I/O
// virtual addresses, translated page by page for its source-id. A DMA is
// carried out only when every page of it translates to guest RAM; otherwise
// nothing is read or written (the unit has recorded the translation fault).
import type { GuestMemory } from '../../memory/index.ts';
import type { DmaSpace } from '../pci/dma.ts';
import type { IntelVtd } from './intel-vtd.ts';
import type { DmaAccess } from './vtd-translation.ts';

export class RemappedDma implements DmaSpace {
  /** DMAs refused: a translation fault, or a translation to something that is not RAM. */
  aborted = 0;

  constructor(private readonly unit: IntelVtd, private readonly sourceId: number, private readonly memory: GuestMemory) {}

  read(address: number, length: number): Uint8Array | null {
    const pieces = this.pieces(address, length, 'read');
    if (!pieces) return null;
    const out = new Uint8Array(length);
    let at = 0;
    for (const piece of pieces) {
      out.set(this.memory.read(piece.address, piece.length), at);
      at += piece.length;
    }
    return out;
  }

  write(address: number, data: Uint8Array): boolean {
    const pieces = this.pieces(address, data.length, 'write');
    if (!pieces) return false;
    let at = 0;
    for (const piece of pieces) {
      this.memory.write(piece.address, data.subarray(at, at + piece.length));
      at += piece.length;
    }
    return true;
  }

  /** The guest-physical pieces of [address, address + length), or null when any fails. */
  private pieces(address: number, length: number, access: DmaAccess): { address: number; length: number }[] | null {
    const pieces: { address: number; length: number }[] = [];
    let iova = address;
    const end = address + length;
    while (iova < end) {
      const t = this.unit.translate(this.sourceId, iova, access);
      if (!t.ok) {
        this.aborted++;
        return null;
      }
      const pieceLength = Math.min(end - iova, t.pageSize - (iova % t.pageSize));
      if (!this.memory.contains(t.address, pieceLength)) {
        this.aborted++;
        return null;
      }
      pieces.push({ address: t.address, length: pieceLength });
      iova += pieceLength;
    }
    return pieces;
  }
}
