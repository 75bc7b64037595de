// Multiboot v1 (spec 0.6.96) as tsvmm implements it for --kernel: the header
// search, loading by ELF32 program headers or by the a.out kludge, and the
// information structure read back the way a multiboot kernel reads it
// (following EBX's pointers through guest memory). Then mbinfo, a real
// multiboot guest, run under KVM through the tsvmm command.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { multibootFirmwarePath } from '../firmware/firmware.ts';
import { bootLinux } from '../src/boot/linux.ts';
import { E820 } from '../src/boot/memory-map.ts';
import {
  bootMultiboot, findMultibootHeader, InfoFlag, InfoOffset, MULTIBOOT_BOOTLOADER_MAGIC, MULTIBOOT_HEADER_MAGIC,
  type MultibootRequest,
} from '../src/boot/multiboot.ts';
import { configFromOptions } from '../src/cli/run.ts';
import { BootLayout, ramLayout } from '../src/layout.ts';
import { GuestMemory } from '../src/memory/index.ts';
import { POWER_ON_STATE } from './helpers/fake-kernels.ts';
import { hasKvm, tsvmm } from './helpers/kvm.ts';

const MIB = 2 ** 20;
const scratch = mkdtempSync(join(tmpdir(), 'tsvmm-multiboot-'));

function multibootHeader(flags: number, addresses?: number[]): Buffer {
  const header = Buffer.alloc(addresses ? 32 : 12);
  header.writeUInt32LE(MULTIBOOT_HEADER_MAGIC, 0);
  header.writeUInt32LE(flags >>> 0, 4);
  header.writeUInt32LE((-(MULTIBOOT_HEADER_MAGIC + flags)) >>> 0, 8);
  addresses?.forEach((a, i) => header.writeUInt32LE(a, 12 + i * 4));
  return header;
}

interface FakeSegment { paddr: number; vaddr?: number; data: Buffer; memsz?: number }

/**
 * An ELF file as kvm-unit-tests' x86/*.flat are: one PT_LOAD per segment, the
 * multiboot header at the start of the first segment's bytes (file offset 0x1000).
 */
function fakeElf(options: { segments: FakeSegment[]; entry: number; elfClass?: 1 | 2; flags?: number; header?: boolean }): Buffer {
  const elfClass = options.elfClass ?? 1;
  const bytes = Buffer.alloc(0x1000);
  bytes.set([0x7f, 0x45, 0x4c, 0x46, elfClass, 1, 1]);
  bytes.writeUInt16LE(2, 16); // ET_EXEC
  bytes.writeUInt16LE(elfClass === 1 ? 3 : 62, 18);
  const parts: Buffer[] = [bytes];
  let fileOffset = 0x1000;
  const phoff = elfClass === 1 ? 52 : 64;
  const phentsize = elfClass === 1 ? 32 : 56;
  options.segments.forEach((s, i) => {
    const data = i === 0 && options.header !== false ? Buffer.concat([multibootHeader(options.flags ?? 0), s.data]) : s.data;
    const at = phoff + i * phentsize;
    const memsz = Math.max(s.memsz ?? data.length, data.length);
    bytes.writeUInt32LE(1, at); // PT_LOAD
    if (elfClass === 1) {
      bytes.writeUInt32LE(fileOffset, at + 4);
      bytes.writeUInt32LE(s.vaddr ?? s.paddr, at + 8);
      bytes.writeUInt32LE(s.paddr, at + 12);
      bytes.writeUInt32LE(data.length, at + 16);
      bytes.writeUInt32LE(memsz, at + 20);
    } else {
      bytes.writeBigUInt64LE(BigInt(fileOffset), at + 8);
      bytes.writeBigUInt64LE(BigInt(s.vaddr ?? s.paddr), at + 16);
      bytes.writeBigUInt64LE(BigInt(s.paddr), at + 24);
      bytes.writeBigUInt64LE(BigInt(data.length), at + 32);
      bytes.writeBigUInt64LE(BigInt(memsz), at + 40);
    }
    parts.push(data);
    fileOffset += data.length;
  });
  if (elfClass === 1) {
    bytes.writeUInt32LE(options.entry, 24);
    bytes.writeUInt32LE(phoff, 28);
    bytes.writeUInt16LE(phentsize, 42);
    bytes.writeUInt16LE(options.segments.length, 44);
  } else {
    bytes.writeBigUInt64LE(BigInt(options.entry), 24);
    bytes.writeBigUInt64LE(BigInt(phoff), 32);
    bytes.writeUInt16LE(phentsize, 54);
    bytes.writeUInt16LE(options.segments.length, 56);
  }
  return Buffer.concat(parts);
}

/** RAM filled with 0xee, so that a field or bss the loader forgot to write shows. */
function guest(memoryBytes: number) {
  const ram = ramLayout(memoryBytes);
  const memory = GuestMemory.ofArrayBuffers([ram[0]!]);
  memory.fill(0, ram[0]!.size, 0xee);
  return { ram, memory };
}

function boot(memoryBytes: number, kernel: Buffer, request: Partial<MultibootRequest> = {}) {
  const { ram, memory } = guest(memoryBytes);
  const header = findMultibootHeader(kernel);
  if (!header) throw new Error('test kernel without a multiboot header');
  const booted = bootMultiboot(memory, { kernel, kernelSource: 'kernel.elf', args: '', ram, ...request }, header, POWER_ON_STATE);
  return { memory, ...booted };
}

function readString(memory: GuestMemory, address: number): string {
  const bytes: number[] = [];
  for (let at = address; bytes.length < 4096; at++) {
    const byte = memory.read(at, 1)[0]!;
    if (byte === 0) return Buffer.from(bytes).toString('latin1');
    bytes.push(byte);
  }
  throw new Error(`no NUL within 4096 bytes of 0x${address.toString(16)}`);
}

/** The memory map as a kernel walks it: from mmap_addr, each entry's size field says where the next one is. */
function readMmap(memory: GuestMemory, info: number) {
  const start = memory.readU32(info + InfoOffset.MMAP_ADDR);
  const end = start + memory.readU32(info + InfoOffset.MMAP_LENGTH);
  const entries: { address: bigint; size: bigint; type: number }[] = [];
  for (let at = start; at < end && entries.length < 64; at += memory.readU32(at) + 4) {
    entries.push({ address: memory.readU64(at + 4), size: memory.readU64(at + 12), type: memory.readU32(at + 20) });
  }
  return entries;
}

const CODE = Buffer.from([0xf4, 0xeb, 0xfd]); // hlt; jmp back

describe('multiboot header search', () => {
  it('finds a header at a 32-bit aligned offset in the first 8 KiB, with its checksum', () => {
    const image = Buffer.alloc(8192);
    multibootHeader(0x3).copy(image, 8192 - 12);
    expect(findMultibootHeader(image)).toEqual({ offset: 8192 - 12, flags: 0x3 });
  });

  it('ignores a magic that is misaligned, past 8 KiB, or has a wrong checksum', () => {
    const misaligned = Buffer.alloc(64);
    multibootHeader(0).copy(misaligned, 6);
    expect(findMultibootHeader(misaligned)).toBeNull();
    const late = Buffer.alloc(16384);
    multibootHeader(0).copy(late, 8192);
    expect(findMultibootHeader(late)).toBeNull();
    const badChecksum = multibootHeader(0);
    badChecksum.writeUInt32LE(0, 8);
    expect(findMultibootHeader(badChecksum)).toBeNull();
  });

  it('reads the a.out kludge address fields when flag bit 16 is set', () => {
    const image = Buffer.concat([Buffer.alloc(16), multibootHeader(0x1_0000, [0x10_0010, 0x10_0000, 0x10_1000, 0x10_2000, 0x10_0040])]);
    expect(findMultibootHeader(image)).toEqual({
      offset: 16, flags: 0x1_0000, addresses: { header: 0x10_0010, load: 0x10_0000, loadEnd: 0x10_1000, bssEnd: 0x10_2000, entry: 0x10_0040 },
    });
  });
});

describe('multiboot loading', () => {
  it('an ELF32 kernel at 0x400000: segments by physical address, bss zeroed, entered in 32-bit protected mode', () => {
    const kernel = fakeElf({ segments: [{ paddr: 0x40_0000, data: CODE, memsz: 0x3000 }], entry: 0x40_000c });
    const { memory, state, plan } = boot(64 * MIB, kernel);
    expect(plan.loadedBy).toBe('elf32');
    expect(plan.kernelRange).toEqual({ start: 0x40_0000, end: 0x40_3000 });
    expect(memory.readU32(0x40_0000)).toBe(MULTIBOOT_HEADER_MAGIC);
    expect([...memory.read(0x40_000c, 3)]).toEqual([...CODE]);
    expect(memory.read(0x40_000f, 0x3000 - 0xf).every((b) => b === 0)).toBe(true);
    expect(memory.read(0x40_3000, 1)[0]).toBe(0xee); // nothing past the segment

    expect(state.regs.rip).toBe(0x40_000cn);
    expect(state.regs.rax).toBe(BigInt(MULTIBOOT_BOOTLOADER_MAGIC));
    expect(state.regs.rbx).toBe(BigInt(BootLayout.MULTIBOOT_INFO));
    expect(state.regs.rflags & 0x200n).toBe(0n); // IF clear
    expect(state.sregs.cr0 & 0x8000_0001n).toBe(1n); // PE on, PG off
    expect(state.sregs.efer).toBe(0n);
    for (const s of [state.sregs.cs, state.sregs.ds, state.sregs.es, state.sregs.ss]) {
      expect(s).toMatchObject({ base: 0n, limit: 0xffff_ffff, db: 1, l: 0, present: 1, g: 1 });
    }
    expect(state.sregs.cs.type & 0x8).toBe(0x8); // code
    expect(state.sregs.gdt.base).toBe(BigInt(BootLayout.GDT));
    expect(memory.readU64(BootLayout.GDT + state.sregs.cs.selector)).toBe(0x00cf_9b00_0000_ffffn);
  });

  it('an ELF entry given as a virtual address is moved with its segment to the physical one', () => {
    const kernel = fakeElf({ segments: [{ paddr: 0x20_0000, vaddr: 0xc020_0000, data: CODE }], entry: 0xc020_000c });
    expect(boot(64 * MIB, kernel).state.regs.rip).toBe(0x20_000cn);
  });

  it('the a.out kludge loads by the header addresses, whatever the file format, and zeroes up to bss_end_addr', () => {
    // A flat file: 0x20 bytes of prologue, the header, then code; loaded so that the header lands at header_addr.
    const loadAddress = 0x20_0000;
    const header = multibootHeader(0x1_0000, [loadAddress + 0x20, loadAddress, 0, loadAddress + 0x2000, loadAddress + 0x40]);
    const image = Buffer.concat([Buffer.alloc(0x20, 0x90), header, CODE]);
    const { memory, state, plan } = boot(64 * MIB, image);
    expect(plan.loadedBy).toBe('a.out kludge');
    expect([...memory.read(loadAddress, image.length)]).toEqual([...image]);
    expect(memory.read(loadAddress + image.length, 0x2000 - image.length).every((b) => b === 0)).toBe(true);
    expect(memory.read(loadAddress + 0x2000, 1)[0]).toBe(0xee);
    expect(state.regs.rip).toBe(BigInt(loadAddress + 0x40));
  });

  it('realmode.flat style: a kernel linked at 0x8000 loads below 1 MiB, clear of the boot structures', () => {
    const kernel = fakeElf({ segments: [{ paddr: 0x8000, data: CODE, memsz: 0x6000 }], entry: 0x800c });
    const { memory, plan } = boot(64 * MIB, kernel);
    expect(plan.kernelRange).toEqual({ start: 0x8000, end: 0xe000 });
    expect(memory.readU32(0x8000)).toBe(MULTIBOOT_HEADER_MAGIC);
  });
});

describe('multiboot information, read the way a kernel reads it', () => {
  const kernel = fakeElf({ segments: [{ paddr: 0x40_0000, data: CODE, memsz: 0x2345 }], entry: 0x40_000c });

  it('flags, mem_lower/mem_upper in KiB, the e820 map as mmap entries, "FILE ARGS" as the command line', () => {
    const { memory, state } = boot(256 * MIB, kernel, { kernelSource: 'x86/idt_test.flat', args: 'arg1 arg2' });
    const info = Number(state.regs.rbx);
    const flags = memory.readU32(info + InfoOffset.FLAGS);
    expect(flags & (InfoFlag.MEMORY | InfoFlag.CMDLINE | InfoFlag.MMAP)).toBe(InfoFlag.MEMORY | InfoFlag.CMDLINE | InfoFlag.MMAP);
    expect(flags & InfoFlag.MODULES).toBe(0);
    expect(memory.readU32(info + InfoOffset.MEM_LOWER)).toBe(639);
    expect(memory.readU32(info + InfoOffset.MEM_UPPER)).toBe((256 * MIB - MIB) / 1024);
    expect(readString(memory, memory.readU32(info + InfoOffset.CMDLINE))).toBe('x86/idt_test.flat arg1 arg2');
    expect(readString(memory, memory.readU32(info + InfoOffset.BOOT_LOADER_NAME))).toBe('tsvmm');
    expect(readMmap(memory, info)).toEqual([
      { address: 0n, size: 0x9fc00n, type: E820.RAM },
      { address: 0x9fc00n, size: BigInt(MIB - 0x9fc00), type: E820.RESERVED },
      { address: BigInt(MIB), size: BigInt(255 * MIB), type: E820.RAM },
    ]);
    // Not in page 0, which kvm-unit-tests reuses for its AP trampoline, nor in the kernel.
    expect(info).toBeGreaterThanOrEqual(0x1000);
    expect(info + 88).toBeLessThanOrEqual(BootLayout.EBDA_START);
  });

  it('without arguments the command line is the file name alone', () => {
    const { memory, plan } = boot(64 * MIB, kernel, { kernelSource: 'k.elf' });
    expect(plan.cmdline).toBe('k.elf');
    expect(readString(memory, memory.readU32(BootLayout.MULTIBOOT_INFO + InfoOffset.CMDLINE))).toBe('k.elf');
  });

  it('--initrd is module 0: page-aligned above the kernel, its end exclusive, its string the file name', () => {
    const initrd = Buffer.alloc(10_000, 0x5a);
    const { memory, plan } = boot(64 * MIB, kernel, { initrd, initrdSource: 'tests.cpio' });
    const info = BootLayout.MULTIBOOT_INFO;
    expect(memory.readU32(info + InfoOffset.FLAGS) & InfoFlag.MODULES).toBe(InfoFlag.MODULES);
    expect(memory.readU32(info + InfoOffset.MODS_COUNT)).toBe(1);
    const entry = memory.readU32(info + InfoOffset.MODS_ADDR);
    const start = memory.readU32(entry);
    const end = memory.readU32(entry + 4);
    expect(start).toBe(0x40_3000); // the kernel ends at 0x402345
    expect(end - start).toBe(initrd.length);
    expect(plan.module).toEqual({ start, end });
    expect(memory.read(start, initrd.length).every((b) => b === 0x5a)).toBe(true);
    expect(readString(memory, memory.readU32(entry + 8))).toBe('tests.cpio');
  });

  it('a module of a kernel below 1 MiB goes above 1 MiB, not into low memory', () => {
    const low = fakeElf({ segments: [{ paddr: 0x8000, data: CODE }], entry: 0x800c });
    const { plan } = boot(64 * MIB, low, { initrd: Buffer.alloc(100, 1), initrdSource: 'm' });
    expect(plan.module).toEqual({ start: MIB, end: MIB + 100 });
  });
});

describe('multiboot refusals: one InputError line each', () => {
  const code = [{ paddr: 0x40_0000, data: CODE }];

  it('a 64-bit ELF with a multiboot header but no a.out kludge', () => {
    const kernel = fakeElf({ segments: code, entry: 0x40_000c, elfClass: 2 });
    expect(() => boot(64 * MIB, kernel)).toThrow(/^kernel\.elf: a 64-bit ELF file with a multiboot header but no a\.out kludge \(flag bit 16\)/);
  });

  it('a segment outside guest RAM', () => {
    const kernel = fakeElf({ segments: [{ paddr: 0x7f0_0000, data: CODE }], entry: 0x7f0_000c });
    expect(() => boot(64 * MIB, kernel)).toThrow(/segment 0x7f00000-0x7f0000f lies outside the guest's RAM/);
    const wrapping = fakeElf({ segments: [{ paddr: 0xffff_f000, data: CODE, memsz: 0x2000 }], entry: 0xffff_f00c });
    expect(() => boot(64 * MIB, wrapping)).toThrow(/lies outside the guest's RAM/);
  });

  it('a segment over the multiboot information, the boot GDT, the IVT and BDA, or the BIOS area', () => {
    expect(() => boot(64 * MIB, fakeElf({ segments: [{ paddr: 0x8_f000, data: CODE, memsz: 0x2000 }], entry: 0x8_f00c })))
      .toThrow(/overlaps the multiboot information/);
    expect(() => boot(64 * MIB, fakeElf({ segments: [{ paddr: 0x500, data: CODE, memsz: 0x1000 }], entry: 0x50c })))
      .toThrow(/overlaps the boot GDT/);
    expect(() => boot(64 * MIB, fakeElf({ segments: [{ paddr: 0, data: CODE, memsz: 0x1000 }], entry: 0xc })))
      .toThrow(/segment 0x0-0x1000 overlaps the real-mode IVT and BIOS data area at 0x0-0x500/);
    expect(() => boot(64 * MIB, fakeElf({ segments: [{ paddr: 0xf_0000, data: CODE }], entry: 0xf_000c })))
      .toThrow(/overlaps the EBDA and BIOS area \(MP and ACPI tables, interrupt handlers\) at 0x9fc00-0x100000/);
  });

  it('an entry point in none of the segments', () => {
    expect(() => boot(64 * MIB, fakeElf({ segments: code, entry: 0x50_0000 }))).toThrow(/entry point 0x500000 is in none of its segments/);
    const aout = Buffer.concat([multibootHeader(0x1_0000, [0x20_0000, 0x20_0000, 0, 0, 0x30_0000]), CODE]);
    expect(() => boot(64 * MIB, aout)).toThrow(/multiboot entry 0x300000 is in nothing it loads/);
  });

  it('a required video mode, and an a.out kludge whose fields are missing or inconsistent', () => {
    expect(() => boot(64 * MIB, fakeElf({ segments: code, entry: 0x40_000c, flags: 0x4 }))).toThrow(/requires a video mode \(flag bit 2\)/);
    expect(() => boot(64 * MIB, multibootHeader(0x1_0000))).toThrow(/ends before its address fields/);
    const behind = multibootHeader(0x1_0000, [0x20_0000, 0x20_0100, 0, 0, 0x20_0100]);
    expect(() => boot(64 * MIB, behind)).toThrow(/load_addr 0x200100 does not fit header_addr 0x200000/);
    const pastFile = multibootHeader(0x1_0000, [0x20_0000, 0x20_0000, 0x20_1000, 0, 0x20_0000]);
    expect(() => boot(64 * MIB, pastFile)).toThrow(/load_end_addr 0x201000 lies outside the 32-byte file/);
  });

  it('a module that does not fit in RAM above the kernel', () => {
    expect(() => boot(8 * MIB, fakeElf({ segments: code, entry: 0x40_000c }), { initrd: Buffer.alloc(4 * MIB), initrdSource: 'big' }))
      .toThrow(/^big \(4194304 bytes\) does not fit/);
  });

  it('a 32-bit ELF file without a multiboot header is named as such, not as a bad vmlinux', () => {
    const kernel = fakeElf({ segments: code, entry: 0x40_0000, header: false });
    expect(findMultibootHeader(kernel)).toBeNull();
    const { ram, memory } = guest(64 * MIB);
    expect(() => bootLinux(memory, { kernel, kernelSource: 'k', cmdline: '', ram }, POWER_ON_STATE))
      .toThrow('k: a 32-bit ELF file without a multiboot header; tsvmm boots a Linux bzImage, a 64-bit ELF vmlinux, or a multiboot v1 kernel');
  });
});

describe('tsvmm run -k with a multiboot kernel', () => {
  it("-p reaches the kernel as its own arguments, without tsvmm's Linux console settings", () => {
    const config = configFromOptions({ kernel: 'x86/msr.flat', append: 'arg1 arg2' });
    expect(config.linux).toMatchObject({ kernel: 'x86/msr.flat', args: 'arg1 arg2' });
    expect(config.linux!.cmdline).toMatch(/^console=ttyS0 .* arg1 arg2$/); // what a Linux kernel gets instead
    expect(configFromOptions({ kernel: 'x86/msr.flat' }).linux!.args).toBeUndefined();
  });

  it.skipIf(!hasKvm)('mbinfo: EAX is the loader magic, and EBX has mem_upper, the cmdline, the mmap and module 0', () => {
    const kernel = multibootFirmwarePath('mbinfo');
    const initrd = join(scratch, 'module.bin');
    writeFileSync(initrd, 'a module of 21 bytes\n');
    const r = tsvmm(['run', '-k', kernel, '-p', 'arg1 arg2', '--initrd', initrd, '--mem', '64M']);
    expect(r.stdout).toBe([
      'multiboot eax=ok',
      `mem_lower=639 mem_upper=${63 * 1024}`,
      `cmdline=${kernel} arg1 arg2`,
      'mmap 0000000000000000 000000000009fc00 1',
      'mmap 000000000009fc00 0000000000060400 2',
      'mmap 0000000000100000 0000000003f00000 1',
      `module 00000015 ${initrd}`,
      '',
    ].join('\n'));
    expect(r.status).toBe(1); // isa-debug-exit with v = 0
  });

  it.skipIf(!hasKvm)('a 64-bit ELF with a multiboot header and no a.out kludge: one line on stderr, status 2', () => {
    const path = join(scratch, 'mb64.elf');
    writeFileSync(path, fakeElf({ segments: [{ paddr: 0x40_0000, data: CODE }], entry: 0x40_000c, elfClass: 2 }));
    const r = tsvmm(['run', '-k', path]);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(`tsvmm: ${path}: a 64-bit ELF file with a multiboot header but no a.out kludge (flag bit 16): multiboot loads ELF files only as 32-bit ELF\n`);
  });
});
