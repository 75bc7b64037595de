// The PC's CMOS RAM and real-time clock (Motorola MC146818): the index port
// (0x70 on a PC) selects a byte (bit 7 masks NMI), the data port (0x71) reads
// or writes it. Register it as CMOS_PORT_COUNT ports.
//
// The clock is the host's wall clock (injected as `now`) plus an offset the
// guest can change, in UTC as QEMU and kvmtool give Linux guests. The time
// registers are encoded on every read in the format register B asks for (BCD
// or binary, 24- or 12-hour), so changing the format never leaves stale
// bytes behind, unlike the chip, which expects the guest to rewrite them.
// B.SET freezes what the guest reads; time written under SET (or written
// while the clock runs, as QEMU allows) becomes a new offset from the host.
//
// Not modelled: interrupts (no IRQ8 output: the periodic, alarm and update
// interrupts never fire), daylight saving (B.DSE is stored only), the
// square-wave output, and the divider chain (register A's DV and RS bits are
// stored; the clock never stops for them). Register C still reports the
// update (UF), periodic (PF) and alarm (AF) flags a polling guest may wait
// for, worked out when C is read. The alarm also wakes a machine sleeping in
// ACPI S3 (nextAlarmAtMs, for the PM1 block's RTC_EN).
//
// All of the chip's state is in one SharedArrayBuffer (CMOS_RTC_STATE): one
// object per vCPU thread over the same buffer is one chip, and the state can
// be saved and restored. Guest time is kept as an offset from the host's wall
// clock, so a restored clock goes on telling the time the guest set, moved on
// by however long the state was stored (as a battery-backed RTC would); a
// time frozen under B.SET stays frozen.
import type { BusDevice } from '../bus/index.ts';
import { DeviceStateLayout, type SavedDeviceState, type StatefulDevice } from './device-state.ts';

export const CMOS_PORT_COUNT = 2;

/** Offsets within the device's two ports. */
export const CmosPort = { INDEX: 0, DATA: 1 } as const;

/** CMOS byte indices with a meaning to the clock. */
export const CmosReg = {
  SECONDS: 0x00,
  SECONDS_ALARM: 0x01,
  MINUTES: 0x02,
  MINUTES_ALARM: 0x03,
  HOURS: 0x04,
  HOURS_ALARM: 0x05,
  DAY_OF_WEEK: 0x06,
  DAY_OF_MONTH: 0x07,
  MONTH: 0x08,
  YEAR: 0x09,
  A: 0x0a,
  B: 0x0b,
  C: 0x0c,
  D: 0x0d,
  CENTURY: 0x32, // the IBM PC/AT convention, also in ACPI's FADT
} as const;

export const RegA = { UIP: 0x80, DIVIDER: 0x70, RATE: 0x0f } as const;
export const RegB = { SET: 0x80, PIE: 0x40, AIE: 0x20, UIE: 0x10, SQWE: 0x08, BINARY: 0x04, HOURS_24: 0x02, DSE: 0x01 } as const;
export const RegC = { IRQF: 0x80, PF: 0x40, AF: 0x20, UF: 0x10 } as const;
export const RegD = { VRT: 0x80 } as const;

const INDEX_MASK = 0x7f;
const NMI_DISABLE = 0x80;
const HOUR_PM = 0x80;
const FIRST_PLAIN_BYTE = 0x0e;
/** Register A after power-on as firmware leaves it: 32.768 kHz time base, 1024 Hz rate. */
const DEFAULT_A = 0x26;
const DEFAULT_B = RegB.HOURS_24;
/**
 * How long before each second's update UIP reads 1. The chip gives 244 µs
 * warning plus a ~2 ms update; at the millisecond resolution of a Date, the
 * last millisecond of each second is the closest window that is never stuck.
 */
const UIP_WINDOW_MS = 1;
/** An alarm byte with both top bits set matches every value ("don't care"). */
const ALARM_DONT_CARE = 0xc0;
/** Every alarm setting goes off within a day, if at all. */
const DAY_MS = 24 * 60 * 60 * 1000;

/** A broken-down UTC time, as the clock registers hold it. */
interface ClockTime {
  second: number;
  minute: number;
  hour: number; // 0..23
  dayOfWeek: number; // 1..7, Sunday = 1
  day: number; // 1..31
  month: number; // 1..12
  year: number; // full year, e.g. 2025
}

/** Where each value sits in CMOS_RTC_STATE.regs. */
const R = {
  /** The byte port 0x71 reaches: bits 6:0 of the last index write. */
  INDEX: 0,
  /** Bit 7 of the last index write: NMIs masked. */
  NMI_DISABLED: 1,
  /** B.SET holds the clock: `frozen` is the time the guest reads and writes. */
  FROZEN: 2,
  /** A time register was written under SET: clearing SET takes the frozen time over. */
  FROZEN_WRITTEN: 3,
} as const;

/** The fields of CMOS_RTC_STATE.frozen, in the order of ClockTime. */
const FROZEN_FIELDS = ['second', 'minute', 'hour', 'dayOfWeek', 'day', 'month', 'year'] as const;

export const CMOS_RTC_STATE = new DeviceStateLayout('cmos-rtc', 1, {
  /**
   * The 128 bytes: plain CMOS RAM and the stored registers (alarms, A, B).
   * The clock bytes (0x00..0x09, 0x32), C and D are worked out when read;
   * their slots here stay 0.
   */
  bytes: ['u8', 128],
  /** The index port and the SET state, indexed by R. */
  regs: ['u8', 4],
  /** Guest time = host time + this, in ms; a whole number of seconds, so both tick together. */
  offsetMs: ['f64', 1],
  /** Guest time (ms) when C was last read: what UF and PF are measured from. */
  flagsCheckedAtMs: ['f64', 1],
  /** While SET is on: the held time, FROZEN_FIELDS. */
  frozen: ['i32', FROZEN_FIELDS.length],
});

export interface CmosRtcOptions {
  /** The wall clock; the default is the host's. */
  now?: () => Date;
  /** Initial contents of plain CMOS bytes (0x0E..0x7F except 0x32), by index; for a new state only. */
  bytes?: Readonly<Record<number, number>>;
  /**
   * The chip's state (CMOS_RTC_STATE), shared with the other objects that
   * serve the same chip; used as it is. Default: CmosRtc.createState(options).
   */
  state?: SharedArrayBuffer;
}

function toBcd(value: number): number {
  return (((value / 10) | 0) << 4) | value % 10;
}

function fromBcd(value: number): number {
  return (value >> 4) * 10 + (value & 0x0f);
}

function isClockIndex(index: number): boolean {
  return index < FIRST_PLAIN_BYTE || index === CmosReg.CENTURY;
}

export class CmosRtc implements BusDevice, StatefulDevice {
  readonly name = 'cmos-rtc';
  readonly byteWide = true;

  private readonly now: () => Date;
  /** The shared state, laid out by CMOS_RTC_STATE. */
  readonly state: SharedArrayBuffer;
  private readonly bytes: Uint8Array;
  private readonly regs: Uint8Array;
  private readonly offsetMs: Float64Array;
  private readonly flagsCheckedAtMs: Float64Array;
  private readonly frozen: Int32Array;

  /**
   * The power-on state of one chip, to share between the threads that serve
   * it: A and B as firmware leaves them, the clock at the host's time (`now`),
   * and `bytes` in the plain CMOS RAM.
   */
  static createState(options: Pick<CmosRtcOptions, 'now' | 'bytes'> = {}): SharedArrayBuffer {
    const state = CMOS_RTC_STATE.create();
    const views = CMOS_RTC_STATE.views(state);
    views.bytes[CmosReg.A] = DEFAULT_A;
    views.bytes[CmosReg.B] = DEFAULT_B;
    for (const [index, value] of Object.entries(options.bytes ?? {})) {
      checkPlainIndex(Number(index));
      views.bytes[Number(index)] = value & 0xff;
    }
    views.flagsCheckedAtMs[0] = (options.now ?? hostNow)().getTime(); // offset 0: guest time is host time
    return state;
  }

  constructor(options: CmosRtcOptions = {}) {
    this.now = options.now ?? hostNow;
    this.state = options.state ?? CmosRtc.createState(options);
    const views = CMOS_RTC_STATE.views(this.state);
    this.bytes = views.bytes;
    this.regs = views.regs;
    this.offsetMs = views.offsetMs;
    this.flagsCheckedAtMs = views.flagsCheckedAtMs;
    this.frozen = views.frozen;
  }

  saveState(): SavedDeviceState {
    return CMOS_RTC_STATE.save(this.state);
  }

  /** The RTC drives no interrupt line, so there is nothing to re-drive. */
  restoreState(saved: SavedDeviceState): void {
    CMOS_RTC_STATE.restore(saved, this.state);
  }

  /** What the RESET pin does on a reboot: interrupt enables and flags cleared; time and RAM kept. */
  reset(): void {
    this.bytes[CmosReg.B]! &= ~(RegB.PIE | RegB.AIE | RegB.UIE | RegB.SQWE);
    this.flagsCheckedAtMs[0] = this.guestMs();
  }

  /** Bit 7 of the last index write: NMIs are masked (the chipset acts on it, not the RTC). */
  get nmiMasked(): boolean {
    return this.regs[R.NMI_DISABLED] !== 0;
  }

  /** Sets a plain CMOS byte (0x0E..0x7F except the century byte 0x32): what the machine fills in. */
  setByte(index: number, value: number): void {
    checkPlainIndex(index);
    this.bytes[index] = value & 0xff;
  }

  /** Reads a plain CMOS byte (0x0E..0x7F except 0x32). */
  getByte(index: number): number {
    checkPlainIndex(index);
    return this.bytes[index]!;
  }

  read(offset: number, _size: number): number {
    if (offset !== CmosPort.DATA) return 0xff; // the index port is write-only
    return this.readRegister(this.regs[R.INDEX]!);
  }

  write(offset: number, _size: number, value: number): void {
    const byte = value & 0xff;
    if (offset === CmosPort.INDEX) {
      this.regs[R.INDEX] = byte & INDEX_MASK;
      this.regs[R.NMI_DISABLED] = byte & NMI_DISABLE ? 1 : 0;
    } else if (offset === CmosPort.DATA) {
      this.writeRegister(this.regs[R.INDEX]!, byte);
    }
  }

  private readRegister(index: number): number {
    switch (index) {
      case CmosReg.SECONDS: return this.encode(this.clockTime().second);
      case CmosReg.MINUTES: return this.encode(this.clockTime().minute);
      case CmosReg.HOURS: return this.encodeHours(this.clockTime().hour);
      case CmosReg.DAY_OF_WEEK: return this.encode(this.clockTime().dayOfWeek);
      case CmosReg.DAY_OF_MONTH: return this.encode(this.clockTime().day);
      case CmosReg.MONTH: return this.encode(this.clockTime().month);
      case CmosReg.YEAR: return this.encode(this.clockTime().year % 100);
      case CmosReg.CENTURY: return this.encode(Math.floor(this.clockTime().year / 100));
      case CmosReg.A: return this.bytes[CmosReg.A]! | (this.updateInProgress() ? RegA.UIP : 0);
      case CmosReg.C: return this.readFlags();
      case CmosReg.D: return RegD.VRT; // the battery is always good
      default: return this.bytes[index]!; // alarms, B and plain RAM
    }
  }

  private writeRegister(index: number, byte: number): void {
    switch (index) {
      case CmosReg.SECONDS:
      case CmosReg.MINUTES:
      case CmosReg.HOURS:
      case CmosReg.DAY_OF_WEEK:
      case CmosReg.DAY_OF_MONTH:
      case CmosReg.MONTH:
      case CmosReg.YEAR:
      case CmosReg.CENTURY:
        this.writeTime(index, byte);
        break;
      case CmosReg.A: this.bytes[CmosReg.A] = byte & ~RegA.UIP; break; // UIP is read-only
      case CmosReg.B: this.writeB(byte); break;
      case CmosReg.C: case CmosReg.D: break; // read-only
      default: this.bytes[index] = byte; break;
    }
  }

  private writeB(byte: number): void {
    const wasSet = this.regs[R.FROZEN] !== 0;
    if (byte & RegB.SET) {
      byte &= ~RegB.UIE; // the datasheet: setting SET clears UIE
      if (!wasSet) {
        this.freeze(this.runningTime());
        this.regs[R.FROZEN_WRITTEN] = 0;
      }
    } else if (wasSet) {
      // Leaving SET starts the clock from the time the guest wrote. If it
      // wrote none, the clock has kept time underneath (the chip would have
      // lost the seconds spent under SET; the host clock is better).
      if (this.regs[R.FROZEN_WRITTEN]) this.commit(this.frozenTime());
      this.regs[R.FROZEN] = 0;
      this.flagsCheckedAtMs[0] = this.guestMs();
    }
    this.bytes[CmosReg.B] = byte;
  }

  /**
   * A time register write. Under SET it changes the frozen time, taken over
   * when SET is cleared; otherwise it moves the running clock at once (as
   * QEMU does). The day of the week follows from the date: a write to it
   * only shows while SET holds the clock.
   */
  private writeTime(index: number, byte: number): void {
    const frozen = this.regs[R.FROZEN] !== 0;
    const time = frozen ? this.frozenTime() : this.runningTime();
    switch (index) {
      case CmosReg.SECONDS: time.second = this.decode(byte); break;
      case CmosReg.MINUTES: time.minute = this.decode(byte); break;
      case CmosReg.HOURS: time.hour = this.decodeHours(byte); break;
      case CmosReg.DAY_OF_WEEK: time.dayOfWeek = this.decode(byte); break;
      case CmosReg.DAY_OF_MONTH: time.day = this.decode(byte); break;
      case CmosReg.MONTH: time.month = this.decode(byte); break;
      case CmosReg.YEAR: time.year = Math.floor(time.year / 100) * 100 + this.decode(byte); break;
      case CmosReg.CENTURY: time.year = this.decode(byte) * 100 + (time.year % 100); break;
    }
    if (frozen) {
      this.freeze(time);
      this.regs[R.FROZEN_WRITTEN] = 1;
    } else {
      this.commit(time);
    }
  }

  /** Makes `time` the clock's current second; out-of-range fields roll over as in Date.UTC. */
  private commit(time: ClockTime): void {
    const date = new Date(0);
    date.setUTCFullYear(time.year, time.month - 1, time.day); // not Date.UTC: it maps years 0..99 to 19xx
    date.setUTCHours(time.hour, time.minute, time.second, 0);
    const hostMs = this.now().getTime();
    // Keep the host's position within the second, so guest seconds tick with the host's.
    this.offsetMs[0] = date.getTime() - (hostMs - mod(hostMs, 1000));
  }

  private clockTime(): ClockTime {
    return this.regs[R.FROZEN] ? this.frozenTime() : this.runningTime();
  }

  /** Holds `time` as what the guest reads and writes while SET is on. */
  private freeze(time: ClockTime): void {
    FROZEN_FIELDS.forEach((field, i) => (this.frozen[i] = time[field]));
    this.regs[R.FROZEN] = 1;
  }

  private frozenTime(): ClockTime {
    const f = this.frozen;
    return { second: f[0]!, minute: f[1]!, hour: f[2]!, dayOfWeek: f[3]!, day: f[4]!, month: f[5]!, year: f[6]! };
  }

  private runningTime(): ClockTime {
    const date = new Date(this.guestMs());
    return {
      second: date.getUTCSeconds(),
      minute: date.getUTCMinutes(),
      hour: date.getUTCHours(),
      dayOfWeek: date.getUTCDay() + 1,
      day: date.getUTCDate(),
      month: date.getUTCMonth() + 1,
      year: date.getUTCFullYear(),
    };
  }

  private guestMs(): number {
    return this.now().getTime() + this.offsetMs[0]!;
  }

  private updateInProgress(): boolean {
    return !this.regs[R.FROZEN] && mod(this.guestMs(), 1000) >= 1000 - UIP_WINDOW_MS;
  }

  /**
   * When the alarm next goes off, in host time (ms, as Date.getTime()): at
   * the first update, within a day, whose new time matches the three alarm
   * bytes (a byte with both top bits set matches any value). Null when B.AIE
   * is clear or SET holds the clock, or when no time of day matches.
   */
  nextAlarmAtMs(): number | null {
    if (!(this.bytes[CmosReg.B]! & RegB.AIE) || this.regs[R.FROZEN]) return null;
    const nowMs = this.guestMs();
    const at = this.firstAlarmBetween(nowMs, nowMs + DAY_MS);
    return at === null ? null : at - this.offsetMs[0]!;
  }

  /** The guest time (ms) of the first update after `fromMs`, up to `toMs`, that matches the alarm; null: none. */
  private firstAlarmBetween(fromMs: number, toMs: number): number | null {
    const alarm = [CmosReg.SECONDS_ALARM, CmosReg.MINUTES_ALARM, CmosReg.HOURS_ALARM].map((i) => this.bytes[i]!);
    const matches = (byte: number, value: number) => (byte & ALARM_DONT_CARE) === ALARM_DONT_CARE || byte === value;
    const last = Math.floor(Math.min(toMs, fromMs + DAY_MS) / 1000);
    for (let second = Math.floor(fromMs / 1000) + 1; second <= last; second++) {
      const t = new Date(second * 1000);
      if (matches(alarm[0]!, this.encode(t.getUTCSeconds())) && matches(alarm[1]!, this.encode(t.getUTCMinutes()))
        && matches(alarm[2]!, this.encodeHours(t.getUTCHours()))) return second * 1000;
    }
    return null;
  }

  /** Register C: the flags raised since it was last read; reading clears them. */
  private readFlags(): number {
    const nowMs = this.guestMs();
    const sinceMs = this.flagsCheckedAtMs[0]!;
    this.flagsCheckedAtMs[0] = nowMs;
    let flags = 0;
    if (!this.regs[R.FROZEN] && Math.floor(nowMs / 1000) !== Math.floor(sinceMs / 1000)) flags |= RegC.UF;
    if (!this.regs[R.FROZEN] && this.firstAlarmBetween(sinceMs, nowMs) !== null) flags |= RegC.AF;
    const rate = this.bytes[CmosReg.A]! & RegA.RATE;
    if (rate !== 0) {
      // RS 3..15 divide 32.768 kHz down to 8192..2 Hz; RS 1 and 2 repeat RS 8 and 9.
      const hz = 32768 >> ((rate < 3 ? rate + 7 : rate) - 1);
      const periodMs = 1000 / hz;
      if (Math.floor(nowMs / periodMs) !== Math.floor(sinceMs / periodMs)) flags |= RegC.PF;
    }
    // B's enable bits sit where C's flags do (PIE/PF, AIE/AF, UIE/UF).
    if (flags & this.bytes[CmosReg.B]! & (RegB.PIE | RegB.AIE | RegB.UIE)) flags |= RegC.IRQF;
    return flags;
  }

  private encode(value: number): number {
    return this.bytes[CmosReg.B]! & RegB.BINARY ? value : toBcd(value);
  }

  private decode(value: number): number {
    return this.bytes[CmosReg.B]! & RegB.BINARY ? value : fromBcd(value);
  }

  /** 12-hour mode counts 12, 1, ..., 11 with bit 7 set in the afternoon. */
  private encodeHours(hour: number): number {
    if (this.bytes[CmosReg.B]! & RegB.HOURS_24) return this.encode(hour);
    return this.encode(hour % 12 || 12) | (hour >= 12 ? HOUR_PM : 0);
  }

  private decodeHours(value: number): number {
    if (this.bytes[CmosReg.B]! & RegB.HOURS_24) return this.decode(value);
    return (this.decode(value & ~HOUR_PM) % 12) + (value & HOUR_PM ? 12 : 0);
  }
}

function checkPlainIndex(index: number): void {
  if (!Number.isInteger(index) || index < FIRST_PLAIN_BYTE || index > INDEX_MASK || isClockIndex(index)) {
    throw new RangeError(`CMOS byte 0x${index.toString(16)} is not plain storage (0x0e..0x7f except 0x32)`);
  }
}

function hostNow(): Date {
  return new Date();
}

/** The remainder with the divisor's sign (a % b is negative for negative a). */
function mod(a: number, b: number): number {
  return ((a % b) + b) % b;
}
