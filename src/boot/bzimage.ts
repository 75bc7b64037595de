// bzImage: the x86 Linux boot protocol's image format (Documentation/arch/x86/boot.rst).
// A real-mode setup part with the setup header at 0x1f1, then the
// protected-mode kernel. tsvmm skips the real-mode part and enters the kernel
// through its 64-bit entry point.
import { InputError } from '../errors.ts';

/** Offsets in the image (and in boot_params, which embeds the same header). */
export const SetupHeader = {
  SETUP_SECTS: 0x1f1,
  SYSSIZE: 0x1f4,
  BOOT_FLAG: 0x1fe,
  JUMP: 0x200,
  HEADER: 0x202,
  VERSION: 0x206,
  TYPE_OF_LOADER: 0x210,
  LOADFLAGS: 0x211,
  CODE32_START: 0x214,
  RAMDISK_IMAGE: 0x218,
  RAMDISK_SIZE: 0x21c,
  HEAP_END_PTR: 0x224,
  CMD_LINE_PTR: 0x228,
  INITRD_ADDR_MAX: 0x22c,
  KERNEL_ALIGNMENT: 0x230,
  RELOCATABLE_KERNEL: 0x234,
  XLOADFLAGS: 0x236,
  CMDLINE_SIZE: 0x238,
  PREF_ADDRESS: 0x258,
  INIT_SIZE: 0x260,
} as const;

export const HDRS_MAGIC = 0x5372_6448; // "HdrS"
export const LOADED_HIGH = 0x01;
export const XLF_KERNEL_64 = 0x01;
/** 2.06: cmdline_size exists; 2.12: xloadflags (and so the 64-bit entry flag). */
export const MIN_VERSION = 0x0206;
export const ENTRY_64_OFFSET = 0x200;

export interface BzImage {
  version: number;
  /** The setup header as it sits in the file, from 0x1f1 to its end. */
  header: Uint8Array;
  protectedMode: Uint8Array;
  initrdAddrMax: number;
  cmdlineSize: number;
  prefAddress: number;
  initSize: number;
  relocatable: boolean;
  kernelAlignment: number;
}

function versionText(v: number): string {
  return `${v >> 8}.${(v & 0xff).toString().padStart(2, '0')}`;
}

export function looksLikeBzImage(image: Uint8Array): boolean {
  return image.length >= 0x210 && Buffer.from(image.buffer, image.byteOffset, image.length).readUInt32LE(SetupHeader.HEADER) === HDRS_MAGIC;
}

export function parseBzImage(image: Uint8Array, source: string): BzImage {
  const b = Buffer.from(image.buffer, image.byteOffset, image.length);
  if (b.length < 0x270) throw new InputError(`${source}: truncated bzImage (${b.length} bytes, smaller than its setup header)`);
  if (b.readUInt32LE(SetupHeader.HEADER) !== HDRS_MAGIC) throw new InputError(`${source}: not a bzImage (no "HdrS" setup header)`);
  if (b.readUInt16LE(SetupHeader.BOOT_FLAG) !== 0xaa55) throw new InputError(`${source}: bzImage boot flag is not 0xAA55`);
  const version = b.readUInt16LE(SetupHeader.VERSION);
  if (version < MIN_VERSION) throw new InputError(`${source}: boot protocol ${versionText(version)} is too old (tsvmm needs 2.06 or later)`);
  if (!(b[SetupHeader.LOADFLAGS]! & LOADED_HIGH)) throw new InputError(`${source}: a zImage (loads low); tsvmm boots only bzImage kernels`);
  if (version < 0x020c || !(b.readUInt16LE(SetupHeader.XLOADFLAGS) & XLF_KERNEL_64)) {
    throw new InputError(`${source}: the kernel has no 64-bit entry point (not an x86-64 kernel, or boot protocol ${versionText(version)} < 2.12)`);
  }
  const setupSectors = b[SetupHeader.SETUP_SECTS] || 4;
  const protectedStart = (setupSectors + 1) * 512;
  const protectedSize = b.readUInt32LE(SetupHeader.SYSSIZE) * 16;
  if (protectedStart + protectedSize > b.length) {
    throw new InputError(`${source}: truncated bzImage (${b.length} bytes, the header says ${protectedStart + protectedSize})`);
  }
  const headerEnd = 0x202 + b[0x201]!;
  return {
    version,
    header: image.subarray(SetupHeader.SETUP_SECTS, headerEnd),
    protectedMode: image.subarray(protectedStart, protectedStart + protectedSize),
    initrdAddrMax: b.readUInt32LE(SetupHeader.INITRD_ADDR_MAX),
    cmdlineSize: b.readUInt32LE(SetupHeader.CMDLINE_SIZE),
    prefAddress: Number(b.readBigUInt64LE(SetupHeader.PREF_ADDRESS)),
    initSize: b.readUInt32LE(SetupHeader.INIT_SIZE),
    relocatable: b[SetupHeader.RELOCATABLE_KERNEL] !== 0,
    kernelAlignment: b.readUInt32LE(SetupHeader.KERNEL_ALIGNMENT),
  };
}
