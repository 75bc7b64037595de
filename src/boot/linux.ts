// Booting Linux: put the kernel, its command line, its initrd and the boot
// structures into guest RAM, and compute the CPU state at the kernel's entry.
// A vmlinux with a PVH note enters through PVH (what PVM hosts need, see
// docs/pvm.md); a bzImage, or a vmlinux without one, through the 64-bit entry.
// The ACPI tables, when the machine has them, go to the BIOS area, and both
// entries tell the kernel where their RSDP is; the MP table goes to the EBDA.
import type { GuestMemory } from '../memory/index.ts';
import { AcpiLayout, buildAcpiTables, type AcpiPlatform, type AcpiTables } from './acpi/index.ts';
import { writeBootParams } from './boot-params.ts';
import { ENTRY_64_OFFSET, looksLikeBzImage, parseBzImage } from './bzimage.ts';
import { longModeEntry, pvhEntry, writeGdtAndIdt, writeIdentityPageTables, type EntryState } from './cpu-entry.ts';
import { looksLikeElf, parseElfKernel, physicalEntry } from './elf.ts';
import { writeMpTable } from './mptable.ts';
import { InputError } from '../errors.ts';
import { hex } from '../hex.ts';
import { e820Map, type E820Entry } from './memory-map.ts';
import { BootLayout, type RamLayoutEntry } from '../layout.ts';
import { writeStartInfo } from './pvh.ts';

export interface LinuxBootRequest {
  kernel: Uint8Array;
  kernelSource: string;
  initrd?: Uint8Array;
  initrdSource?: string;
  cmdline: string;
  ram: readonly RamLayoutEntry[];
  /** The platform the ACPI tables describe; without it the guest gets no tables. */
  acpi?: AcpiPlatform;
  /**
   * The number of vCPUs the MP table lists (a kernel booted with acpi=off,
   * or built without ACPI, finds its CPUs there); without it, no MP table.
   */
  cpus?: number;
}

export interface LinuxBootPlan {
  format: 'bzImage' | 'vmlinux';
  entryKind: '64-bit' | 'PVH';
  entry: number;
  kernelRange: { start: number; end: number };
  initrd?: { address: number; size: number };
  cmdline: string;
  e820: E820Entry[];
  /** Where the ACPI tables went, when the machine has them. */
  acpi?: AcpiTables['tables'];
  /** Where the MP table's floating pointer and configuration table went. */
  mpTable?: { floatingPointer: number; configTable: number; configLength: number };
}

/** What --kernel takes, for the message that refuses anything else (the builder finds multiboot kernels before Linux's). */
const BOOTABLE_FORMATS = 'tsvmm boots a Linux bzImage, a 64-bit ELF vmlinux, or a multiboot v1 kernel';

const PAGE = 4096;
const DEFAULT_CMDLINE_MAX = 2048;
const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;
const alignDown = (n: number, a: number) => Math.floor(n / a) * a;

function mib(n: number): string {
  return `${(n / 2 ** 20).toFixed(1)} MiB`;
}

export function bootLinux(memory: GuestMemory, request: LinuxBootRequest, reset: EntryState): { state: EntryState; plan: LinuxBootPlan } {
  const { kernel, kernelSource } = request;
  if (kernel.length === 0) throw new InputError(`${kernelSource} is empty`);
  const lowRamEnd = request.ram[0]!.guestAddress + request.ram[0]!.size;
  const e820 = e820Map(request.ram);

  let format: LinuxBootPlan['format'];
  let entryKind: LinuxBootPlan['entryKind'];
  let entry: number;
  let kernelStart: number;
  let kernelEnd: number;
  let setupHeader: Uint8Array | null = null;
  let cmdlineMax = DEFAULT_CMDLINE_MAX;
  let initrdAddrMax = 0x7fff_ffff;

  const fits = (start: number, length: number, what: string) => {
    if (start < BootLayout.HIGH_MEMORY || start + length > lowRamEnd) {
      throw new InputError(`${what} needs guest RAM ${hex(start)}-${hex(start + length)}, but the guest has ${mib(lowRamEnd)} below the MMIO gap; give it more --mem`);
    }
  };

  if (looksLikeElf(kernel)) {
    if (kernel[4] === 1) throw new InputError(`${kernelSource}: a 32-bit ELF file without a multiboot header; ${BOOTABLE_FORMATS}`);
    const elf = parseElfKernel(kernel, kernelSource);
    format = 'vmlinux';
    kernelStart = Math.min(...elf.segments.map((s) => s.physicalAddress));
    kernelEnd = Math.max(...elf.segments.map((s) => s.physicalAddress + s.memorySize));
    for (const s of elf.segments) {
      fits(s.physicalAddress, s.memorySize, `${kernelSource} (segment at ${hex(s.physicalAddress)})`);
      memory.write(s.physicalAddress, s.data);
      memory.fill(s.physicalAddress + s.data.length, s.memorySize - s.data.length, 0);
    }
    if (elf.pvhEntry !== undefined) {
      entryKind = 'PVH';
      entry = elf.pvhEntry;
    } else {
      entryKind = '64-bit';
      const physical = physicalEntry(elf);
      if (physical === undefined) throw new InputError(`${kernelSource}: its entry point is in none of its segments`);
      entry = physical;
    }
  } else if (looksLikeBzImage(kernel)) {
    const image = parseBzImage(kernel, kernelSource);
    format = 'bzImage';
    entryKind = '64-bit';
    setupHeader = image.header;
    cmdlineMax = image.cmdlineSize || DEFAULT_CMDLINE_MAX;
    initrdAddrMax = image.initrdAddrMax || initrdAddrMax;
    // A relocatable kernel may run anywhere aligned; its preferred address leaves low RAM free.
    const preferred = image.prefAddress >= BootLayout.HIGH_MEMORY ? image.prefAddress : BootLayout.HIGH_MEMORY;
    const footprint = Math.max(image.initSize, image.protectedMode.length);
    kernelStart = preferred + footprint <= lowRamEnd || !image.relocatable ? preferred : BootLayout.HIGH_MEMORY;
    kernelEnd = kernelStart + footprint;
    fits(kernelStart, footprint, `${kernelSource} (${mib(footprint)} with its decompression space)`);
    memory.write(kernelStart, image.protectedMode);
    entry = kernelStart + ENTRY_64_OFFSET;
  } else {
    throw new InputError(`${kernelSource}: no bzImage header, no ELF header and no multiboot header in its first 8 KiB; ${BOOTABLE_FORMATS}`);
  }

  const cmdlineBytes = Buffer.from(request.cmdline, 'latin1');
  if (cmdlineBytes.length >= Math.min(cmdlineMax, BootLayout.CMDLINE_MAX)) {
    throw new InputError(`kernel command line is ${cmdlineBytes.length} bytes; this kernel accepts at most ${Math.min(cmdlineMax, BootLayout.CMDLINE_MAX) - 1}`);
  }
  memory.write(BootLayout.CMDLINE, Buffer.concat([cmdlineBytes, Buffer.of(0)]));

  // The initrd goes as high as the kernel allows (initrd_addr_max) and RAM holds.
  let initrd: LinuxBootPlan['initrd'];
  if (request.initrd) {
    const size = request.initrd.length;
    if (size === 0) throw new InputError(`${request.initrdSource ?? 'initrd'} is empty`);
    const ceiling = Math.min(lowRamEnd, initrdAddrMax + 1);
    const address = alignDown(ceiling - size, PAGE);
    if (address < alignUp(kernelEnd, PAGE)) {
      throw new InputError(`${request.initrdSource ?? 'initrd'} (${mib(size)}) does not fit between the kernel's end at ${hex(kernelEnd)} and ${hex(ceiling)}; give the guest more --mem`);
    }
    memory.write(address, request.initrd);
    initrd = { address, size };
  }

  // In the e820 hole below 1 MiB (reserved, never RAM to the kernel), where a
  // PC's BIOS leaves them.
  let acpi: AcpiTables | undefined;
  if (request.acpi) {
    acpi = buildAcpiTables(request.acpi, AcpiLayout.TABLES_ADDRESS, AcpiLayout.TABLES_MAX_SIZE);
    memory.write(acpi.rsdpAddress, acpi.image);
  }
  let mpTable: LinuxBootPlan['mpTable'];
  if (request.cpus !== undefined) {
    // Its interrupt routing is the ACPI tables' when there are any, so both say the same.
    const { floatingPointer, configTable, configLength } = writeMpTable(memory, request.cpus, request.acpi);
    mpTable = { floatingPointer, configTable, configLength };
  }

  writeGdtAndIdt(memory);
  let state: EntryState;
  if (entryKind === 'PVH') {
    writeStartInfo(memory, {
      cmdlineAddress: BootLayout.CMDLINE,
      ...(initrd ? { initrd } : {}),
      memmap: e820,
      startInfoAddress: BootLayout.PVH_START_INFO,
      modlistAddress: BootLayout.PVH_MODLIST,
      memmapAddress: BootLayout.PVH_MEMMAP,
      ...(acpi ? { rsdpAddress: acpi.rsdpAddress } : {}),
    });
    state = pvhEntry(reset, entry, BootLayout.PVH_START_INFO);
  } else {
    writeIdentityPageTables(memory);
    writeBootParams(memory, BootLayout.ZERO_PAGE, {
      setupHeader, cmdlineAddress: BootLayout.CMDLINE, cmdlineSize: cmdlineMax, ...(initrd ? { initrd } : {}), e820,
      ...(acpi ? { rsdpAddress: acpi.rsdpAddress } : {}),
    });
    state = longModeEntry(reset, entry, BootLayout.ZERO_PAGE);
  }
  return {
    state,
    plan: { format, entryKind, entry, kernelRange: { start: kernelStart, end: kernelEnd }, ...(initrd ? { initrd } : {}), cmdline: request.cmdline, e820,
      ...(acpi ? { acpi: acpi.tables } : {}), ...(mpTable ? { mpTable } : {}) },
  };
}
