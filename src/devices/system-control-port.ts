// The PC's system control port B (port 0x61, "NMI status and control" on
// later chipsets): counter 2's GATE, the speaker data enable, and counter 2's
// OUT read back. Linux calibrates the TSC against counter 2 through this port
// (quick_pit_calibrate, pit_calibrate_tsc).
//
//   bit 0  R/W  timer 2 gate           -> Pit8254.setGate(2, ...)
//   bit 1  R/W  speaker data enable    (stored; there is no speaker)
//   bit 2  R/W  parity check disable   (stored, no effect)
//   bit 3  R/W  channel check disable  (stored, no effect)
//   bit 4  R    refresh request        toggles on every read
//   bit 5  R    timer 2 output         <- Pit8254.output(2)
//   bit 6  R    channel check (IOCHK)  0: never
//   bit 7  R    parity error (SERR)    0: never
//
// Bit 4: on hardware it toggles every 15.085 us (DRAM refresh); QEMU derives
// it from the clock. Here it toggles on each read, so a loop waiting for it to
// change never spins, and the port needs no clock. Delay loops that count its
// toggles (old BIOSes) therefore run shorter than on hardware.
//
// State (SYSTEM_CONTROL_PORT_STATE) is the port's own bits only. Counter 2's
// GATE is forwarded to the PIT as it is written and lives in the PIT's state,
// which the PIT saves and restores itself.
import type { BusDevice } from '../bus/index.ts';
import { DeviceStateLayout, type SavedDeviceState, type StatefulDevice } from './device-state.ts';

export const PortB = {
  TIMER2_GATE: 0x01,
  SPEAKER_DATA: 0x02,
  PARITY_CHECK_DISABLE: 0x04,
  CHANNEL_CHECK_DISABLE: 0x08,
  REFRESH: 0x10,
  TIMER2_OUT: 0x20,
} as const;

const WRITABLE = PortB.TIMER2_GATE | PortB.SPEAKER_DATA | PortB.PARITY_CHECK_DISABLE | PortB.CHANNEL_CHECK_DISABLE;

export const SYSTEM_CONTROL_PORT_STATE = new DeviceStateLayout('system-control-port', 1, {
  /** Bits 3:0 as last written (WRITABLE). */
  control: ['u8', 1],
  /** Bit 4, the refresh toggle: 1 if the last read returned it set. */
  refresh: ['u8', 1],
});

/** What port 0x61 needs of the PIT. */
export interface Timer2 {
  setGate(channel: number, high: boolean): void;
  output(channel: number): boolean;
}

export class SystemControlPort implements BusDevice, StatefulDevice {
  readonly name = 'system control port B';
  readonly byteWide = true;
  /** The shared state, laid out by SYSTEM_CONTROL_PORT_STATE. */
  readonly state: SharedArrayBuffer;
  private readonly control: Uint8Array;
  private readonly refresh: Uint8Array;

  /** The power-on state (every bit clear), to share between the threads that serve the port. */
  static createState(): SharedArrayBuffer {
    return SYSTEM_CONTROL_PORT_STATE.create();
  }

  /**
   * Without `state`, the port starts at power-on and clears the PIT's GATE 2
   * to match its bit 0. With `state`, another object already serves the port
   * over that buffer and the PIT's gate is left as it is.
   */
  constructor(private readonly pit: Timer2, state?: SharedArrayBuffer) {
    this.state = state ?? SystemControlPort.createState();
    const views = SYSTEM_CONTROL_PORT_STATE.views(this.state);
    this.control = views.control;
    this.refresh = views.refresh;
    if (!state) pit.setGate(2, false);
  }

  saveState(): SavedDeviceState {
    return SYSTEM_CONTROL_PORT_STATE.save(this.state);
  }

  /** Restores the port's bits only: the PIT restores its own GATE 2. */
  restoreState(saved: SavedDeviceState): void {
    SYSTEM_CONTROL_PORT_STATE.restore(saved, this.state);
  }

  read(offset: number, _size: number): number {
    if (offset !== 0) return 0xff;
    const refresh = (this.refresh[0]! ^= 1);
    return this.control[0]! | (refresh ? PortB.REFRESH : 0) | (this.pit.output(2) ? PortB.TIMER2_OUT : 0);
  }

  write(offset: number, _size: number, value: number): void {
    if (offset !== 0) return;
    this.control[0] = value & WRITABLE;
    this.pit.setGate(2, (value & PortB.TIMER2_GATE) !== 0);
  }
}
