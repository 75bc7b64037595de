// The ACPI PM1a event and control register blocks (ACPI 6.5 §4.8.3.1-2),
// QEMU's PIIX4 PM layout, for software that drives sleep states through the
// FADT's PM1a_EVT_BLK and PM1a_CNT_BLK directly as firmware-era code does
// (kvm-unit-tests' s3.flat). An OS on tsvmm's hardware-reduced ACPI ignores
// them and uses the sleep registers (acpi-sleep.ts) instead.
//
//   event block, offset 0  PM1_STS  R/W1C  bit 10 RTC_STS, bit 15 WAK_STS
//                offset 2  PM1_EN   R/W    bit 10 RTC_EN (the RTC alarm may wake the machine)
//   control block, offset 0 PM1_CNT R/W    bit 0 SCI_EN (reads 1: always in ACPI mode),
//                                          bits 12:10 SLP_TYP, bit 13 SLP_EN (write-only)
//
// SLP_EN with SLP_TYP = 1 suspends to RAM (S3) and 0 powers off (S5), the
// values of QEMU's PIIX4 that such software assumes; any other type wakes at
// once (WAK_STS). Not modelled: the SCI (the platform has none), the PM timer
// overflow status, the power and sleep button bits (the power button is the
// GED's), and the global lock.
//
// The registers live in a SharedArrayBuffer (ACPI_PM1_STATE) shared by every
// vCPU thread's AcpiPm1; only the guest writes them, through the device lock.
import type { BusDevice } from '../bus/index.ts';
import { DeviceStateLayout, type SavedDeviceState, type StatefulDevice } from './device-state.ts';

export const ACPI_PM1_EVENT_PORT_COUNT = 4;
export const ACPI_PM1_CONTROL_PORT_COUNT = 2;

/** PM1_STS bits (table 4.16). */
export const Pm1Status = { RTC_STS: 1 << 10, WAK_STS: 1 << 15 } as const;
/** PM1_EN bits (table 4.17). */
export const Pm1Enable = { RTC_EN: 1 << 10 } as const;
/** PM1_CNT bits (table 4.18). */
export const Pm1Control = { SCI_EN: 1 << 0, SLP_TYP_SHIFT: 10, SLP_TYP_MASK: 0x7 << 10, SLP_EN: 1 << 13 } as const;
/** The SLP_TYP values of QEMU's PIIX4 PM, which kvm-unit-tests writes. */
export const Pm1SleepType = { S5: 0, S3: 1 } as const;

const STATUS_BITS = Pm1Status.RTC_STS | Pm1Status.WAK_STS;
const ENABLE_BITS = Pm1Enable.RTC_EN;
/** What PM1_CNT keeps: SLP_TYP (SLP_EN is write-only; SCI_EN is fixed). */
const CONTROL_BITS = Pm1Control.SLP_TYP_MASK;

export type AcpiPm1Request = 'suspend' | 'power-off';

export const ACPI_PM1_STATE = new DeviceStateLayout('acpi-pm1', 1, {
  /** PM1_STS, PM1_EN, PM1_CNT. */
  registers: ['u32', 3],
});
const Reg = { STATUS: 0, ENABLE: 1, CONTROL: 2 } as const;

/** The PM1a registers over shared state; `event` and `control` are the two blocks to put on the bus. */
export class AcpiPm1 implements StatefulDevice {
  readonly state: SharedArrayBuffer;
  private readonly registers: Uint32Array;
  readonly event: BusDevice;
  readonly control: BusDevice;

  static createState(): SharedArrayBuffer {
    return ACPI_PM1_STATE.create();
  }

  /** `request` receives the guest's S3 ('suspend') and S5 ('power-off'); the machine acts on them. */
  constructor(private readonly request: (what: AcpiPm1Request) => void, state: SharedArrayBuffer = AcpiPm1.createState()) {
    this.state = state;
    this.registers = ACPI_PM1_STATE.views(state).registers;
    this.event = {
      name: 'acpi pm1a event', byteWide: true,
      read: (offset) => this.byteOf(offset < 2 ? this.registers[Reg.STATUS]! : this.registers[Reg.ENABLE]!, offset),
      write: (offset, _size, value) => this.writeEvent(offset, value & 0xff),
    };
    this.control = {
      name: 'acpi pm1a control', byteWide: true,
      read: (offset) => this.byteOf(this.registers[Reg.CONTROL]! | Pm1Control.SCI_EN, offset),
      write: (offset, _size, value) => this.writeControl(offset, value & 0xff),
    };
  }

  saveState(): SavedDeviceState {
    return ACPI_PM1_STATE.save(this.state);
  }

  restoreState(saved: SavedDeviceState): void {
    ACPI_PM1_STATE.restore(saved, this.state);
  }

  /** PM1_EN.RTC_EN: the RTC alarm is a wake source. */
  get rtcWakeEnabled(): boolean {
    return (this.registers[Reg.ENABLE]! & Pm1Enable.RTC_EN) !== 0;
  }

  /** The machine woke from S3: WAK_STS, and the status bit of what woke it. */
  wake(cause: number): void {
    this.registers[Reg.STATUS]! |= Pm1Status.WAK_STS | (cause & STATUS_BITS);
  }

  private byteOf(register: number, offset: number): number {
    return (register >> ((offset & 1) * 8)) & 0xff;
  }

  private writeEvent(offset: number, byte: number): void {
    const shifted = byte << ((offset & 1) * 8);
    if (offset < 2) {
      this.registers[Reg.STATUS]! &= ~(shifted & STATUS_BITS); // write 1 to clear
    } else {
      const keep = 0xff << ((1 - (offset & 1)) * 8);
      this.registers[Reg.ENABLE] = (this.registers[Reg.ENABLE]! & keep) | (shifted & ENABLE_BITS);
    }
  }

  private writeControl(offset: number, byte: number): void {
    const shifted = byte << ((offset & 1) * 8);
    const keep = 0xff << ((1 - (offset & 1)) * 8);
    this.registers[Reg.CONTROL] = (this.registers[Reg.CONTROL]! & keep) | (shifted & CONTROL_BITS);
    if (!(shifted & Pm1Control.SLP_EN)) return;
    const sleepType = (this.registers[Reg.CONTROL]! & Pm1Control.SLP_TYP_MASK) >> Pm1Control.SLP_TYP_SHIFT;
    if (sleepType === Pm1SleepType.S3) this.request('suspend');
    else if (sleepType === Pm1SleepType.S5) this.request('power-off');
    else this.wake(0);
  }
}
