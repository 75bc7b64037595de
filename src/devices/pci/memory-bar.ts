// Keeps a memory BAR's register file on the MMIO bus where the guest put it:
// registered while the Command register enables Memory Space, moved when the
// BAR is rewritten, removed when decoding is switched off. The guest programs
// BARs, so a bad address is the guest's error: it is refused and counted,
// never thrown into the vCPU's run loop.
import { BusError, type AddressSpace, type BusDevice } from '../../bus/index.ts';
import { PciCommand, type PciConfigSpace } from './config-space.ts';
import type { PciBarListener } from './function.ts';

/** Guest-physical ranges a BAR must never cover (guest RAM, the interrupt controllers' pages). */
export interface ForbiddenRange {
  readonly base: number;
  readonly length: number;
}

export interface MemoryBarOptions {
  mmio: AddressSpace;
  forbidden?: readonly ForbiddenRange[];
  listener?: PciBarListener;
  /** Called after the listener with the BAR's new address (null: not decoded). */
  moved?(address: number | null): void;
}

/**
 * What this object holds is its bus's registration, not the function's
 * state: each thread's MemoryBar follows the one configuration space on its
 * own bus, and sync() re-derives it (after a restore too).
 */
export class MemoryBar {
  /** Where the BAR is registered on the MMIO bus now. */
  mapped: number | null = null;
  /** Mappings refused: over a forbidden range or over another device's range. */
  refused = 0;
  /** What Command and the BAR asked for at the last sync (refused or not). */
  private requested: number | null = null;

  constructor(
    private readonly config: PciConfigSpace,
    readonly index: number,
    private readonly device: BusDevice,
    private readonly options: MemoryBarOptions,
  ) {}

  get size(): number {
    return this.config.barSize(this.index);
  }

  /** Call after every configuration write: follows Memory Space Enable and the BAR's address. */
  sync(): void {
    const requested = this.config.command & PciCommand.MEMORY ? this.config.barAddress(this.index) : null;
    if (requested === this.requested) return;
    this.requested = requested;
    const before = this.mapped;
    const { mmio } = this.options;
    if (before !== null) {
      mmio.unregister(before);
      this.mapped = null;
    }
    if (requested !== null && this.allowed(requested)) {
      try {
        mmio.register(requested, this.size, this.device);
        this.mapped = requested;
      } catch (e) {
        if (!(e instanceof BusError)) throw e;
        this.refused++;
      }
    }
    if (this.mapped !== before) {
      this.options.listener?.barMapped(this.index, this.mapped, this.size);
      this.options.moved?.(this.mapped);
    }
  }

  private allowed(address: number): boolean {
    const end = address + this.size;
    for (const range of this.options.forbidden ?? []) {
      if (address < range.base + range.length && range.base < end) {
        this.refused++;
        return false;
      }
    }
    return true;
  }
}
