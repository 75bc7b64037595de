// The ACPI power management timer (ACPI 6.5 §4.8.3.3): a free-running 24-bit
// counter at 3.579545 MHz in one 32-bit I/O port, which the FADT's
// PM_TMR_BLK points at. Guests time with it (kvm-unit-tests' vmexit test
// measures a port read with it; Linux has it as the acpi_pm clocksource).
//
// It counts from the machine's guest clock, so it stops while the machine is
// paused and goes on from the same value after a restore; it has no state of
// its own. The overflow status bit (TMR_STS) and its SCI are not modelled: the
// machine is hardware-reduced ACPI, which has neither PM1 registers nor an SCI.
import type { BusDevice } from '../bus/index.ts';
import type { Clock } from './clock.ts';

export const ACPI_PM_TIMER_PORT_COUNT = 4;
export const ACPI_PM_TIMER_HZ = 3_579_545;

export class AcpiPmTimer implements BusDevice {
  readonly name = 'ACPI PM timer';

  constructor(private readonly clock: Clock) {}

  /** The count, 24 bits wide; a narrower read returns the low bytes from `offset` on. */
  read(offset: number, size: number): number {
    const ns = this.clock.nowNs();
    // Whole seconds and the remainder apart, so the product stays exact in a double.
    const seconds = Math.floor(ns / 1e9);
    const ticks = seconds * ACPI_PM_TIMER_HZ + Math.floor(((ns - seconds * 1e9) * ACPI_PM_TIMER_HZ) / 1e9);
    const count = ticks % 0x100_0000;
    const shifted = Math.floor(count / 256 ** offset);
    return size >= 4 ? shifted : shifted % 256 ** size;
  }

  /** The register is read-only. */
  write(): void {}
}
