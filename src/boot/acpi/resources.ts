// Resource descriptors (ACPI 6.5 §6.4, "Resource Data Types for ACPI"): the
// bytes inside a ResourceTemplate () buffer, as _CRS returns them. Only the
// kinds tsvmm's DSDT describes.
import { InputError } from '../../errors.ts';
import { buffer, type Aml } from './aml.ts';

// Small items: tag byte = type << 3 | length; large items: 0x80 | type, then a 16-bit length.
const IO_PORT_DESCRIPTOR = 0x47; // small, type 0x08, 7 bytes
const END_TAG = 0x79; // small, type 0x0f, 1 byte (the checksum)
const MEMORY32_FIXED = 0x86; // large, type 0x06
const EXTENDED_INTERRUPT = 0x89; // large, type 0x09
const DWORD_ADDRESS_SPACE = 0x87; // large, type 0x07
const WORD_ADDRESS_SPACE = 0x88; // large, type 0x08

/** Resource Type of an address space descriptor (§6.4.3.5, table 6.48). */
const AddressSpaceType = { MEMORY: 0, IO: 1, BUS_NUMBER: 2 } as const;
/**
 * General flags of a bridge's window: a producer (what the bridge decodes
 * for the devices behind it) with a fixed minimum and maximum (_MIF, _MAF).
 */
const WINDOW_FLAGS = 0x0c;
/** I/O type-specific flags: _RNG = 3, ISA and non-ISA ports. */
const IO_ENTIRE_RANGE = 0x03;
/** Memory type-specific flags: read/write, non-cacheable. */
const MEMORY_READ_WRITE = 0x01;

function u16(value: number): number[] {
  return [value & 0xff, (value >> 8) & 0xff];
}

function u32(value: number): number[] {
  return [value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, (value >>> 24) & 0xff];
}

function checkRange(what: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 0 || value > max) throw new InputError(`${what} ${value} is outside 0..0x${max.toString(16)}`);
}

export interface InterruptOptions {
  /** Edge- (true) or level-triggered. */
  edge: boolean;
  activeLow: boolean;
  shared: boolean;
}

/**
 * Interrupt (ResourceConsumer, Edge|Level, ActiveHigh|ActiveLow,
 * Exclusive|Shared) { gsi }: the Extended Interrupt Descriptor (§6.4.3.6)
 * with one interrupt and no resource source.
 */
export function interrupt(gsi: number, options: InterruptOptions): number[] {
  checkRange('interrupt', gsi, 0xffff_ffff);
  const flags = 0x01 /* consumer */ | (options.edge ? 0x02 : 0) | (options.activeLow ? 0x04 : 0) | (options.shared ? 0x08 : 0);
  const body = [flags, 1, ...u32(gsi)];
  return [EXTENDED_INTERRUPT, ...u16(body.length), ...body];
}

/** IO (Decode16, min, max, alignment, length): the I/O Port Descriptor (§6.4.2.5). */
export function ioPorts(min: number, max: number, alignment: number, length: number): number[] {
  checkRange('I/O port', min, 0xffff);
  checkRange('I/O port', max, 0xffff);
  checkRange('I/O alignment', alignment, 0xff);
  checkRange('I/O length', length, 0xff);
  return [IO_PORT_DESCRIPTOR, 0x01 /* 16-bit decode */, ...u16(min), ...u16(max), alignment, length];
}

/** Memory32Fixed (ReadWrite|ReadOnly, base, length): §6.4.3.4. */
export function memory32Fixed(writable: boolean, base: number, length: number): number[] {
  checkRange('memory base', base, 0xffff_ffff);
  checkRange('memory length', length, 0xffff_ffff);
  const body = [writable ? 0x01 : 0x00, ...u32(base), ...u32(length)];
  return [MEMORY32_FIXED, ...u16(body.length), ...body];
}

/** A window a bridge forwards (WordBusNumber, WordIO: ResourceProducer, MinFixed, MaxFixed, no translation), §6.4.3.5.3. */
function wordWindow(type: number, typeFlags: number, min: number, max: number): number[] {
  checkRange('window start', min, 0xffff);
  checkRange('window end', max, 0xffff);
  if (max < min) throw new InputError(`window 0x${min.toString(16)}-0x${max.toString(16)} ends before it starts`);
  const body = [type, WINDOW_FLAGS, typeFlags, ...u16(0), ...u16(min), ...u16(max), ...u16(0), ...u16(max - min + 1)];
  return [WORD_ADDRESS_SPACE, ...u16(body.length), ...body];
}

/** WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, min, max, 0, count). */
export function busNumbers(min: number, max: number): number[] {
  checkRange('bus number', max, 0xff);
  return wordWindow(AddressSpaceType.BUS_NUMBER, 0, min, max);
}

/** WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, 0, min, max, 0, length). */
export function ioWindow(min: number, max: number): number[] {
  return wordWindow(AddressSpaceType.IO, IO_ENTIRE_RANGE, min, max);
}

/** DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite, 0, min, max, 0, length): §6.4.3.5.2. */
export function memoryWindow(min: number, max: number): number[] {
  checkRange('window start', min, 0xffff_ffff);
  checkRange('window end', max, 0xffff_ffff);
  if (max < min) throw new InputError(`window 0x${min.toString(16)}-0x${max.toString(16)} ends before it starts`);
  const body = [AddressSpaceType.MEMORY, WINDOW_FLAGS, MEMORY_READ_WRITE, ...u32(0), ...u32(min), ...u32(max), ...u32(0), ...u32(max - min + 1)];
  return [DWORD_ADDRESS_SPACE, ...u16(body.length), ...body];
}

/**
 * ResourceTemplate () { descriptors }: a Buffer of the descriptors and an
 * End Tag. A checksum byte of 0 means "the sum is not checked" (§6.4.2.9),
 * which is what iasl emits too.
 */
export function resourceTemplate(descriptors: readonly Aml[]): number[] {
  return buffer([...descriptors.flat(), END_TAG, 0]);
}
