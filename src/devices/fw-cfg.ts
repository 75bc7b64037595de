// QEMU's firmware configuration device (fw_cfg), as QEMU's
// docs/specs/fw_cfg.rst describes it: a guest selects an item by its 16-bit
// key and reads its bytes one at a time, or has them copied into its memory
// by DMA. The items are configuration the builder made (the signature, the
// CPU count, the RAM size, named files); this file knows their encoding and
// the registers, on the x86 ports:
//
//   offset 0  selector  W16  selects an item and rewinds to its first byte;
//                        R8   (also) the next data byte, as on QEMU's PC
//   offset 1  data      R8   the next byte of the item, 0 past its end;
//                        W8   ignored (no item is writable)
//   DMA, its own 8 ports (big-endian, as the spec defines them):
//   offset 0  address   W32  high half of a FWCfgDmaAccess's guest address;
//                        R    "QEMU CFG", the DMA signature
//   offset 4  address   W32  low half: writing it runs the request
//
// A DMA request is 16 bytes in guest memory, big-endian: control (bit 0
// error, 1 read, 2 skip, 3 select with the key in bits 31:16, 4 write),
// length and address. The device carries it out and writes the control word
// back as 0, or with the error bit when the request or an address it names
// is bad: a hostile guest gets an error, never an access outside its RAM.
//
// The state (the selected key, the read offset, the DMA address's high half)
// is a DeviceStateLayout buffer every vCPU thread shares; the items are one
// SharedArrayBuffer of contents, never written after the builder made it.
import type { BusDevice } from '../bus/index.ts';
import type { GuestMemory } from '../memory/index.ts';
import { DeviceStateLayout, type SavedDeviceState, type StatefulDevice, type StateViews } from './device-state.ts';

/** The ports each interface answers, from its base. */
export const FW_CFG_PORT_COUNT = 2;
export const FW_CFG_DMA_PORT_COUNT = 8;

/** The items' keys (docs/specs/fw_cfg.rst, "Selector Register Key Values"). */
export const FwCfgKey = {
  SIGNATURE: 0x00,
  ID: 0x01,
  UUID: 0x02,
  RAM_SIZE: 0x03,
  NB_CPUS: 0x05,
  MAX_CPUS: 0x0f,
  FILE_DIR: 0x19,
  /** The first key given to a file; the directory lists them in order. */
  FILE_FIRST: 0x20,
  /** Set by a guest that means to write: the item is the same. */
  WRITE_CHANNEL: 0x4000,
} as const;

/** FW_CFG_ID's feature bits. */
export const FwCfgFeature = {
  TRADITIONAL: 1 << 0,
  DMA: 1 << 1,
} as const;

/** FWCfgDmaAccess.control bits. */
export const FwCfgDmaControl = {
  ERROR: 1 << 0,
  READ: 1 << 1,
  SKIP: 1 << 2,
  SELECT: 1 << 3,
  WRITE: 1 << 4,
} as const;

/** A file's name in the directory: 56 bytes with its terminating NUL. */
export const FW_CFG_MAX_FILE_PATH = 56;
/** What a read of the DMA register returns: "QEMU CFG", big-endian. */
const DMA_SIGNATURE = 0x51454d55_20434647n;
/** A directory entry: be32 size, be16 select, be16 reserved, name[56]. */
const FILE_ENTRY_SIZE = 64;
const DMA_ACCESS_SIZE = 16;

/** The items as the builder made them: one buffer of bytes, and where each key's bytes are. */
export interface FwCfgContents {
  readonly data: SharedArrayBuffer;
  readonly items: readonly { key: number; offset: number; length: number }[];
}

/**
 * Encodes items and named files into contents: the files get keys from
 * FILE_FIRST in the order given, and FILE_DIR lists them.
 */
export function encodeFwCfgContents(
  items: readonly { key: number; data: Uint8Array }[],
  files: readonly { name: string; data: Uint8Array }[],
): FwCfgContents {
  const directory = new Uint8Array(4 + FILE_ENTRY_SIZE * files.length);
  const view = new DataView(directory.buffer);
  view.setUint32(0, files.length);
  files.forEach((file, i) => {
    const name = new TextEncoder().encode(file.name);
    if (name.length === 0 || name.length >= FW_CFG_MAX_FILE_PATH) throw new Error(`fw_cfg file name "${file.name}": 1 to ${FW_CFG_MAX_FILE_PATH - 1} bytes`);
    const at = 4 + FILE_ENTRY_SIZE * i;
    view.setUint32(at, file.data.length);
    view.setUint16(at + 4, FwCfgKey.FILE_FIRST + i);
    directory.set(name, at + 8);
  });
  const all = [
    ...items,
    { key: FwCfgKey.FILE_DIR, data: directory },
    ...files.map((file, i) => ({ key: FwCfgKey.FILE_FIRST + i, data: file.data })),
  ];
  const data = new SharedArrayBuffer(all.reduce((sum, item) => sum + item.data.length, 0));
  const bytes = new Uint8Array(data);
  let offset = 0;
  const placed = all.map((item) => {
    bytes.set(item.data, offset);
    const entry = { key: item.key, offset, length: item.data.length };
    offset += item.data.length;
    return entry;
  });
  return { data, items: placed };
}

/** Everything the device keeps between accesses. */
export const FW_CFG_STATE = new DeviceStateLayout('fw-cfg', 1, {
  /** The selected key; 0 (the signature) after reset, as on QEMU. */
  selector: ['u32', 1],
  /** The next byte of the selected item to read. */
  offset: ['u32', 1],
  /** The high half of the DMA request's address, until the low half arrives. */
  dmaAddressHigh: ['u32', 1],
});

export class FwCfg implements BusDevice, StatefulDevice {
  readonly name = 'fw_cfg';
  readonly state: SharedArrayBuffer;
  /** The DMA registers, to put on the bus at their own ports. */
  readonly dma: BusDevice;
  private readonly views: StateViews<typeof FW_CFG_STATE.fields>;
  private readonly bytes: Uint8Array;
  private readonly byKey = new Map<number, { offset: number; length: number }>();

  static createState(): SharedArrayBuffer {
    return FW_CFG_STATE.create();
  }

  constructor(contents: FwCfgContents, private readonly memory: GuestMemory, state: SharedArrayBuffer = FwCfg.createState()) {
    this.state = state;
    this.views = FW_CFG_STATE.views(state);
    this.bytes = new Uint8Array(contents.data);
    for (const item of contents.items) this.byKey.set(item.key, item);
    this.dma = {
      name: 'fw_cfg DMA',
      read: (offset, size) => this.readDmaSignature(offset, size),
      write: (offset, size, value) => this.writeDmaAddress(offset, size, value),
    };
  }

  saveState(): SavedDeviceState {
    return FW_CFG_STATE.save(this.state);
  }

  restoreState(saved: SavedDeviceState): void {
    FW_CFG_STATE.restore(saved, this.state);
  }

  read(_offset: number, size: number): number {
    // QEMU's PC decodes byte reads of either port as the data register.
    if (size !== 1) return size === 2 ? 0xffff : 0xffff_ffff;
    return this.readByte();
  }

  write(offset: number, size: number, value: number): void {
    if (offset === 0 && size === 2) this.select(value);
    // A byte written to the data register: QEMU has ignored these since 2.4.
  }

  private select(key: number): void {
    this.views.selector[0] = key & 0xffff;
    this.views.offset[0] = 0;
  }

  /** The selected item, whatever the write-channel bit says. */
  private selected(): { offset: number; length: number } | undefined {
    return this.byKey.get(this.views.selector[0]! & ~FwCfgKey.WRITE_CHANNEL);
  }

  private readByte(): number {
    const item = this.selected();
    const at = this.views.offset[0]!;
    if (!item || at >= item.length) return 0;
    this.views.offset[0] = at + 1;
    return this.bytes[item.offset + at]!;
  }

  private readDmaSignature(offset: number, size: number): number {
    // The register is big-endian: byte i of the port is byte i of "QEMU CFG".
    let value = 0;
    for (let i = 0; i < size && offset + i < 8; i++) {
      value |= Number((DMA_SIGNATURE >> BigInt(8 * (7 - offset - i))) & 0xffn) << (8 * i);
    }
    return value >>> 0;
  }

  private writeDmaAddress(offset: number, size: number, value: number): void {
    if (size !== 4) return;
    const bigEndian = byteSwap32(value);
    if (offset === 0) this.views.dmaAddressHigh[0] = bigEndian;
    else if (offset === 4) {
      this.runDma(this.views.dmaAddressHigh[0]! * 2 ** 32 + bigEndian);
      this.views.dmaAddressHigh[0] = 0;
    }
  }

  /** Carries out the FWCfgDmaAccess at `address` and writes its control word back. */
  private runDma(address: number): void {
    if (!this.memory.contains(address, DMA_ACCESS_SIZE)) return; // nowhere to report to
    const control = byteSwap32(this.memory.readU32(address));
    const length = byteSwap32(this.memory.readU32(address + 4));
    const target = Number(byteSwap64(this.memory.readU64(address + 8)));
    if (control & FwCfgDmaControl.SELECT) this.select(control >>> 16);
    const ok = this.transfer(control, length, target);
    this.memory.writeU32(address, ok ? 0 : byteSwap32(FwCfgDmaControl.ERROR));
  }

  /** The read, skip or write a DMA request asks for; false where it fails. */
  private transfer(control: number, length: number, target: number): boolean {
    // No item here is writable: a write fails, as QEMU fails it for a read-only item.
    if (control & FwCfgDmaControl.WRITE) return false;
    const read = (control & FwCfgDmaControl.READ) !== 0;
    if (!read && !(control & FwCfgDmaControl.SKIP)) return true;
    if (read && !this.memory.contains(target, length)) return false;
    const item = this.selected();
    const at = this.views.offset[0]!;
    const available = item ? Math.max(0, Math.min(length, item.length - at)) : 0;
    if (read) {
      // Past the item's end the guest reads zeros, as from the data register.
      if (available > 0) this.memory.write(target, this.bytes.subarray(item!.offset + at, item!.offset + at + available));
      if (length > available) this.memory.fill(target + available, length - available, 0);
    }
    this.views.offset[0] = at + available;
    return true;
  }
}

function byteSwap32(value: number): number {
  return (((value & 0xff) << 24) | ((value & 0xff00) << 8) | ((value >>> 8) & 0xff00) | (value >>> 24)) >>> 0;
}

function byteSwap64(value: bigint): bigint {
  const low = byteSwap32(Number(value & 0xffff_ffffn));
  const high = byteSwap32(Number(value >> 32n));
  return (BigInt(low) << 32n) | BigInt(high);
}
