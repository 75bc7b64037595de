// What every ACPI table shares (ACPI 6.5 §5.2): the 36-byte System
// Description Table header, the checksum that makes a table's bytes sum to
// zero, and the Generic Address Structure that points at a register.

/** The OEM fields of every table tsvmm builds. */
export const OEM_ID = 'TSVMM ';
export const CREATOR_ID = 'TSVM';
const OEM_REVISION = 1;
const CREATOR_REVISION = 1;

export const SDT_HEADER_SIZE = 36;

/** Offsets in the SDT header (§5.2.6, table 5.4). */
export const SdtHeader = {
  SIGNATURE: 0,
  LENGTH: 4,
  REVISION: 8,
  CHECKSUM: 9,
  OEM_ID: 10,
  OEM_TABLE_ID: 16,
  OEM_REVISION: 24,
  CREATOR_ID: 28,
  CREATOR_REVISION: 32,
} as const;

/** A little-endian byte writer over one table. */
export class TableBytes {
  readonly bytes: Uint8Array;
  readonly view: DataView;

  constructor(length: number) {
    this.bytes = new Uint8Array(length);
    this.view = new DataView(this.bytes.buffer);
  }

  u8(offset: number, value: number): void {
    this.view.setUint8(offset, value);
  }

  u16(offset: number, value: number): void {
    this.view.setUint16(offset, value, true);
  }

  u32(offset: number, value: number): void {
    this.view.setUint32(offset, value, true);
  }

  u64(offset: number, value: number): void {
    this.view.setBigUint64(offset, BigInt(value), true);
  }

  /** ASCII text, exactly `length` bytes (the fixed-width IDs). */
  ascii(offset: number, text: string, length: number): void {
    if (text.length !== length) throw new Error(`ACPI ID "${text}" must be ${length} characters`);
    for (let i = 0; i < length; i++) this.bytes[offset + i] = text.charCodeAt(i);
  }

  set(offset: number, data: ArrayLike<number>): void {
    this.bytes.set(data, offset);
  }
}

/** The byte that makes `bytes` sum to 0 mod 256, given its own slot holds 0. */
export function checksum(bytes: Uint8Array): number {
  let sum = 0;
  for (const b of bytes) sum = (sum + b) & 0xff;
  return (0x100 - sum) & 0xff;
}

/**
 * A table of `length` bytes with its header filled in; the caller writes the
 * body from offset 36 and then calls `sealTable`.
 */
export function newTable(signature: string, length: number, revision: number, oemTableId: string): TableBytes {
  const t = new TableBytes(length);
  t.ascii(SdtHeader.SIGNATURE, signature, 4);
  t.u32(SdtHeader.LENGTH, length);
  t.u8(SdtHeader.REVISION, revision);
  t.ascii(SdtHeader.OEM_ID, OEM_ID, 6);
  t.ascii(SdtHeader.OEM_TABLE_ID, oemTableId, 8);
  t.u32(SdtHeader.OEM_REVISION, OEM_REVISION);
  t.ascii(SdtHeader.CREATOR_ID, CREATOR_ID, 4);
  t.u32(SdtHeader.CREATOR_REVISION, CREATOR_REVISION);
  return t;
}

/** Sets the header's checksum over the whole table; returns its bytes. */
export function sealTable(t: TableBytes): Uint8Array {
  t.u8(SdtHeader.CHECKSUM, 0);
  t.u8(SdtHeader.CHECKSUM, checksum(t.bytes));
  return t.bytes;
}

/** Generic Address Structure (§5.2.3.2): 12 bytes. */
export const GAS_SIZE = 12;
export const AddressSpace = { SYSTEM_MEMORY: 0, SYSTEM_IO: 1 } as const;
/** GAS access sizes: 1 = byte ... 4 = qword. */
export const AccessSize = { BYTE: 1, WORD: 2, DWORD: 3, QWORD: 4 } as const;

export interface GenericAddress {
  space: number;
  bitWidth: number;
  bitOffset: number;
  accessSize: number;
  address: number;
}

/** An 8-bit I/O port register, as the sleep and reset registers are. */
export function ioPortByte(port: number): GenericAddress {
  return { space: AddressSpace.SYSTEM_IO, bitWidth: 8, bitOffset: 0, accessSize: AccessSize.BYTE, address: port };
}

export function writeGenericAddress(t: TableBytes, offset: number, gas: GenericAddress): void {
  t.u8(offset, gas.space);
  t.u8(offset + 1, gas.bitWidth);
  t.u8(offset + 2, gas.bitOffset);
  t.u8(offset + 3, gas.accessSize);
  t.u64(offset + 4, gas.address);
}
