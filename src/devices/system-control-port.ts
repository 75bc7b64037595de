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
import type { BusDevice } from '../bus/index.ts';

export const SYSTEM_CONTROL_PORT = 0x61;

export const PortB = {
  TIMER2_GATE: 0x01,
  SPEAKER_DATA: 0x02,
  PARITY_CHECK_DISABLE: 0x04,
  CHANNEL_CHECK_DISABLE: 0x08,
  REFRESH: 0x10,
  TIMER2_OUT: 0x20,
} as const;

const WRITABLE = PortB.TIMER2_GATE | PortB.SPEAKER_DATA | PortB.PARITY_CHECK_DISABLE | PortB.CHANNEL_CHECK_DISABLE;

/** What port 0x61 needs of the PIT. */
export interface Timer2 {
  setGate(channel: number, high: boolean): void;
  output(channel: number): boolean;
}

export class SystemControlPort implements BusDevice {
  readonly name = 'system control port B';
  readonly byteWide = true;
  private control = 0; // the writable bits
  private refresh = false;

  constructor(private readonly pit: Timer2) {
    pit.setGate(2, false); // bit 0 starts clear; keep the PIT's GATE in step
  }

  read(offset: number, _size: number): number {
    if (offset !== 0) return 0xff;
    this.refresh = !this.refresh;
    return this.control | (this.refresh ? PortB.REFRESH : 0) | (this.pit.output(2) ? PortB.TIMER2_OUT : 0);
  }

  write(offset: number, _size: number, value: number): void {
    if (offset !== 0) return;
    this.control = value & WRITABLE;
    this.pit.setGate(2, (value & PortB.TIMER2_GATE) !== 0);
  }
}
