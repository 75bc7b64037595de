// The CPU state a Linux kernel expects at its entry points, built by the VMM
// instead of a bootloader: a flat GDT, identity page tables for the 64-bit
// entry, and the segment and control registers for 64-bit, PVH or multiboot
// (both 32-bit) entry.
import type { GuestMemory } from '../memory/index.ts';
import type { Registers, Segment, SpecialRegisters } from '../kvm/index.ts';
import { BootLayout } from '../layout.ts';

/** GDT selectors. 0x10/0x18 are the boot protocol's __BOOT_CS/__BOOT_DS. */
export const Selector = { CODE32: 0x08, CODE64: 0x10, DATA: 0x18 } as const;

// Descriptors: base 0, limit 4 GiB (G=1), present, ring 0.
const GDT_ENTRIES = [
  0n, // null
  0x00cf_9b00_0000_ffffn, // 0x08: 32-bit code, execute/read
  0x00af_9b00_0000_ffffn, // 0x10: 64-bit code (L=1), execute/read
  0x00cf_9300_0000_ffffn, // 0x18: data, read/write
];

const CR0_PE = 0x1n;
const CR0_ET = 0x10n;
const CR0_PG = 0x8000_0000n;
const CR4_PAE = 0x20n;
const EFER_LME = 0x100n;
const EFER_LMA = 0x400n;

/** Pages mapped by the 64-bit entry's identity map: 4 GiB in 2 MiB pages. */
const IDENTITY_MAPPED_GIB = 4;

export function writeGdtAndIdt(memory: GuestMemory): void {
  GDT_ENTRIES.forEach((entry, i) => memory.writeU64(BootLayout.GDT + i * 8, entry));
  memory.writeU64(BootLayout.IDT, 0n);
}

/** Identity map of the first 4 GiB with 2 MiB pages, for the 64-bit entry. */
export function writeIdentityPageTables(memory: GuestMemory): void {
  const PRESENT_WRITABLE = 0x3n;
  const LARGE_PAGE = 0x80n;
  memory.writeU64(BootLayout.PML4, BigInt(BootLayout.PDPT) | PRESENT_WRITABLE);
  for (let gib = 0; gib < IDENTITY_MAPPED_GIB; gib++) {
    const directory = BootLayout.PAGE_DIRECTORIES + gib * 0x1000;
    memory.writeU64(BootLayout.PDPT + gib * 8, BigInt(directory) | PRESENT_WRITABLE);
    for (let i = 0; i < 512; i++) {
      const address = BigInt(gib) * 0x4000_0000n + BigInt(i) * 0x20_0000n;
      memory.writeU64(directory + i * 8, address | PRESENT_WRITABLE | LARGE_PAGE);
    }
  }
}

function flatSegment(template: Segment, selector: number, kind: 'code32' | 'code64' | 'data'): Segment {
  return {
    ...template,
    base: 0n,
    limit: 0xffff_ffff,
    selector,
    type: kind === 'data' ? 0x3 : 0xb, // read/write data, or execute/read code; accessed
    present: 1,
    dpl: 0,
    db: kind === 'code64' ? 0 : 1,
    s: 1,
    l: kind === 'code64' ? 1 : 0,
    g: 1,
    avl: 0,
    unusable: 0,
  };
}

function withFlatSegments(sregs: SpecialRegisters, code: 'code32' | 'code64'): SpecialRegisters {
  const data = (s: Segment) => flatSegment(s, Selector.DATA, 'data');
  return {
    ...sregs,
    cs: flatSegment(sregs.cs, code === 'code64' ? Selector.CODE64 : Selector.CODE32, code),
    ds: data(sregs.ds), es: data(sregs.es), fs: data(sregs.fs), gs: data(sregs.gs), ss: data(sregs.ss),
    gdt: { base: BigInt(BootLayout.GDT), limit: GDT_ENTRIES.length * 8 - 1 },
    idt: { base: BigInt(BootLayout.IDT), limit: 7 },
  };
}

export interface EntryState {
  regs: Registers;
  sregs: SpecialRegisters;
}

/** The 64-bit boot protocol entry: long mode, paging on, RSI = boot_params. */
export function longModeEntry(reset: EntryState, entry: number, bootParams: number): EntryState {
  const sregs = withFlatSegments(reset.sregs, 'code64');
  return {
    regs: { ...reset.regs, rip: BigInt(entry), rsi: BigInt(bootParams), rflags: 0x2n, rsp: 0n, rbp: 0n },
    sregs: {
      ...sregs,
      cr0: (sregs.cr0 | CR0_PE | CR0_PG | CR0_ET) & ~0x6000_0000n, // caches on (CD, NW clear)
      cr3: BigInt(BootLayout.PML4),
      cr4: sregs.cr4 | CR4_PAE,
      efer: sregs.efer | EFER_LME | EFER_LMA,
    },
  };
}

/** 32-bit protected mode with paging off and flat 4 GiB segments, EBX = `ebx`, interrupts off. */
function protectedModeEntry(reset: EntryState, entry: number, ebx: number): EntryState {
  const sregs = withFlatSegments(reset.sregs, 'code32');
  return {
    regs: { ...reset.regs, rip: BigInt(entry), rbx: BigInt(ebx), rflags: 0x2n, rsp: 0n, rbp: 0n },
    sregs: { ...sregs, cr0: (CR0_PE | CR0_ET), cr3: 0n, cr4: 0n, efer: 0n },
  };
}

/** The PVH entry (x86/HVM direct boot ABI): 32-bit protected mode, paging off, EBX = hvm_start_info. */
export function pvhEntry(reset: EntryState, entry: number, startInfo: number): EntryState {
  return protectedModeEntry(reset, entry, startInfo);
}

/** What EAX holds at a multiboot v1 entry: how the kernel knows a multiboot loader started it. */
export const MULTIBOOT_BOOTLOADER_MAGIC = 0x2bad_b002;

/** The multiboot v1 entry (§3.2): as PVH's, with EAX = the loader magic and EBX = the multiboot information. */
export function multibootEntry(reset: EntryState, entry: number, info: number): EntryState {
  const state = protectedModeEntry(reset, entry, info);
  return { ...state, regs: { ...state.regs, rax: BigInt(MULTIBOOT_BOOTLOADER_MAGIC) } };
}

/** CR0 after RESET (SDM vol. 3 §10.1.1): CD, NW and ET set; protection and paging off. */
const CR0_AT_RESET = 0x6000_0010n;

function realModeSegment(template: Segment, selector: number, kind: 'code' | 'data'): Segment {
  return {
    ...template,
    selector, base: BigInt(selector << 4), limit: 0xffff,
    type: kind === 'code' ? 0xb : 0x3, present: 1, dpl: 0, db: 0, s: 1, l: 0, g: 0, avl: 0, unusable: 0,
  };
}

/**
 * Real mode as after a CPU reset, entered at `segment:offset` with the other
 * segments at 0 and interrupts off: how firmware resumes an OS at its FACS
 * waking vector after S3. `current` is the vCPU's state, whatever mode it was in.
 */
export function realModeEntry(current: EntryState, segment: number, offset: number): EntryState {
  const { sregs } = current;
  const data = (s: Segment) => realModeSegment(s, 0, 'data');
  const zero = { rax: 0n, rbx: 0n, rcx: 0n, rdx: 0n, rsi: 0n, rdi: 0n, rsp: 0n, rbp: 0n, r8: 0n, r9: 0n, r10: 0n, r11: 0n, r12: 0n, r13: 0n, r14: 0n, r15: 0n };
  return {
    regs: { ...current.regs, ...zero, rip: BigInt(offset), rflags: 0x2n },
    sregs: {
      ...sregs,
      cs: realModeSegment(sregs.cs, segment, 'code'),
      ds: data(sregs.ds), es: data(sregs.es), fs: data(sregs.fs), gs: data(sregs.gs), ss: data(sregs.ss),
      gdt: { base: 0n, limit: 0xffff },
      idt: { base: 0n, limit: 0xffff },
      cr0: CR0_AT_RESET, cr2: 0n, cr3: 0n, cr4: 0n, efer: 0n,
      interrupt_bitmap: [0n, 0n, 0n, 0n], // no interrupt pending across the reset
    },
  };
}
