// A PCI function's 256-byte configuration space with a type-0 header (PCI
// Local Bus 3.0, 6.1): identification, Command/Status, the Base Address
// Registers, the interrupt registers and a capability list. Every byte has a
// mask of the bits software may change; the rest are read-only, which is also
// what makes BAR sizing work (the size's low bits are simply not writable).
//
// State as data: the 256 bytes are the function's whole mutable state
// (Command, the BARs as programmed, Interrupt Line, writable capability
// fields), kept in a view the owner gives (a field of its DeviceStateLayout),
// so several threads' objects over one buffer are one function. The masks,
// BAR sizes and capability list are the function's definition: every object
// builds them alike, and only the one that powers the state on writes the
// power-on bytes.
import { InputError } from '../../errors.ts';

export const PCI_CONFIG_SIZE = 256;

/** Type-0 header registers (6.1). */
export const PciConfig = {
  VENDOR_ID: 0x00,
  DEVICE_ID: 0x02,
  COMMAND: 0x04,
  STATUS: 0x06,
  REVISION_ID: 0x08,
  /** Programming interface, sub-class and base class: 3 bytes, 0x09..0x0b. */
  CLASS_CODE: 0x09,
  CACHE_LINE_SIZE: 0x0c,
  LATENCY_TIMER: 0x0d,
  HEADER_TYPE: 0x0e,
  BIST: 0x0f,
  BAR0: 0x10,
  SUBSYSTEM_VENDOR_ID: 0x2c,
  SUBSYSTEM_ID: 0x2e,
  EXPANSION_ROM: 0x30,
  CAPABILITIES: 0x34,
  INTERRUPT_LINE: 0x3c,
  INTERRUPT_PIN: 0x3d,
} as const;

export const BAR_COUNT = 6;

/** Command register bits (6.2.2). */
export const PciCommand = {
  IO: 0x0001,
  MEMORY: 0x0002,
  BUS_MASTER: 0x0004,
  PARITY: 0x0040,
  SERR: 0x0100,
  INTX_DISABLE: 0x0400,
} as const;

/** Status register bits (6.2.3). */
export const PciStatus = {
  /** An interrupt is pending (INTx asserted). */
  INTERRUPT: 0x0008,
  /** The Capabilities Pointer is valid. */
  CAPABILITIES: 0x0010,
} as const;

/** Low bits of a memory BAR (6.2.5.1): 32-bit, non-prefetchable is all zeros. */
const BAR_MEMORY_FLAGS = 0xf;

/** Capabilities live after the header; the pointer and each next field are dword aligned (6.7). */
export const CAPABILITY_START = 0x40;

/** Capability IDs (PCI Code and ID Assignment). */
export const PciCapabilityId = {
  VENDOR_SPECIFIC: 0x09,
} as const;

export interface PciHeader {
  vendorId: number;
  deviceId: number;
  revision?: number;
  /** Base class, sub-class, programming interface as 0xBBSSPP. */
  classCode: number;
  subsystemVendorId?: number;
  subsystemId?: number;
  /** 1..4 for INTA#..INTD#, 0 for none. */
  interruptPin?: number;
  /** What firmware left in Interrupt Line: the IRQ the pin is wired to (0xff: unknown). */
  interruptLine?: number;
}

/** Bytes that say which function this is; restoring another function's state is refused. */
const IDENTITY_BYTES: readonly (readonly [number, number])[] = [
  [PciConfig.VENDOR_ID, 4],
  [PciConfig.REVISION_ID, 4],
  [PciConfig.SUBSYSTEM_VENDOR_ID, 4],
];

export class PciConfigSpace {
  readonly bytes: Uint8Array;
  private readonly view: DataView;
  /**
   * Whether this object writes the power-on bytes while it is built: true
   * when it made its own bytes, false over bytes another object (another
   * thread's, or a restored state) already holds.
   */
  private readonly poweringOn: boolean;
  private readonly writable = new Uint8Array(PCI_CONFIG_SIZE);
  private readonly barSizes = new Array<number>(BAR_COUNT).fill(0);
  /** Where the last capability's next pointer is (the Capabilities Pointer before the first). */
  private lastNext: number = PciConfig.CAPABILITIES;
  private capabilityEnd = CAPABILITY_START;

  /**
   * `bytes`: the function's 256 bytes in its state buffer (absent: bytes of
   * its own). `powerOn`: write the power-on state into them while building;
   * by default only into bytes of its own, since given bytes are already in
   * use by another object or hold a restored state.
   */
  constructor(header: PciHeader, bytes?: Uint8Array, powerOn = bytes === undefined) {
    if (bytes && bytes.length !== PCI_CONFIG_SIZE) throw new RangeError(`PCI configuration space of ${bytes.length} bytes`);
    this.poweringOn = powerOn;
    this.bytes = bytes ?? new Uint8Array(PCI_CONFIG_SIZE);
    this.view = new DataView(this.bytes.buffer, this.bytes.byteOffset, PCI_CONFIG_SIZE);
    // Identity and Interrupt Line are the same for every object of this
    // function; written only at power-on, so a shared or restored state keeps
    // what the guest wrote over them (Interrupt Line is writable).
    if (this.poweringOn) this.writeHeader(header);
    // Command bits a simple function implements; Status has no bits we would
    // set and then need write-1-to-clear for, so it is read-only.
    const command = PciCommand.IO | PciCommand.MEMORY | PciCommand.BUS_MASTER | PciCommand.PARITY | PciCommand.SERR | PciCommand.INTX_DISABLE;
    this.setWritable(PciConfig.COMMAND, 2, command);
    this.setWritable(PciConfig.CACHE_LINE_SIZE, 1, 0xff);
    // Interrupt Line is a scratch register for software; it routes nothing.
    if (header.interruptPin) this.setWritable(PciConfig.INTERRUPT_LINE, 1, 0xff);
  }

  private writeHeader(header: PciHeader): void {
    const v = this.view;
    v.setUint16(PciConfig.VENDOR_ID, header.vendorId, true);
    v.setUint16(PciConfig.DEVICE_ID, header.deviceId, true);
    v.setUint8(PciConfig.REVISION_ID, header.revision ?? 0);
    v.setUint8(PciConfig.CLASS_CODE, header.classCode & 0xff);
    v.setUint16(PciConfig.CLASS_CODE + 1, (header.classCode >> 8) & 0xffff, true);
    v.setUint16(PciConfig.SUBSYSTEM_VENDOR_ID, header.subsystemVendorId ?? 0, true);
    v.setUint16(PciConfig.SUBSYSTEM_ID, header.subsystemId ?? 0, true);
    v.setUint8(PciConfig.INTERRUPT_PIN, header.interruptPin ?? 0);
    v.setUint8(PciConfig.INTERRUPT_LINE, header.interruptLine ?? (header.interruptPin ? 0xff : 0));
  }

  /**
   * Throws InputError unless `bytes` (a saved configuration space) belong to
   * this function: same vendor, device, class and subsystem. A layout's kind
   * names only "a PCI function"; this tells a virtio-blk from a virtio-net.
   */
  checkIdentity(bytes: Uint8Array): void {
    for (const [offset, length] of IDENTITY_BYTES) {
      for (let i = offset; i < offset + length; i++) {
        if (bytes[i] !== this.bytes[i]) {
          const id = (b: Uint8Array) => `${idWord(b, PciConfig.VENDOR_ID)}:${idWord(b, PciConfig.DEVICE_ID)}`;
          throw new InputError(`PCI state of function ${id(bytes)} cannot be restored into function ${id(this.bytes)}`);
        }
      }
    }
  }

  /** A little-endian read of `size` bytes; bytes past the end read as 0xff, like an absent register. */
  read(offset: number, size: number): number {
    let value = 0;
    for (let i = size - 1; i >= 0; i--) value = value * 256 + (this.bytes[offset + i] ?? 0xff);
    return value;
  }

  /** A write changes only the writable bits of each byte it covers. */
  write(offset: number, size: number, value: number): void {
    for (let i = 0; i < size && offset + i < PCI_CONFIG_SIZE; i++) {
      const mask = this.writable[offset + i]!;
      const byte = (value >>> (8 * i)) & 0xff;
      this.bytes[offset + i] = (this.bytes[offset + i]! & ~mask) | (byte & mask);
    }
  }

  /** Makes `mask` (a little-endian value over `length` bytes) the writable bits at `offset`. */
  setWritable(offset: number, length: number, mask: number): void {
    for (let i = 0; i < length; i++) this.writable[offset + i] = Math.floor(mask / 2 ** (8 * i)) & 0xff;
  }

  get command(): number {
    return this.view.getUint16(PciConfig.COMMAND, true);
  }

  set command(value: number) {
    this.view.setUint16(PciConfig.COMMAND, value, true);
  }

  /** Sets or clears read-only Status bits (the device's own view of them). */
  setStatus(bits: number, on: boolean): void {
    const status = this.view.getUint16(PciConfig.STATUS, true);
    this.view.setUint16(PciConfig.STATUS, on ? status | bits : status & ~bits, true);
  }

  /**
   * Declares BAR `index` as a 32-bit non-prefetchable memory BAR of `size`
   * bytes (a power of two, at least 16). Only the address bits above the size
   * are writable, so writing all ones reads back ~(size - 1).
   */
  defineMemoryBar(index: number, size: number): void {
    if (index < 0 || index >= BAR_COUNT) throw new RangeError(`BAR ${index} does not exist`);
    if (!Number.isInteger(size) || size < 16 || size > 2 ** 31 || (size & (size - 1)) !== 0) {
      throw new RangeError(`BAR size ${size} is not a power of two from 16 bytes to 2 GiB`);
    }
    this.barSizes[index] = size;
    this.setWritable(PciConfig.BAR0 + 4 * index, 4, (~(size - 1) & ~BAR_MEMORY_FLAGS) >>> 0);
  }

  barSize(index: number): number {
    return this.barSizes[index] ?? 0;
  }

  /** The address BAR `index` holds (what it decodes when Memory Space is enabled). */
  barAddress(index: number): number {
    return (this.view.getUint32(PciConfig.BAR0 + 4 * index, true) & ~BAR_MEMORY_FLAGS) >>> 0;
  }

  /** What firmware does before the OS runs: puts the BAR at `address` (naturally aligned). */
  setBarAddress(index: number, address: number): void {
    const size = this.barSize(index);
    if (size === 0) throw new RangeError(`BAR ${index} is not implemented`);
    if (!Number.isInteger(address) || address < 0 || address + size > 2 ** 32 || address % size !== 0) {
      throw new RangeError(`BAR ${index} at 0x${address.toString(16)} is not a ${size}-byte aligned 32-bit address`);
    }
    this.view.setUint32(PciConfig.BAR0 + 4 * index, address, true);
  }

  /**
   * Appends a capability: `body` is everything after its ID and next pointer.
   * Returns the capability's offset. The list is kept in the order added.
   */
  addCapability(id: number, body: Uint8Array): number {
    const offset = this.capabilityEnd;
    const length = 2 + body.length;
    if (offset + length > PCI_CONFIG_SIZE) throw new RangeError('PCI capabilities do not fit in configuration space');
    if (this.poweringOn) {
      this.bytes[offset] = id;
      this.bytes[offset + 1] = 0;
      this.bytes.set(body, offset + 2);
      this.bytes[this.lastNext] = offset;
      this.setStatus(PciStatus.CAPABILITIES, true);
    }
    this.lastNext = offset + 1;
    this.capabilityEnd = (offset + length + 3) & ~3;
    return offset;
  }

  u8(offset: number): number {
    return this.bytes[offset]!;
  }

  u32(offset: number): number {
    return this.view.getUint32(offset, true);
  }
}

/** A vendor or device ID as lspci prints it (1af4:1042). */
function idWord(bytes: Uint8Array, offset: number): string {
  return (bytes[offset]! | (bytes[offset + 1]! << 8)).toString(16).padStart(4, '0');
}
