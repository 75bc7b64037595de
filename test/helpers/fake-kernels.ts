// Synthetic kernels: the smallest images tsvmm's boot code accepts, built in
// memory, so that boot and CLI tests need no real kernel.
import { SetupHeader } from '../../src/boot/bzimage.ts';
import type { EntryState } from '../../src/boot/cpu-entry.ts';
import type { Segment } from '../../src/kvm/index.ts';

const resetSegment: Segment = { base: 0n, limit: 0xffff, selector: 0, type: 3, present: 1, dpl: 0, db: 0, s: 1, l: 0, g: 0, avl: 0, unusable: 0 };

/** A vCPU's registers at power-on (Intel SDM vol. 3, 9.1.1), what bootLinux starts from. */
export const POWER_ON_STATE: EntryState = {
  regs: { rax: 0n, rbx: 0n, rcx: 0n, rdx: 0n, rsi: 0n, rdi: 0n, rsp: 0n, rbp: 0n, r8: 0n, r9: 0n, r10: 0n, r11: 0n, r12: 0n, r13: 0n, r14: 0n, r15: 0n, rip: 0xfff0n, rflags: 2n },
  sregs: {
    cs: resetSegment, ds: resetSegment, es: resetSegment, fs: resetSegment, gs: resetSegment, ss: resetSegment, tr: resetSegment, ldt: resetSegment,
    gdt: { base: 0n, limit: 0xffff }, idt: { base: 0n, limit: 0xffff },
    cr0: 0x60000010n, cr2: 0n, cr3: 0n, cr4: 0n, cr8: 0n, efer: 0n, apic_base: 0xfee00900n, interrupt_bitmap: [0n, 0n, 0n, 0n],
  },
};

/** A minimal bzImage: setup header + a protected-mode part of `payload` bytes. */
export function fakeBzImage(options: { payload?: number; version?: number; xloadflags?: number; initSize?: number } = {}): Buffer {
  const setupSects = 4;
  const payload = options.payload ?? 4096;
  const image = Buffer.alloc((setupSects + 1) * 512 + payload);
  image[SetupHeader.SETUP_SECTS] = setupSects;
  image.writeUInt32LE(payload / 16, SetupHeader.SYSSIZE);
  image.writeUInt16LE(0xaa55, SetupHeader.BOOT_FLAG);
  image[0x200] = 0xeb;
  image[0x201] = 0x6a; // header ends at 0x26c
  image.writeUInt32LE(0x53726448, SetupHeader.HEADER);
  image.writeUInt16LE(options.version ?? 0x020f, SetupHeader.VERSION);
  image[SetupHeader.LOADFLAGS] = 0x01;
  image.writeUInt32LE(0x7fffffff, SetupHeader.INITRD_ADDR_MAX);
  image.writeUInt32LE(0x200000, SetupHeader.KERNEL_ALIGNMENT);
  image[SetupHeader.RELOCATABLE_KERNEL] = 1;
  image.writeUInt16LE(options.xloadflags ?? 0x1, SetupHeader.XLOADFLAGS);
  image.writeUInt32LE(2048, SetupHeader.CMDLINE_SIZE);
  image.writeBigUInt64LE(0x1000000n, SetupHeader.PREF_ADDRESS);
  image.writeUInt32LE(options.initSize ?? 0x100000, SetupHeader.INIT_SIZE);
  image.fill(0xcc, (setupSects + 1) * 512);
  return image;
}

/** A minimal ELF64 x86-64 vmlinux with one PT_LOAD and, optionally, a PVH note. */
export function fakeVmlinux(options: { pvhEntry?: number; loadAddress?: number; size?: number } = {}): Buffer {
  const load = options.loadAddress ?? 0x1000000;
  const size = options.size ?? 0x1000;
  const note = Buffer.alloc(options.pvhEntry !== undefined ? 12 + 4 + 4 : 0);
  if (options.pvhEntry !== undefined) {
    note.writeUInt32LE(4, 0); note.writeUInt32LE(4, 4); note.writeUInt32LE(18, 8);
    note.write('Xen\0', 12, 'latin1'); note.writeUInt32LE(options.pvhEntry, 16);
  }
  const phnum = note.length ? 2 : 1;
  const dataAt = 64 + phnum * 56;
  const image = Buffer.alloc(dataAt + note.length + size);
  image.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
  image.writeUInt16LE(2, 16); image.writeUInt16LE(62, 18);
  image.writeBigUInt64LE(0xffffffff81000000n + 0x40n, 24); // e_entry (virtual)
  image.writeBigUInt64LE(64n, 32); image.writeUInt16LE(56, 54); image.writeUInt16LE(phnum, 56);
  const ph = (i: number, type: number, offset: number, vaddr: bigint, paddr: number, filesz: number, memsz: number) => {
    const at = 64 + i * 56;
    image.writeUInt32LE(type, at); image.writeBigUInt64LE(BigInt(offset), at + 8);
    image.writeBigUInt64LE(vaddr, at + 16); image.writeBigUInt64LE(BigInt(paddr), at + 24);
    image.writeBigUInt64LE(BigInt(filesz), at + 32); image.writeBigUInt64LE(BigInt(memsz), at + 40);
  };
  ph(0, 1, dataAt + note.length, 0xffffffff81000000n, load, size, size + 0x1000);
  if (note.length) { ph(1, 4, dataAt, 0n, 0, note.length, note.length); image.set(note, dataAt); }
  image.fill(0x90, dataAt + note.length);
  return image;
}
