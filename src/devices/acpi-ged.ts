// The ACPI Generic Event Device (ACPI 6.5 §5.6.9): how a hardware-reduced
// platform, which has no fixed power button and no GPE blocks, tells the
// guest that something happened. The GED is an interrupt in the DSDT
// ("ACPI0013" with an Interrupt() in _CRS); when it fires, Linux's evged
// driver runs the GED's _EVT method, and ours reads the event status register
// below and, if the power-button bit is set, does Notify(\_SB.PWRB, 0x80),
// which the guest's button driver turns into KEY_POWER.
//
//   offset 0  event status  R, 32 bits: bit 0 power button. Reading clears
//                           the bits it returns, so each press is seen once.
//
// The interrupt is edge-triggered, active high (QEMU and cloud-hypervisor
// use the same): a press sets the bit and pulses the line.
//
// The host presses the button from the main thread (a signal, the console)
// while a vCPU thread serves the guest's read: the status lives in a
// SharedArrayBuffer and every thread has its own AcpiGed over it.
import type { BusDevice } from '../bus/index.ts';
import type { InterruptLine } from './interrupt-line.ts';

/** Bits of the event status register; the DSDT's _EVT tests the same ones. */
export const GedEvent = {
  POWER_BUTTON: 1 << 0,
} as const;

/** Bytes of MMIO the device answers: one 32-bit register. */
export const ACPI_GED_MMIO_SIZE = 4;

export class AcpiGed implements BusDevice {
  readonly name = 'acpi generic event device';
  /** The shared state: [0] = pending events. */
  readonly state: SharedArrayBuffer;
  private readonly pending: Int32Array;

  /** A fresh state for one device, to share between the threads that use it. */
  static createState(): SharedArrayBuffer {
    return new SharedArrayBuffer(4);
  }

  constructor(
    private readonly irq: InterruptLine,
    state: SharedArrayBuffer = AcpiGed.createState(),
  ) {
    this.state = state;
    this.pending = new Int32Array(state, 0, 1);
  }

  /** Asks the guest to shut down, as a short press of a PC's power button does. */
  pressPowerButton(): void {
    this.signal(GedEvent.POWER_BUTTON);
  }

  read(offset: number, size: number): number {
    if (offset < 0 || offset + size > ACPI_GED_MMIO_SIZE) return 0;
    const shift = offset * 8;
    const mask = size >= 4 ? 0xffff_ffff : (1 << (size * 8)) - 1;
    const taken = Atomics.and(this.pending, 0, ~(mask << shift));
    return ((taken >>> shift) & mask) >>> 0;
  }

  write(): void {
    // The register is read-only: the guest acknowledges an event by reading it.
  }

  private signal(events: number): void {
    Atomics.or(this.pending, 0, events);
    this.irq.pulse();
  }
}
