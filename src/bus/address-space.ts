// An address space (the PIO ports or guest-physical MMIO): ranges claimed by
// devices, dispatch of an access to the device that claims it, and the
// all-ones / dropped behaviour of a bus where nothing answers.
import type { BusDevice } from './bus-device.ts';
import { hex } from '../hex.ts';

export class BusError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BusError';
  }
}

export interface BusRange {
  readonly base: number;
  readonly length: number;
  readonly device: BusDevice;
}

const ALL_ONES = [0, 0xff, 0xffff, 0, 0xffff_ffff] as const;

/**
 * PIO and MMIO share this class. The port space is small enough for a direct
 * table (port → range index, one typed-array load per exit); MMIO ranges are
 * kept sorted and found by binary search behind a last-hit cache.
 */
export class AddressSpace {
  private readonly ranges: BusRange[] = [];
  private readonly portTable: Int16Array | null;
  private lastHit = -1;

  /** Accesses that no device claimed (also those running past a device's end). */
  unclaimedReads = 0;
  unclaimedWrites = 0;
  /**
   * Asked before an access counts as unclaimed: true when it changed what
   * the space decodes (a PCI BAR another vCPU thread moved), so the access is
   * looked up once more. Off the hot path: only misses reach it.
   */
  onUnclaimed: (() => boolean) | null = null;

  constructor(readonly name: string, readonly limit: number) {
    this.portTable = limit <= 0x10000 ? new Int16Array(limit).fill(-1) : null;
  }

  static ports(): AddressSpace {
    return new AddressSpace('PIO', 0x10000);
  }

  static memory(): AddressSpace {
    return new AddressSpace('MMIO', 2 ** 52);
  }

  /** Claims [base, base + length) for `device`; overlapping claims are refused. */
  register(base: number, length: number, device: BusDevice): void {
    if (!Number.isSafeInteger(base) || !Number.isSafeInteger(length) || base < 0 || length <= 0 || base + length > this.limit) {
      throw new BusError(`${this.name}: ${device.name} at ${hex(base)}+${length} is outside the ${this.name} space`);
    }
    for (const r of this.ranges) {
      if (base < r.base + r.length && r.base < base + length) {
        throw new BusError(`${this.name}: ${device.name} at ${hex(base)}-${hex(base + length - 1)} overlaps ${r.device.name} at ${hex(r.base)}-${hex(r.base + r.length - 1)}`);
      }
    }
    this.ranges.push({ base, length, device });
    this.ranges.sort((a, b) => a.base - b.base);
    this.lastHit = -1;
    this.rebuildPortTable();
  }

  /**
   * Releases the range that starts at `base` (a PCI BAR the guest moved or
   * switched off). Returns the device that held it, or undefined if none did.
   */
  unregister(base: number): BusDevice | undefined {
    const i = this.ranges.findIndex((r) => r.base === base);
    if (i < 0) return undefined;
    const [removed] = this.ranges.splice(i, 1);
    this.lastHit = -1;
    this.rebuildPortTable();
    return removed!.device;
  }

  private rebuildPortTable(): void {
    if (!this.portTable) return;
    this.portTable.fill(-1);
    this.ranges.forEach((r, i) => this.portTable!.fill(i, r.base, r.base + r.length));
  }

  /** The registered ranges, in address order. */
  list(): readonly BusRange[] {
    return this.ranges;
  }

  /** The range holding all of [address, address + size), or undefined. */
  find(address: number, size: number): BusRange | undefined {
    const i = this.indexOf(address);
    if (i < 0) return undefined;
    const r = this.ranges[i]!;
    return address + size <= r.base + r.length ? r : undefined;
  }

  read(address: number, size: number): number {
    const r = this.find(address, size > 1 ? 1 : size);
    if (r !== undefined && size > 1 && r.device.byteWide) return this.readBytes(address, size);
    if (r === undefined || (size > 1 && address + size > r.base + r.length)) {
      if (this.onUnclaimed !== null && this.onUnclaimed()) return this.read(address, size);
      this.unclaimedReads++;
      return ALL_ONES[size] ?? 0xffff_ffff;
    }
    return r.device.read(address - r.base, size);
  }

  write(address: number, size: number, value: number): void {
    const r = this.find(address, size > 1 ? 1 : size);
    if (r !== undefined && size > 1 && r.device.byteWide) return this.writeBytes(address, size, value);
    if (r === undefined || (size > 1 && address + size > r.base + r.length)) {
      if (this.onUnclaimed !== null && this.onUnclaimed()) return this.write(address, size, value);
      this.unclaimedWrites++;
      return;
    }
    r.device.write(address - r.base, size, value);
  }

  /** A wide access to byte-wide registers: one byte access per address, low byte first. */
  private readBytes(address: number, size: number): number {
    let value = 0;
    for (let i = 0; i < size; i++) value |= this.read(address + i, 1) << (8 * i);
    return value >>> 0;
  }

  private writeBytes(address: number, size: number, value: number): void {
    for (let i = 0; i < size; i++) this.write(address + i, 1, (value >>> (8 * i)) & 0xff);
  }

  read64(address: number): bigint {
    const r = this.find(address, 8);
    if (r === undefined) {
      if (this.onUnclaimed !== null && this.onUnclaimed()) return this.read64(address);
      this.unclaimedReads++;
      return 0xffff_ffff_ffff_ffffn;
    }
    const offset = address - r.base;
    if (r.device.read64) return r.device.read64(offset);
    const low = r.device.read(offset, 4);
    const high = r.device.read(offset + 4, 4);
    return (BigInt(high) << 32n) | BigInt(low);
  }

  write64(address: number, value: bigint): void {
    const r = this.find(address, 8);
    if (r === undefined) {
      if (this.onUnclaimed !== null && this.onUnclaimed()) return this.write64(address, value);
      this.unclaimedWrites++;
      return;
    }
    const offset = address - r.base;
    if (r.device.write64) return r.device.write64(offset, value);
    r.device.write(offset, 4, Number(value & 0xffff_ffffn));
    r.device.write(offset + 4, 4, Number((value >> 32n) & 0xffff_ffffn));
  }

  private indexOf(address: number): number {
    if (this.portTable) return address >= 0 && address < this.limit ? this.portTable[address]! : -1;
    const ranges = this.ranges;
    const hit = this.lastHit;
    if (hit >= 0) {
      const r = ranges[hit]!;
      if (address >= r.base && address < r.base + r.length) return hit;
    }
    let lo = 0;
    let hi = ranges.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const r = ranges[mid]!;
      if (address < r.base) hi = mid - 1;
      else if (address >= r.base + r.length) lo = mid + 1;
      else return (this.lastHit = mid);
    }
    return -1;
  }
}
