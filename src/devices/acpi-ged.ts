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
// SharedArrayBuffer (ACPI_GED_STATE) and every thread has its own AcpiGed
// over it. The main thread sets bits without the machine's device lock, so
// every access to the register is atomic.
import type { BusDevice } from '../bus/index.ts';
import { DeviceStateLayout, type SavedDeviceState, type StatefulDevice } from './device-state.ts';
import type { InterruptLine } from './interrupt-line.ts';

/** Bits of the event status register; the DSDT's _EVT tests the same ones. */
export const GedEvent = {
  POWER_BUTTON: 1 << 0,
} as const;

/** Bytes of MMIO the device answers: one 32-bit register. */
export const ACPI_GED_MMIO_SIZE = 4;

/** Everything the device keeps. */
export const ACPI_GED_STATE = new DeviceStateLayout('acpi-ged', 1, {
  /** The event status register: events signalled and not yet read (GedEvent bits). */
  pending: ['i32', 1], // i32: Atomics works on it
});

export class AcpiGed implements BusDevice, StatefulDevice {
  readonly name = 'acpi generic event device';
  /** The shared state, laid out by ACPI_GED_STATE. */
  readonly state: SharedArrayBuffer;
  private readonly pending: Int32Array;

  /** The power-on state for one device (no event pending), to share between the threads that use it. */
  static createState(): SharedArrayBuffer {
    return ACPI_GED_STATE.create();
  }

  constructor(
    private readonly irq: InterruptLine,
    state: SharedArrayBuffer = AcpiGed.createState(),
  ) {
    this.state = state;
    this.pending = ACPI_GED_STATE.views(state).pending;
  }

  saveState(): SavedDeviceState {
    return ACPI_GED_STATE.save(this.state);
  }

  /**
   * The interrupt is an edge that was delivered (or not) before the save; a
   * restored pending event is not pulsed again: the interrupt controller's
   * own saved state holds whether the guest still has it to take.
   */
  restoreState(saved: SavedDeviceState): void {
    ACPI_GED_STATE.restore(saved, this.state);
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
