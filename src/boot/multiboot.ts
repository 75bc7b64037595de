// Multiboot v1 (the Multiboot Specification 0.6.96): the boot protocol of
// GRUB legacy and of QEMU's -kernel for non-Linux kernels, which is how
// kvm-unit-tests' x86/*.flat images start. The kernel carries a header in
// its first 8 KiB; it is loaded either by its ELF32 program headers or, with
// the "a.out kludge" (header flag bit 16), by the addresses in the header,
// and entered in 32-bit protected mode with paging off, EAX = 0x2BADB002 and
// EBX = the multiboot information structure (§3.3), which this file writes:
// memory sizes, the e820 map, the command line and the modules.
import type { GuestMemory } from '../memory/index.ts';
import { InputError } from '../errors.ts';
import { hex } from '../hex.ts';
import { BootLayout, type RamLayoutEntry } from '../layout.ts';
import { AcpiLayout, buildAcpiTables, type AcpiPlatform } from './acpi/index.ts';
import { multibootEntry, writeGdtAndIdt, type EntryState } from './cpu-entry.ts';
import { looksLikeElf } from './elf.ts';
import { BDA_ADDRESS, BDA_SIZE, IVT_ADDRESS, writeLegacyBios } from './legacy-bios.ts';
import { e820Map, type E820Entry } from './memory-map.ts';
import { writeMpTable } from './mptable.ts';

export const MULTIBOOT_HEADER_MAGIC = 0x1bad_b002;
export { MULTIBOOT_BOOTLOADER_MAGIC } from './cpu-entry.ts';
/** The header must lie, 32-bit aligned, wholly within the file's first 8192 bytes (§3.1.1). */
const HEADER_SEARCH_BYTES = 8192;

/** Header flags (§3.1.2). Bits 0-15 are requirements: a loader that cannot meet one must refuse the kernel. */
const HeaderFlag = { PAGE_ALIGN_MODULES: 1 << 0, MEMORY_INFO: 1 << 1, VIDEO_MODE: 1 << 2, AOUT_KLUDGE: 1 << 16 } as const;
/** What tsvmm meets: modules are always page-aligned and memory information is always given. */
const SUPPORTED_REQUIREMENTS = HeaderFlag.PAGE_ALIGN_MODULES | HeaderFlag.MEMORY_INFO;

/** Multiboot information flags (§3.3): which fields of the structure are valid. */
export const InfoFlag = { MEMORY: 1 << 0, CMDLINE: 1 << 2, MODULES: 1 << 3, MMAP: 1 << 6, BOOT_LOADER_NAME: 1 << 9 } as const;

/** Byte offsets of the multiboot information fields tsvmm fills in. */
export const InfoOffset = {
  FLAGS: 0, MEM_LOWER: 4, MEM_UPPER: 8, CMDLINE: 16, MODS_COUNT: 20, MODS_ADDR: 24,
  MMAP_LENGTH: 44, MMAP_ADDR: 48, BOOT_LOADER_NAME: 64,
} as const;
/** The structure up to and including the VBE fields of 0.6.96 (88 bytes); the rest of its slot stays zero. */
const INFO_SIZE = 88;
/** A module entry: mod_start, mod_end (exclusive), string, reserved. */
const MODULE_ENTRY_SIZE = 16;
/** An mmap entry: its size field (4), then base_addr (8), length (8), type (4); size counts what follows it. */
const MMAP_ENTRY_SIZE = 24;

const PAGE = 4096;
const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;

export interface MultibootHeader {
  /** File offset of the magic. */
  offset: number;
  flags: number;
  /** The a.out kludge's address fields, when flag bit 16 is set. */
  addresses?: { header: number; load: number; loadEnd: number; bssEnd: number; entry: number };
}

/** The multiboot header of `image`, or null when it has none (a magic with a wrong checksum is not one). */
export function findMultibootHeader(image: Uint8Array): MultibootHeader | null {
  const b = Buffer.from(image.buffer, image.byteOffset, image.length);
  const searchEnd = Math.min(b.length, HEADER_SEARCH_BYTES);
  for (let at = 0; at + 12 <= searchEnd; at += 4) {
    if (b.readUInt32LE(at) !== MULTIBOOT_HEADER_MAGIC) continue;
    const flags = b.readUInt32LE(at + 4);
    if (((MULTIBOOT_HEADER_MAGIC + flags + b.readUInt32LE(at + 8)) >>> 0) !== 0) continue;
    if (!(flags & HeaderFlag.AOUT_KLUDGE)) return { offset: at, flags };
    if (at + 32 > b.length) return { offset: at, flags }; // the caller says the address fields are missing
    return {
      offset: at, flags,
      addresses: {
        header: b.readUInt32LE(at + 12), load: b.readUInt32LE(at + 16), loadEnd: b.readUInt32LE(at + 20),
        bssEnd: b.readUInt32LE(at + 24), entry: b.readUInt32LE(at + 28),
      },
    };
  }
  return null;
}

/** One piece of the kernel to put in RAM: `data`, then zeros up to `memorySize`. */
export interface LoadSegment {
  address: number;
  data: Uint8Array;
  memorySize: number;
}

export interface MultibootImage {
  /** How it is loaded: by its ELF32 program headers, or by the header's a.out kludge addresses. */
  loadedBy: 'elf32' | 'a.out kludge';
  segments: LoadSegment[];
  entry: number;
}

/** What to load and where to enter, from a file with a multiboot header; bad input is an InputError. */
export function parseMultibootImage(image: Uint8Array, header: MultibootHeader, source: string): MultibootImage {
  const unmet = header.flags & 0xffff & ~SUPPORTED_REQUIREMENTS;
  if (unmet) {
    const what = unmet & HeaderFlag.VIDEO_MODE ? 'a video mode (flag bit 2)' : `header flags ${hex(unmet)}`;
    throw new InputError(`${source}: the multiboot kernel requires ${what}, which tsvmm does not provide`);
  }
  if (header.flags & HeaderFlag.AOUT_KLUDGE) return loadByAddresses(image, header, source);
  if (looksLikeElf(image) && image[4] === 2) {
    throw new InputError(`${source}: a 64-bit ELF file with a multiboot header but no a.out kludge (flag bit 16): multiboot loads ELF files only as 32-bit ELF`);
  }
  if (!looksLikeElf(image)) {
    throw new InputError(`${source}: a multiboot header without the a.out kludge (flag bit 16), and not an ELF file: nothing says where to load it`);
  }
  return loadElf32(image, source);
}

function loadByAddresses(image: Uint8Array, header: MultibootHeader, source: string): MultibootImage {
  const a = header.addresses;
  if (!a) throw new InputError(`${source}: the multiboot header sets the a.out kludge (flag bit 16) but ends before its address fields`);
  // header_addr is where the header itself lands: that fixes which file offset load_addr is.
  const loadOffset = header.offset - (a.header - a.load);
  if (a.load > a.header || loadOffset < 0) {
    throw new InputError(`${source}: multiboot load_addr ${hex(a.load)} does not fit header_addr ${hex(a.header)} at file offset ${hex(header.offset)}`);
  }
  const loadEnd = a.loadEnd === 0 ? a.load + (image.length - loadOffset) : a.loadEnd; // 0: the rest of the file
  if (loadEnd < a.load || loadOffset + (loadEnd - a.load) > image.length) {
    throw new InputError(`${source}: multiboot load_end_addr ${hex(a.loadEnd)} lies outside the ${image.length}-byte file`);
  }
  const bssEnd = a.bssEnd === 0 ? loadEnd : a.bssEnd; // 0: no bss
  if (bssEnd < loadEnd) throw new InputError(`${source}: multiboot bss_end_addr ${hex(a.bssEnd)} is below load_end_addr ${hex(loadEnd)}`);
  return {
    loadedBy: 'a.out kludge',
    segments: [{ address: a.load, data: image.subarray(loadOffset, loadOffset + (loadEnd - a.load)), memorySize: bssEnd - a.load }],
    entry: a.entry,
  };
}

const PT_LOAD = 1;
const EM_386 = 3;

function loadElf32(image: Uint8Array, source: string): MultibootImage {
  const b = Buffer.from(image.buffer, image.byteOffset, image.length);
  const truncated = (what: string) => new InputError(`${source}: truncated ELF file (${what} lies past its ${b.length} bytes)`);
  if (b.length < 52) throw truncated('the ELF header');
  if (b[4] !== 1 || b[5] !== 1) throw new InputError(`${source}: not a 32-bit little-endian ELF file`);
  if (b.readUInt16LE(18) !== EM_386) throw new InputError(`${source}: ELF file for machine ${b.readUInt16LE(18)}, not i386`);
  const entry = b.readUInt32LE(24);
  const phoff = b.readUInt32LE(28);
  const phentsize = b.readUInt16LE(42);
  const phnum = b.readUInt16LE(44);
  if (phentsize < 32 || phoff + phnum * phentsize > b.length) throw truncated('the program header table');

  const segments: (LoadSegment & { virtualAddress: number })[] = [];
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (b.readUInt32LE(at) !== PT_LOAD) continue;
    const offset = b.readUInt32LE(at + 4);
    const virtualAddress = b.readUInt32LE(at + 8);
    const address = b.readUInt32LE(at + 12);
    const filesz = b.readUInt32LE(at + 16);
    const memsz = b.readUInt32LE(at + 20);
    if (offset + filesz > b.length) throw truncated(`segment ${i}`);
    if (memsz < filesz) throw new InputError(`${source}: segment ${i} has a memory size smaller than its file size`);
    if (memsz > 0) segments.push({ address, virtualAddress, data: image.subarray(offset, offset + filesz), memorySize: memsz });
  }
  if (segments.length === 0) throw new InputError(`${source}: ELF file has nothing to load (no PT_LOAD segment)`);
  // Segments load at their physical addresses; e_entry is virtual, so it moves with its segment.
  const home = segments.find((s) => entry >= s.virtualAddress && entry < s.virtualAddress + s.memorySize);
  if (!home) throw new InputError(`${source}: its entry point ${hex(entry)} is in none of its segments`);
  return {
    loadedBy: 'elf32',
    segments: segments.map(({ address, data, memorySize }) => ({ address, data, memorySize })),
    entry: home.address + (entry - home.virtualAddress),
  };
}

export interface MultibootRequest {
  kernel: Uint8Array;
  /** The kernel's file name: the first word of its command line (QEMU passes it so). */
  kernelSource: string;
  /** The user's arguments, after the file name. */
  args: string;
  /** Becomes module 0, its string the file name. */
  initrd?: Uint8Array;
  initrdSource?: string;
  ram: readonly RamLayoutEntry[];
  /** ACPI tables and an MP table, as for Linux: what kvm-unit-tests finds its CPUs, IOAPIC and PM timer by. */
  acpi?: AcpiPlatform;
  cpus?: number;
}

export interface MultibootPlan {
  loadedBy: MultibootImage['loadedBy'];
  entry: number;
  kernelRange: { start: number; end: number };
  info: number;
  cmdline: string;
  module?: { start: number; end: number };
  e820: E820Entry[];
}

/** The region below the EBDA that holds the info structure, its tables and its strings. */
const infoRegion = { start: BootLayout.MULTIBOOT_INFO, end: BootLayout.EBDA_START };
/** What boot structures of tsvmm's a kernel segment may not cover. */
const RESERVED_LOW = [
  { start: IVT_ADDRESS, end: BDA_ADDRESS + BDA_SIZE, what: 'the real-mode IVT and BIOS data area' },
  { start: BootLayout.GDT, end: BootLayout.IDT + 8, what: 'the boot GDT' },
  { ...infoRegion, what: 'the multiboot information' },
  { start: BootLayout.EBDA_START, end: BootLayout.HIGH_MEMORY, what: 'the EBDA and BIOS area (MP and ACPI tables, interrupt handlers)' },
];

/** Loads a multiboot kernel, writes its information structure, and returns the CPU state at its entry. */
export function bootMultiboot(
  memory: GuestMemory, request: MultibootRequest, header: MultibootHeader, reset: EntryState,
): { state: EntryState; plan: MultibootPlan } {
  const { kernelSource } = request;
  const image = parseMultibootImage(request.kernel, header, kernelSource);
  const lowRamEnd = request.ram[0]!.guestAddress + request.ram[0]!.size;

  for (const s of image.segments) {
    const end = s.address + s.memorySize;
    if (end > lowRamEnd || !memory.contains(s.address, s.memorySize)) {
      throw new InputError(`${kernelSource}: segment ${hex(s.address)}-${hex(end)} lies outside the guest's RAM (${hex(lowRamEnd)} below the MMIO gap); give it more --mem or check its link address`);
    }
    for (const r of RESERVED_LOW) {
      if (s.address < r.end && end > r.start) {
        throw new InputError(`${kernelSource}: segment ${hex(s.address)}-${hex(end)} overlaps ${r.what} at ${hex(r.start)}-${hex(r.end)}`);
      }
    }
  }
  if (!image.segments.some((s) => image.entry >= s.address && image.entry < s.address + s.memorySize)) {
    throw new InputError(`${kernelSource}: its multiboot entry ${hex(image.entry)} is in nothing it loads`);
  }
  for (const s of image.segments) {
    memory.write(s.address, s.data);
    memory.fill(s.address + s.data.length, s.memorySize - s.data.length, 0);
  }
  const kernelStart = Math.min(...image.segments.map((s) => s.address));
  const kernelEnd = Math.max(...image.segments.map((s) => s.address + s.memorySize));

  // Module 0 above the kernel's end (and above 1 MiB, clear of low memory), page-aligned.
  let module: MultibootPlan['module'];
  if (request.initrd) {
    const start = alignUp(Math.max(kernelEnd, BootLayout.HIGH_MEMORY), PAGE);
    const end = start + request.initrd.length;
    if (end > lowRamEnd) {
      throw new InputError(`${request.initrdSource ?? 'initrd'} (${request.initrd.length} bytes) does not fit between the kernel's end at ${hex(kernelEnd)} and ${hex(lowRamEnd)}; give the guest more --mem`);
    }
    memory.write(start, request.initrd);
    module = { start, end };
  }

  const e820 = e820Map(request.ram);
  const cmdline = request.args ? `${kernelSource} ${request.args}` : kernelSource;
  const strings = new StringArea(memory, BootLayout.MULTIBOOT_STRINGS, infoRegion.end);
  const cmdlineAddress = strings.add(cmdline, 'the multiboot command line');
  const loaderNameAddress = strings.add('tsvmm', 'the boot loader name');

  const info = Buffer.alloc(INFO_SIZE);
  let flags = InfoFlag.MEMORY | InfoFlag.CMDLINE | InfoFlag.MMAP | InfoFlag.BOOT_LOADER_NAME;
  // mem_lower: KiB of conventional memory; mem_upper: KiB from 1 MiB to the first hole (§3.3).
  info.writeUInt32LE(BootLayout.EBDA_START / 1024, InfoOffset.MEM_LOWER);
  info.writeUInt32LE(Math.max(0, lowRamEnd - BootLayout.HIGH_MEMORY) / 1024, InfoOffset.MEM_UPPER);
  info.writeUInt32LE(cmdlineAddress, InfoOffset.CMDLINE);
  if (module) {
    flags |= InfoFlag.MODULES;
    const entry = Buffer.alloc(MODULE_ENTRY_SIZE);
    entry.writeUInt32LE(module.start, 0);
    entry.writeUInt32LE(module.end, 4);
    entry.writeUInt32LE(strings.add(request.initrdSource ?? 'initrd', 'the module name'), 8);
    memory.write(BootLayout.MULTIBOOT_MODULES, entry);
    info.writeUInt32LE(1, InfoOffset.MODS_COUNT);
    info.writeUInt32LE(BootLayout.MULTIBOOT_MODULES, InfoOffset.MODS_ADDR);
  }
  const mmap = Buffer.alloc(e820.length * MMAP_ENTRY_SIZE);
  e820.forEach((e, i) => {
    mmap.writeUInt32LE(MMAP_ENTRY_SIZE - 4, i * MMAP_ENTRY_SIZE);
    mmap.writeBigUInt64LE(BigInt(e.address), i * MMAP_ENTRY_SIZE + 4);
    mmap.writeBigUInt64LE(BigInt(e.size), i * MMAP_ENTRY_SIZE + 12);
    mmap.writeUInt32LE(e.type, i * MMAP_ENTRY_SIZE + 20);
  });
  if (BootLayout.MULTIBOOT_MMAP + mmap.length > BootLayout.MULTIBOOT_STRINGS) throw new InputError(`the memory map has too many entries (${e820.length})`);
  memory.write(BootLayout.MULTIBOOT_MMAP, mmap);
  info.writeUInt32LE(mmap.length, InfoOffset.MMAP_LENGTH);
  info.writeUInt32LE(BootLayout.MULTIBOOT_MMAP, InfoOffset.MMAP_ADDR);
  info.writeUInt32LE(loaderNameAddress, InfoOffset.BOOT_LOADER_NAME);
  info.writeUInt32LE(flags, InfoOffset.FLAGS);
  memory.write(BootLayout.MULTIBOOT_INFO, info);

  if (request.acpi) {
    const acpi = buildAcpiTables(request.acpi, AcpiLayout.TABLES_ADDRESS, AcpiLayout.TABLES_MAX_SIZE);
    memory.write(acpi.rsdpAddress, acpi.image);
  }
  if (request.cpus !== undefined) writeMpTable(memory, request.cpus, request.acpi);
  writeGdtAndIdt(memory);
  writeLegacyBios(memory);

  return {
    state: multibootEntry(reset, image.entry, BootLayout.MULTIBOOT_INFO),
    plan: {
      loadedBy: image.loadedBy, entry: image.entry, kernelRange: { start: kernelStart, end: kernelEnd },
      info: BootLayout.MULTIBOOT_INFO, cmdline, ...(module ? { module } : {}), e820,
    },
  };
}

/** NUL-terminated strings packed upwards from `next`, refusing any that would pass `end`. */
class StringArea {
  constructor(private readonly memory: GuestMemory, private next: number, private readonly end: number) {}

  add(text: string, what: string): number {
    const bytes = Buffer.concat([Buffer.from(text, 'latin1'), Buffer.of(0)]);
    if (this.next + bytes.length > this.end) {
      throw new InputError(`${what} is ${bytes.length - 1} bytes; with the other multiboot strings it must fit in ${this.end - BootLayout.MULTIBOOT_STRINGS - 1}`);
    }
    const address = this.next;
    this.memory.write(address, bytes);
    this.next += bytes.length;
    return address;
  }
}
