// vmlinux: the kernel as an ELF64 executable. Its PT_LOAD segments carry their
// physical load addresses; a PVH note (XEN_ELFNOTE_PHYS32_ENTRY) gives the
// 32-bit entry of the x86/HVM direct boot ABI, which tsvmm prefers when present.
import { InputError } from '../errors.ts';

const PT_LOAD = 1;
const PT_NOTE = 4;
const EM_X86_64 = 62;
export const XEN_ELFNOTE_PHYS32_ENTRY = 18;

export interface ElfSegment {
  physicalAddress: number;
  virtualAddress: bigint;
  data: Uint8Array;
  memorySize: number;
}

export interface ElfKernel {
  entry: bigint;
  segments: ElfSegment[];
  /** The PVH 32-bit entry point, when the kernel has one. */
  pvhEntry?: number;
}

export function looksLikeElf(image: Uint8Array): boolean {
  return image.length >= 4 && image[0] === 0x7f && image[1] === 0x45 && image[2] === 0x4c && image[3] === 0x46;
}

export function parseElfKernel(image: Uint8Array, source: string): ElfKernel {
  const b = Buffer.from(image.buffer, image.byteOffset, image.length);
  const truncated = (what: string) => new InputError(`${source}: truncated ELF file (${what} lies past its ${b.length} bytes)`);
  if (b.length < 64) throw truncated('the ELF header');
  if (b[4] !== 2 || b[5] !== 1) throw new InputError(`${source}: not a 64-bit little-endian ELF file`);
  if (b.readUInt16LE(18) !== EM_X86_64) throw new InputError(`${source}: ELF file for machine ${b.readUInt16LE(18)}, not x86-64`);
  const entry = b.readBigUInt64LE(24);
  const phoff = Number(b.readBigUInt64LE(32));
  const phentsize = b.readUInt16LE(54);
  const phnum = b.readUInt16LE(56);
  if (phentsize < 56 || phoff + phnum * phentsize > b.length) throw truncated('the program header table');

  const segments: ElfSegment[] = [];
  let pvhEntry: number | undefined;
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    const type = b.readUInt32LE(at);
    const offset = Number(b.readBigUInt64LE(at + 8));
    const vaddr = b.readBigUInt64LE(at + 16);
    const paddr = Number(b.readBigUInt64LE(at + 24));
    const filesz = Number(b.readBigUInt64LE(at + 32));
    const memsz = Number(b.readBigUInt64LE(at + 40));
    if (type !== PT_LOAD && type !== PT_NOTE) continue;
    if (offset + filesz > b.length) throw truncated(`segment ${i}`);
    if (type === PT_LOAD) {
      if (memsz < filesz) throw new InputError(`${source}: segment ${i} has a memory size smaller than its file size`);
      segments.push({ physicalAddress: paddr, virtualAddress: vaddr, data: image.subarray(offset, offset + filesz), memorySize: memsz });
    } else {
      pvhEntry ??= findPvhEntry(b.subarray(offset, offset + filesz));
    }
  }
  if (segments.length === 0) throw new InputError(`${source}: ELF file has nothing to load (no PT_LOAD segment)`);
  return { entry, segments, ...(pvhEntry !== undefined ? { pvhEntry } : {}) };
}

function findPvhEntry(notes: Buffer): number | undefined {
  const align4 = (n: number) => (n + 3) & ~3;
  for (let at = 0; at + 12 <= notes.length;) {
    const nameSize = notes.readUInt32LE(at);
    const descSize = notes.readUInt32LE(at + 4);
    const type = notes.readUInt32LE(at + 8);
    const name = notes.subarray(at + 12, at + 12 + nameSize).toString('latin1');
    const desc = at + 12 + align4(nameSize);
    if (desc + descSize > notes.length) return undefined;
    if (name === 'Xen\0' && type === XEN_ELFNOTE_PHYS32_ENTRY && descSize >= 4) {
      return descSize >= 8 ? Number(notes.readBigUInt64LE(desc)) : notes.readUInt32LE(desc);
    }
    at = desc + align4(descSize);
  }
  return undefined;
}

/** The physical address of the ELF entry point (e_entry is virtual). */
export function physicalEntry(kernel: ElfKernel): number | undefined {
  for (const s of kernel.segments) {
    if (kernel.entry >= s.virtualAddress && kernel.entry < s.virtualAddress + BigInt(s.memorySize)) {
      return s.physicalAddress + Number(kernel.entry - s.virtualAddress);
    }
  }
  return undefined;
}
