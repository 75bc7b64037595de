// The sleep and reset registers of a hardware-reduced ACPI platform (ACPI 6.5
// §4.8.3.7 "Sleep Control and Status Registers", §4.8.3.6 "Reset Register"),
// as three byte-wide I/O ports. The FADT points the guest at them; this is the
// register file behind those pointers. Linux powers off by writing
// SLP_TYP (from the DSDT's \_S5_ package) | SLP_EN to the control register,
// and reboots by writing the FADT's RESET_VALUE to the reset register.
//
//   offset 0  SLEEP_CONTROL_REG  W    bits 4:2 SLP_TYP, bit 5 SLP_EN (reads 0)
//   offset 1  SLEEP_STATUS_REG   R/W  bit 7 WAK_STS (write 1 to clear)
//   offset 2  RESET_REG          W    RESET_VALUE resets the machine (reads 0)
//
// A sleep to a state this machine cannot enter (anything but S5) wakes at
// once: WAK_STS is set, so the guest's wait for the wake ends (ACPICA polls
// WAK_STS after SLP_EN) instead of spinning forever.
//
// The state (WAK_STS) lives in a SharedArrayBuffer (ACPI_SLEEP_STATE) so that
// every vCPU thread, each with its own AcpiSleep over the same buffer, sees
// one register. Only the guest writes it, through the machine's device lock,
// so plain reads and writes suffice.
import type { BusDevice } from '../bus/index.ts';
import { DeviceStateLayout, type SavedDeviceState, type StatefulDevice } from './device-state.ts';

export const AcpiSleepRegister = {
  CONTROL: 0,
  STATUS: 1,
  RESET: 2,
} as const;

/** The number of ports the device answers, starting at its base. */
export const ACPI_SLEEP_PORT_COUNT = 3;

/** Bits of the sleep control and status registers (ACPI 6.5 tables 4.22 and 4.23). */
export const SleepBits = {
  SLP_TYP_SHIFT: 2,
  SLP_TYP_MASK: 0x1c,
  SLP_EN: 0x20,
  WAK_STS: 0x80,
} as const;

/**
 * The SLP_TYP value of each sleep state this hardware implements. The DSDT's
 * \_Sx_ packages hand these values to the guest; any value works as long as
 * both sides agree, so they are defined once, here.
 */
export const SleepType = {
  /** Working: the value a guest writes after a wake (no SLP_EN). */
  S0: 0,
  /** Soft off. */
  S5: 5,
} as const;

/** The value the guest writes to the reset register (the FADT's RESET_VALUE). */
export const ACPI_RESET_VALUE = 0x01;

export type AcpiSleepRequest = 'power-off' | 'reset';

/** Everything the device keeps: the one register with state (control and reset are write-only). */
export const ACPI_SLEEP_STATE = new DeviceStateLayout('acpi-sleep', 1, {
  /** SLEEP_STATUS_REG: WAK_STS (bit 7). */
  status: ['u8', 1],
});


export class AcpiSleep implements BusDevice, StatefulDevice {
  readonly name = 'acpi sleep/reset';
  readonly byteWide = true;
  /** The shared state, laid out by ACPI_SLEEP_STATE. */
  readonly state: SharedArrayBuffer;
  private readonly status: Uint8Array;

  /** The power-on state for one device (WAK_STS clear), to share between the threads that use it. */
  static createState(): SharedArrayBuffer {
    return ACPI_SLEEP_STATE.create();
  }

  /**
   * `request` receives a guest's power-off (SLP_EN with SLP_TYP = S5) or
   * reset; it decides what the machine does (stop the vCPUs, re-boot).
   */
  constructor(
    private readonly request: (what: AcpiSleepRequest) => void,
    state: SharedArrayBuffer = AcpiSleep.createState(),
  ) {
    this.state = state;
    this.status = ACPI_SLEEP_STATE.views(state).status;
  }

  saveState(): SavedDeviceState {
    return ACPI_SLEEP_STATE.save(this.state);
  }

  restoreState(saved: SavedDeviceState): void {
    ACPI_SLEEP_STATE.restore(saved, this.state);
  }

  read(offset: number, _size: number): number {
    if (offset === AcpiSleepRegister.STATUS) return this.status[0]!;
    return 0; // the control and reset registers are write-only
  }

  write(offset: number, _size: number, value: number): void {
    switch (offset) {
      case AcpiSleepRegister.CONTROL:
        this.writeControl(value & 0xff);
        break;
      case AcpiSleepRegister.STATUS:
        // Write-1-to-clear, as the fixed hardware status bits are.
        this.status[0]! &= ~(value & SleepBits.WAK_STS);
        break;
      case AcpiSleepRegister.RESET:
        if ((value & 0xff) === ACPI_RESET_VALUE) this.request('reset');
        break;
    }
  }

  private writeControl(value: number): void {
    if ((value & SleepBits.SLP_EN) === 0) return; // only SLP_EN starts a transition
    const sleepType = (value & SleepBits.SLP_TYP_MASK) >> SleepBits.SLP_TYP_SHIFT;
    if (sleepType === SleepType.S5) {
      this.request('power-off');
      return;
    }
    this.status[0]! |= SleepBits.WAK_STS;
  }
}
