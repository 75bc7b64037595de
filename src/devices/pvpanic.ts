// QEMU's pvpanic device (docs/specs/pvpanic.rst, hw/misc/pvpanic-isa.c): one
// I/O port through which a guest kernel tells the host that it panicked, so
// that the host can act on a crash (libvirt's on_crash) instead of seeing
// only the reboot that panic=-1 does next. Linux finds it through the DSDT's
// QEMU0001 device (drivers/misc/pvpanic) and writes from its panic notifier.
//
//   read   the events the host handles (the guest sends only those)
//   write  bit 0 PANICKED: the guest panicked and the host should act
//          bit 1 CRASH_LOADED: the guest panicked and its own crash kernel
//          takes over; the host should let it run
//
// tsvmm handles PANICKED only: a guest with a crash kernel loaded then sends
// nothing and dumps its own core undisturbed. No state: a write acts at
// once, and a read returns a constant.
import type { BusDevice } from '../bus/index.ts';

export const PvpanicEvent = {
  PANICKED: 1 << 0,
  CRASH_LOADED: 1 << 1,
} as const;

/** The one port the device answers. */
export const PVPANIC_PORT_COUNT = 1;

export class Pvpanic implements BusDevice {
  readonly name = 'pvpanic';

  /** `panicked` is called when the guest reports a panic the host should act on. */
  constructor(private readonly panicked: () => void) {}

  read(): number {
    return PvpanicEvent.PANICKED;
  }

  write(_offset: number, _size: number, value: number): void {
    if (value & PvpanicEvent.PANICKED) this.panicked();
  }
}
