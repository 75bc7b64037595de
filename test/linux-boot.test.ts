// The Linux boot protocol as tsvmm implements it (Documentation/arch/x86/boot.rst,
// the PVH start_info ABI), checked on synthetic kernels so no boot is needed.
import { describe, expect, it } from 'vitest';
import { bootLinux } from '../src/boot/linux.ts';
import { parseBzImage, SetupHeader } from '../src/boot/bzimage.ts';
import { POWER_ON_STATE, fakeBzImage, fakeVmlinux } from './helpers/fake-kernels.ts';
import { parseElfKernel, physicalEntry } from '../src/boot/elf.ts';
import { e820Map, E820 } from '../src/boot/memory-map.ts';
import { BootLayout, ramLayout } from '../src/layout.ts';
import { HVM_START_MAGIC } from '../src/boot/pvh.ts';
import { GuestMemory } from '../src/memory/index.ts';

const MIB = 2 ** 20;


function guest(memoryBytes: number) {
  const ram = ramLayout(memoryBytes);
  // Only low RAM is backed in these tests; RAM above 4 GiB is not touched.
  return { ram, memory: GuestMemory.ofArrayBuffers([ram[0]!]) };
}

describe('e820 map', () => {
  it('low RAM, the EBDA/ROM hole, RAM from 1 MiB', () => {
    expect(e820Map(ramLayout(256 * MIB))).toEqual([
      { address: 0, size: 0x9fc00, type: E820.RAM },
      { address: 0x9fc00, size: 0x100000 - 0x9fc00, type: E820.RESERVED },
      { address: 0x100000, size: 256 * MIB - 0x100000, type: E820.RAM },
    ]);
  });

  it('leaves the MMIO gap below 4 GiB out and continues above 4 GiB (--mem 5G)', () => {
    const map = e820Map(ramLayout(5 * 1024 * MIB));
    expect(map[2]).toEqual({ address: 0x100000, size: 0xd0000000 - 0x100000, type: E820.RAM });
    expect(map[3]).toEqual({ address: 0x1_0000_0000, size: 5 * 1024 * MIB - 0xd0000000, type: E820.RAM });
  });

  it('--mem 3584M: 3.25 GiB below the gap, the rest above 4 GiB', () => {
    const map = e820Map(ramLayout(3584 * MIB));
    expect(map.at(-1)).toEqual({ address: 0x1_0000_0000, size: 256 * MIB, type: E820.RAM });
  });
});

describe('bzImage', () => {
  it('parses the setup header', () => {
    const image = parseBzImage(fakeBzImage(), 'k');
    expect(image.version).toBe(0x020f);
    expect(image.protectedMode.length).toBe(4096);
    expect(image.header.length).toBe(0x26c - 0x1f1);
  });

  it.each([
    ['not a kernel', Buffer.alloc(4096, 0x41), /not a bzImage/],
    ['truncated header', fakeBzImage().subarray(0, 0x240), /truncated bzImage/],
    ['truncated payload', fakeBzImage().subarray(0, 5 * 512 + 100), /truncated bzImage/],
    ['protocol too old', fakeBzImage({ version: 0x0204 }), /2\.04 is too old/],
    ['no 64-bit entry', fakeBzImage({ xloadflags: 0 }), /no 64-bit entry point/],
  ])('refuses %s', (_what, image, message) => {
    expect(() => parseBzImage(image, 'k')).toThrow(message);
  });

  it('boots through the 64-bit entry: boot_params, cmdline, initrd, page tables, long mode', () => {
    const { ram, memory } = guest(64 * MIB);
    const initrd = Buffer.alloc(3 * MIB, 0x5a);
    const { state, plan } = bootLinux(memory, { kernel: fakeBzImage(), kernelSource: 'k', initrd, initrdSource: 'i', cmdline: 'console=ttyS0', ram }, POWER_ON_STATE);
    expect(plan).toMatchObject({ format: 'bzImage', entryKind: '64-bit', entry: 0x1000200 });
    expect(state.regs.rip).toBe(0x1000200n);
    expect(state.regs.rsi).toBe(BigInt(BootLayout.ZERO_PAGE));
    expect(state.sregs.cs).toMatchObject({ selector: 0x10, l: 1, db: 0 });
    expect(state.sregs.ds.selector).toBe(0x18);
    expect(state.sregs.efer & 0x500n).toBe(0x500n);
    expect(state.sregs.cr3).toBe(BigInt(BootLayout.PML4));
    const zp = BootLayout.ZERO_PAGE;
    expect(memory.readU8(zp + SetupHeader.TYPE_OF_LOADER)).toBe(0xff);
    expect(memory.readU32(zp + SetupHeader.CMD_LINE_PTR)).toBe(BootLayout.CMDLINE);
    expect(Buffer.from(memory.read(BootLayout.CMDLINE, 14)).toString('latin1')).toBe('console=ttyS0\0');
    // The initrd sits page-aligned at the top of RAM.
    expect(plan.initrd).toEqual({ address: 64 * MIB - 3 * MIB, size: 3 * MIB });
    expect(memory.readU32(zp + SetupHeader.RAMDISK_IMAGE)).toBe(64 * MIB - 3 * MIB);
    expect(memory.readU32(zp + SetupHeader.RAMDISK_SIZE)).toBe(3 * MIB);
    expect(memory.readU8(zp + 0x1e8)).toBe(3); // e820 entries
    expect(memory.readU64(zp + 0x2d0 + 2 * 20 + 8)).toBe(BigInt(64 * MIB - 0x100000));
    // The identity map covers 0x1000000 with a 2 MiB page.
    expect(memory.readU64(BootLayout.PAGE_DIRECTORIES + 8 * 8)).toBe(0x1000000n | 0x83n);
  });

  it('refuses an initrd that does not fit, and a kernel too big for RAM', () => {
    const { ram, memory } = guest(32 * MIB);
    expect(() => bootLinux(memory, { kernel: fakeBzImage(), kernelSource: 'k', initrd: Buffer.alloc(20 * MIB), initrdSource: 'big.cpio', cmdline: '', ram }, POWER_ON_STATE))
      .toThrow(/big\.cpio \(20\.0 MiB\) does not fit/);
    expect(() => bootLinux(memory, { kernel: fakeBzImage({ initSize: 64 * MIB }), kernelSource: 'k', cmdline: '', ram }, POWER_ON_STATE))
      .toThrow(/give it more --mem/);
  });

  it('refuses a command line longer than the kernel accepts', () => {
    const { ram, memory } = guest(32 * MIB);
    expect(() => bootLinux(memory, { kernel: fakeBzImage(), kernelSource: 'k', cmdline: 'x'.repeat(3000), ram }, POWER_ON_STATE)).toThrow(/at most 2047/);
  });
});

describe('vmlinux', () => {
  it('loads PT_LOAD segments at their physical addresses and zero-fills the rest', () => {
    const { ram, memory } = guest(64 * MIB);
    memory.fill(0x1001000, 0x1000, 0xee);
    bootLinux(memory, { kernel: fakeVmlinux(), kernelSource: 'v', cmdline: '', ram }, POWER_ON_STATE);
    expect(memory.readU8(0x1000000)).toBe(0x90);
    expect(memory.readU8(0x1001000)).toBe(0);
  });

  it('enters through PVH when the kernel has the note: 32-bit protected mode, EBX = start_info', () => {
    const { ram, memory } = guest(64 * MIB);
    const { state, plan } = bootLinux(memory, { kernel: fakeVmlinux({ pvhEntry: 0x1000123 }), kernelSource: 'v', initrd: Buffer.alloc(4096, 1), cmdline: 'quiet', ram }, POWER_ON_STATE);
    expect(plan.entryKind).toBe('PVH');
    expect(state.regs.rip).toBe(0x1000123n);
    expect(state.regs.rbx).toBe(BigInt(BootLayout.PVH_START_INFO));
    expect(state.sregs.cr0 & 0x80000001n).toBe(1n);
    expect(state.sregs.efer).toBe(0n);
    expect(state.sregs.cs).toMatchObject({ selector: 0x08, db: 1, l: 0, limit: 0xffffffff });
    const info = BootLayout.PVH_START_INFO;
    expect(memory.readU32(info)).toBe(HVM_START_MAGIC);
    expect(memory.readU32(info + 12)).toBe(1); // one module: the initrd
    expect(memory.readU64(info + 24)).toBe(BigInt(BootLayout.CMDLINE));
    expect(memory.readU32(info + 48)).toBe(3); // memmap entries
    expect(memory.readU64(BootLayout.PVH_MODLIST + 8)).toBe(4096n);
  });

  it('without a PVH note, enters at the physical address of e_entry (64-bit)', () => {
    const elf = parseElfKernel(fakeVmlinux(), 'v');
    expect(physicalEntry(elf)).toBe(0x1000040);
  });

  it.each([
    ['a truncated file', fakeVmlinux().subarray(0, 100), /truncated ELF/],
    ['a 32-bit ELF', (() => { const b = fakeVmlinux(); b[4] = 1; return b; })(), /not a 64-bit/],
    ['another machine', (() => { const b = fakeVmlinux(); b.writeUInt16LE(183, 18); return b; })(), /not x86-64/],
  ])('refuses %s', (_what, image, message) => {
    expect(() => parseElfKernel(image, 'v')).toThrow(message);
  });

  it('refuses a kernel whose segments lie beyond RAM', () => {
    const { ram, memory } = guest(16 * MIB);
    expect(() => bootLinux(memory, { kernel: fakeVmlinux(), kernelSource: 'v', cmdline: '', ram }, POWER_ON_STATE)).toThrow(/more --mem/);
  });
});
