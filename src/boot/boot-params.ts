// boot_params, "the zero page": what the 64-bit entry of a Linux kernel reads
// to learn its command line, its initrd, the memory map and where the ACPI
// tables are.
import type { GuestMemory } from '../memory/index.ts';
import { SetupHeader, HDRS_MAGIC, LOADED_HIGH } from './bzimage.ts';
import type { E820Entry } from './memory-map.ts';

const BOOT_PARAMS_SIZE = 4096;
/** u64 acpi_rsdp_addr (boot protocol 2.14): the kernel trusts it over a scan of the BIOS area. */
const ACPI_RSDP_ADDR = 0x070;
const E820_ENTRIES = 0x1e8;
const E820_TABLE = 0x2d0;
const E820_MAX = 128;
const EXT_RAMDISK_IMAGE = 0x0c0;
const EXT_RAMDISK_SIZE = 0x0c4;
const EXT_CMD_LINE_PTR = 0x0c8;
const LOADER_UNDEFINED = 0xff;

export interface BootParamsInput {
  /** The image's setup header (bzImage); null for an ELF kernel, which has none. */
  setupHeader: Uint8Array | null;
  cmdlineAddress: number;
  cmdlineSize: number;
  initrd?: { address: number; size: number };
  e820: readonly E820Entry[];
  /** Guest-physical address of the ACPI RSDP, when the machine has tables. */
  rsdpAddress?: number;
}

export function writeBootParams(memory: GuestMemory, address: number, input: BootParamsInput): void {
  const page = Buffer.alloc(BOOT_PARAMS_SIZE);
  if (input.setupHeader) {
    page.set(input.setupHeader, SetupHeader.SETUP_SECTS);
  } else {
    // An ELF kernel has no header to copy: write the fields the kernel checks.
    page.writeUInt16LE(0xaa55, SetupHeader.BOOT_FLAG);
    page.writeUInt32LE(HDRS_MAGIC, SetupHeader.HEADER);
    page.writeUInt16LE(0x020f, SetupHeader.VERSION);
    page[SetupHeader.LOADFLAGS] = LOADED_HIGH;
    page.writeUInt32LE(0x0100_0000, SetupHeader.KERNEL_ALIGNMENT);
  }
  page[SetupHeader.TYPE_OF_LOADER] = LOADER_UNDEFINED;
  page.writeUInt32LE(input.cmdlineAddress, SetupHeader.CMD_LINE_PTR);
  page.writeUInt32LE(0, EXT_CMD_LINE_PTR);
  page.writeUInt32LE(input.cmdlineSize, SetupHeader.CMDLINE_SIZE);
  if (input.initrd) {
    page.writeUInt32LE(input.initrd.address % 0x1_0000_0000, SetupHeader.RAMDISK_IMAGE);
    page.writeUInt32LE(input.initrd.size % 0x1_0000_0000, SetupHeader.RAMDISK_SIZE);
    page.writeUInt32LE(Math.floor(input.initrd.address / 0x1_0000_0000), EXT_RAMDISK_IMAGE);
    page.writeUInt32LE(Math.floor(input.initrd.size / 0x1_0000_0000), EXT_RAMDISK_SIZE);
  }
  if (input.rsdpAddress !== undefined) page.writeBigUInt64LE(BigInt(input.rsdpAddress), ACPI_RSDP_ADDR);
  const entries = input.e820.slice(0, E820_MAX);
  page[E820_ENTRIES] = entries.length;
  entries.forEach((e, i) => {
    const at = E820_TABLE + i * 20;
    page.writeBigUInt64LE(BigInt(e.address), at);
    page.writeBigUInt64LE(BigInt(e.size), at + 8);
    page.writeUInt32LE(e.type, at + 16);
  });
  memory.write(address, page);
}
