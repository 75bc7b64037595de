// The Intel 8254 Programmable Interval Timer, as wired in a PC: ports
// 0x40-0x43, a 1.193182 MHz CLK shared by the three counters, counter 0's OUT
// on IRQ0, counter 2's GATE on port 0x61 (see system-control-port.ts).
// Behaviour follows the Intel 82C54 datasheet; where it is silent, QEMU's
// hw/timer/i8254*.c.
//
// Nothing ticks. Every counter is a function of the injected clock: the CLK
// input's rising edges are numbered ("ticks", tick k at ceil(k * 1e9 / PIT_HZ)
// ns), and a counter remembers only the tick its current counting sequence
// started at. Reading a counter, its OUT pin or the next IRQ0 edge is
// arithmetic on (now - start), done in whole ticks so it stays exact.
//
// State: every mutable bit of the PIT (PIT8254_STATE) lives in one
// SharedArrayBuffer, so the Pit8254 objects of several vCPU threads over one
// buffer are one PIT, and saving it is copying the buffer. Its ticks are the
// machine clock's (clock.ts), which is saved and restored beside it.
//
// Timing conventions, per the datasheet's mode descriptions: a count written
// (or a GATE trigger) at tick t is loaded into the counting element by the CLK
// pulse at t+1, which does not decrement it. So with initial count N, in mode 0
// OUT goes high N+1 CLK pulses after the write; in mode 2 OUT is low for one
// CLK while the counter holds 1, and rises (IRQ0's edge) every N CLKs.
//
// Where the datasheet leaves things open:
// - Power-on state (datasheet: undefined) is QEMU's, which is also what a PC
//   BIOS leaves: every counter in mode 3, LSB then MSB, binary, count 0
//   (65536) loaded; counter 0 therefore runs at 18.2 Hz until the guest
//   reprograms it. (KVM's in-kernel PIT starts silent instead.)
// - CE before the load pulse, and after a control word, is undefined on the
//   chip: it reads as the new count, and as the value it held, respectively.
// - The control word register reads 0xFF (no read operation: a floating bus).
// - A control word resets the read/write flip-flops but keeps an unread
//   latched count or status (QEMU does the same).
// - Modes 6 and 7 behave as 2 and 3; the status byte shows M2..M0 as written.
// - Counts of 1 in modes 2 and 3 are below the datasheet's minimum: OUT stays
//   low (mode 2) or high (mode 3) and makes no IRQ0 edges.
// - BCD digits above 9 are taken at face value.
// - Modes 4 and 5 strobe OUT low for one CLK; IRQ0's rising edge is at the
//   end of the strobe (QEMU inverts the strobe and raises IRQ0 one CLK earlier).
import type { BusDevice } from '../bus/index.ts';
import type { Clock } from './clock.ts';
import { DeviceStateLayout, type SavedDeviceState, type StatefulDevice, type StateViews } from './device-state.ts';
import type { InterruptLine } from './interrupt-line.ts';

export const PIT_HZ = 1_193_182;
export const PIT_PORT_COUNT = 4;
/** Offsets within the PIT's four ports (0x40-0x43 on a PC). */
export const PitReg = { COUNTER0: 0, COUNTER1: 1, COUNTER2: 2, CONTROL: 3 } as const;
const NS_PER_S = 1_000_000_000;

/**
 * The number of the last CLK edge at or before `ns`: floor(ns * PIT_HZ / 1e9),
 * computed as whole seconds plus a remainder so every product stays below 2^53
 * and the result is exact.
 */
export function pitTicksAt(ns: number): number {
  let s = Math.floor(ns / NS_PER_S);
  let rem = ns - s * NS_PER_S;
  if (rem < 0) { s -= 1; rem += NS_PER_S; } else if (rem >= NS_PER_S) { s += 1; rem -= NS_PER_S; }
  return s * PIT_HZ + Math.floor((rem * PIT_HZ) / NS_PER_S);
}

/** The first whole nanosecond at which CLK edge `tick` has happened (inverse of pitTicksAt). */
export function pitTickNs(tick: number): number {
  let s = Math.floor(tick / PIT_HZ);
  let rem = tick - s * PIT_HZ;
  if (rem < 0) { s -= 1; rem += PIT_HZ; } else if (rem >= PIT_HZ) { s += 1; rem -= PIT_HZ; }
  return s * NS_PER_S + Math.ceil((rem * NS_PER_S) / PIT_HZ);
}

// Control word fields: SC1 SC0 | RW1 RW0 | M2 M1 M0 | BCD.
const RW_LSB = 1;
const RW_MSB = 2;
const RW_WORD = 3; // LSB then MSB
const READ_BACK = 3; // SC = 11
const READ_BACK_NOT_COUNT = 0x20;
const READ_BACK_NOT_STATUS = 0x10;

function fromBcd(v: number): number {
  // Digits above 9 are undefined on the chip; they keep their face value here.
  return ((v >> 12) & 15) * 1000 + ((v >> 8) & 15) * 100 + ((v >> 4) & 15) * 10 + (v & 15);
}

function toBcd(n: number): number {
  return (Math.floor(n / 1000) % 10 << 12) | (Math.floor(n / 100) % 10 << 8) | (Math.floor(n / 10) % 10 << 4) | n % 10;
}

/** The value a mode-3 counter holds `p` CLKs into its period of `n` (datasheet, mode 3). */
function squareWaveCount(n: number, p: number): number {
  const high = (n + 1) >> 1; // ceil(n/2) CLKs high, floor(n/2) low
  const odd = n & 1;
  if (p < high) return p === 0 ? n : n - 2 * p + odd; // odd: N, N-1, N-3, ... 2
  const q = p - high;
  return q === 0 ? n : n - 2 * q - odd; // odd: N, N-3, N-5, ... 2
}

// OUT's rising edges as positions d in a counting sequence, where d counts CLK
// pulses since the write or trigger (d = 1 is the pulse that loads the count).

/** The first rising edge of OUT at a position after `d`, or null if there is none. */
function nextRisingEdge(mode: number, n: number, d: number): number | null {
  switch (mode) {
    case 0: case 1: return d < n + 1 ? n + 1 : null; // terminal count / end of the one-shot
    case 4: case 5: return d < n + 2 ? n + 2 : null; // end of the one-CLK strobe
    default: // 2, 3: every reload, d = 1 + jN for j >= 1 (counts below 2 are illegal: no edges)
      if (n < 2) return null;
      return d < 1 ? 1 + n : 1 + (Math.floor((d - 1) / n) + 1) * n;
  }
}

/** How many rising edges of OUT lie at positions in (da, db]. */
function risingEdgesBetween(mode: number, n: number, da: number, db: number): number {
  switch (mode) {
    case 0: case 1: return da < n + 1 && n + 1 <= db ? 1 : 0;
    case 4: case 5: return da < n + 2 && n + 2 <= db ? 1 : 0;
    default: {
      if (n < 2) return 0;
      // Reloads that have happened by position d: floor((d-1)/N) for d >= 1.
      return (db >= 1 ? Math.floor((db - 1) / n) : 0) - (da >= 1 ? Math.floor((da - 1) / n) : 0);
    }
  }
}

/**
 * The PIT's whole state: one element per counter in each counter field (index
 * = counter number), then counter 0's IRQ0 statistics. Times are CLK tick
 * numbers of the machine's clock (pitTicksAt of its ns), so a saved PIT is
 * meaningful only with the guest clock saved beside it (clock.ts).
 */
export const PIT8254_STATE = new DeviceStateLayout('pit8254', 1, {
  // Control word, as last written.
  modeBits: ['u8', 3], // M2..M0 as written (modes 6 and 7 act as 2 and 3; status shows them as written)
  rw: ['u8', 3], // RW1 RW0: 1 LSB only, 2 MSB only, 3 LSB then MSB
  bcd: ['u8', 3], // 1: four BCD digits
  // Read/write logic: separate read and write flip-flops for LSB-then-MSB
  // access (the datasheet allows "read LSB, write new LSB, read MSB, write new MSB").
  readMsbNext: ['u8', 3],
  writeMsbNext: ['u8', 3],
  writeLsb: ['u8', 3], // the LSB of a count whose MSB has not been written yet
  // Output latches: a latched count (up to two bytes, the next to read first) and a status byte.
  latchedBytes: ['u8', 6], // counter i: [2i] next, [2i + 1] after it
  latchedCount: ['u8', 3], // latched bytes not read yet: 0, 1 or 2
  statusLatched: ['u8', 3],
  status: ['u8', 3],
  // GATE input: tied high for counters 0 and 1 on a PC; counter 2's is port 0x61 bit 0.
  gate: ['u8', 3],
  // Count register (CR), as clocks: 0 written means 65536 (10000 in BCD).
  crN: ['i32', 3],
  hasCount: ['u8', 3], // a count was written since the control word (modes 1 and 5 wait for it and a trigger)
  nullUntilTick: ['f64', 3], // NULL COUNT until the CLK pulse that moves CR into CE (Infinity: not yet scheduled)
  // The counting sequence. While `armed`, CE and OUT are functions of
  // d = base + (tick - runTick) (frozen at `base` when not `running`).
  armed: ['u8', 3],
  n: ['i32', 3], // the count CE is running with
  base: ['f64', 3],
  runTick: ['f64', 3],
  running: ['u8', 3],
  prevOut: ['u8', 3], // OUT during d = 0, before the load pulse (what it was before a mode 1/5 trigger)
  idleCE: ['i32', 3], // CE shown while not armed: it keeps what it held (the datasheet: undefined)
  switchTick: ['f64', 3], // modes 2/3: a count written while counting takes over at this tick (Infinity: none)
  switchToLowHalf: ['u8', 3], // mode 3: ... and starts in the low half of its period
  // Rising edges of OUT not yet taken by the IRQ logic, counted up to syncedTick.
  syncedTick: ['f64', 3],
  risingEdges: ['f64', 3],
  firstEdgeTick: ['f64', 3],
  // What became of counter 0's rising edges (Irq0Counts).
  irq0Ticks: ['f64', 1],
  irq0Delivered: ['f64', 1],
  irq0Coalesced: ['f64', 1],
  irq0Ignored: ['f64', 1],
});

type PitViews = StateViews<typeof PIT8254_STATE.fields>;

/**
 * One counter: control logic, count register (CR), counting element (CE),
 * latches, GATE and OUT. It holds nothing itself: every field below is its
 * element of a PIT8254_STATE field, so PIT objects of several threads over one
 * buffer are one PIT.
 */
class Counter {
  constructor(private readonly s: PitViews, private readonly i: number) {}

  // --- state: this counter's element of each PIT8254_STATE field ---------------

  get modeBits(): number { return this.s.modeBits[this.i]; }
  set modeBits(v: number) { this.s.modeBits[this.i] = v; }
  /** The effective mode: 6 and 7 act as 2 and 3. */
  get mode(): number { const m = this.modeBits; return m > 5 ? m - 4 : m; }
  get rw(): number { return this.s.rw[this.i]; }
  set rw(v: number) { this.s.rw[this.i] = v; }
  get bcd(): boolean { return this.s.bcd[this.i] === 1; }
  set bcd(v: boolean) { this.s.bcd[this.i] = v ? 1 : 0; }
  private get readMsbNext(): boolean { return this.s.readMsbNext[this.i] === 1; }
  private set readMsbNext(v: boolean) { this.s.readMsbNext[this.i] = v ? 1 : 0; }
  private get writeMsbNext(): boolean { return this.s.writeMsbNext[this.i] === 1; }
  private set writeMsbNext(v: boolean) { this.s.writeMsbNext[this.i] = v ? 1 : 0; }
  private get writeLsb(): number { return this.s.writeLsb[this.i]; }
  private set writeLsb(v: number) { this.s.writeLsb[this.i] = v; }
  private get latchedCount(): number { return this.s.latchedCount[this.i]; }
  private set latchedCount(v: number) { this.s.latchedCount[this.i] = v; }
  private get statusLatched(): boolean { return this.s.statusLatched[this.i] === 1; }
  private set statusLatched(v: boolean) { this.s.statusLatched[this.i] = v ? 1 : 0; }
  private get status(): number { return this.s.status[this.i]; }
  private set status(v: number) { this.s.status[this.i] = v; }
  get gate(): boolean { return this.s.gate[this.i] === 1; }
  private set gate(v: boolean) { this.s.gate[this.i] = v ? 1 : 0; }
  private get crN(): number { return this.s.crN[this.i]; }
  private set crN(v: number) { this.s.crN[this.i] = v; }
  private get hasCount(): boolean { return this.s.hasCount[this.i] === 1; }
  private set hasCount(v: boolean) { this.s.hasCount[this.i] = v ? 1 : 0; }
  private get nullUntilTick(): number { return this.s.nullUntilTick[this.i]; }
  private set nullUntilTick(v: number) { this.s.nullUntilTick[this.i] = v; }
  private get armed(): boolean { return this.s.armed[this.i] === 1; }
  private set armed(v: boolean) { this.s.armed[this.i] = v ? 1 : 0; }
  private get n(): number { return this.s.n[this.i]; }
  private set n(v: number) { this.s.n[this.i] = v; }
  private get base(): number { return this.s.base[this.i]; }
  private set base(v: number) { this.s.base[this.i] = v; }
  private get runTick(): number { return this.s.runTick[this.i]; }
  private set runTick(v: number) { this.s.runTick[this.i] = v; }
  private get running(): boolean { return this.s.running[this.i] === 1; }
  private set running(v: boolean) { this.s.running[this.i] = v ? 1 : 0; }
  private get prevOut(): boolean { return this.s.prevOut[this.i] === 1; }
  private set prevOut(v: boolean) { this.s.prevOut[this.i] = v ? 1 : 0; }
  private get idleCE(): number { return this.s.idleCE[this.i]; }
  private set idleCE(v: number) { this.s.idleCE[this.i] = v; }
  private get switchTick(): number { return this.s.switchTick[this.i]; }
  private set switchTick(v: number) { this.s.switchTick[this.i] = v; }
  private get switchToLowHalf(): boolean { return this.s.switchToLowHalf[this.i] === 1; }
  private set switchToLowHalf(v: boolean) { this.s.switchToLowHalf[this.i] = v ? 1 : 0; }
  private get syncedTick(): number { return this.s.syncedTick[this.i]; }
  private set syncedTick(v: number) { this.s.syncedTick[this.i] = v; }
  private get risingEdges(): number { return this.s.risingEdges[this.i]; }
  private set risingEdges(v: number) { this.s.risingEdges[this.i] = v; }
  private get firstEdgeTick(): number { return this.s.firstEdgeTick[this.i]; }
  private set firstEdgeTick(v: number) { this.s.firstEdgeTick[this.i] = v; }

  /**
   * Power-on state, as QEMU (and a PC BIOS) leave it: mode 3, LSB then MSB,
   * binary, count 0 (65536) loaded at `tick`. Writes every field.
   */
  powerOn(gate: boolean, tick: number): void {
    this.modeBits = 3;
    this.rw = RW_WORD;
    this.bcd = false;
    this.readMsbNext = false;
    this.writeMsbNext = false;
    this.writeLsb = 0;
    this.s.latchedBytes[2 * this.i] = 0;
    this.s.latchedBytes[2 * this.i + 1] = 0;
    this.latchedCount = 0;
    this.statusLatched = false;
    this.status = 0;
    this.gate = gate;
    this.crN = 0x10000;
    this.idleCE = 0;
    this.switchToLowHalf = false;
    this.syncedTick = tick;
    this.risingEdges = 0;
    this.firstEdgeTick = 0;
    this.hasCount = true;
    this.nullUntilTick = Infinity;
    this.start(tick, true); // armed, n, base, runTick, running, prevOut, switchTick
    this.nullUntilTick = tick; // loaded before anyone looks
  }

  private get modulus(): number {
    return this.bcd ? 10000 : 0x10000;
  }

  private gated(): boolean {
    return this.mode === 0 || this.mode === 2 || this.mode === 3 || this.mode === 4;
  }

  private dAt(tick: number): number {
    return this.running ? this.base + (tick - this.runTick) : this.base;
  }

  /** Brings the counter to `tick`: takes over a pending count and counts OUT's rising edges. */
  sync(tick: number): void {
    if (tick <= this.syncedTick) return;
    if (this.switchTick <= tick) {
      this.countEdgesTo(this.switchTick);
      this.n = this.crN;
      this.base = this.switchToLowHalf ? 1 + ((this.crN + 1) >> 1) : 1;
      this.runTick = this.switchTick;
      this.switchTick = Infinity;
    }
    this.countEdgesTo(tick);
  }

  private countEdgesTo(tick: number): void {
    if (this.armed && this.running) {
      const da = this.dAt(this.syncedTick);
      const edges = risingEdgesBetween(this.mode, this.n, da, this.dAt(tick));
      if (edges > 0) {
        if (this.risingEdges === 0) this.firstEdgeTick = this.runTick + (nextRisingEdge(this.mode, this.n, da)! - this.base);
        this.risingEdges += edges;
      }
    }
    this.syncedTick = tick;
  }

  /** Records a rising edge caused by programming (OUT low before a change at `tick`, high after). */
  noteChange(outBefore: boolean, tick: number): void {
    if (outBefore || !this.outAt(tick)) return;
    if (this.risingEdges === 0) this.firstEdgeTick = tick;
    this.risingEdges++;
  }

  takeEdges(): number {
    const edges = this.risingEdges;
    this.risingEdges = 0;
    return edges;
  }

  /** The tick of the first rising edge of OUT not yet taken, or null (none foreseeable). */
  nextEdgeTick(): number | null {
    if (this.risingEdges > 0) return this.firstEdgeTick;
    if (!this.armed || !this.running) return null;
    const e = nextRisingEdge(this.mode, this.n, this.dAt(this.syncedTick));
    const tick = e === null ? null : this.runTick + (e - this.base);
    if (this.switchTick !== Infinity && (tick === null || tick > this.switchTick)) {
      const base = this.switchToLowHalf ? 1 + ((this.crN + 1) >> 1) : 1;
      const e2 = nextRisingEdge(this.mode, this.crN, base);
      return e2 === null ? null : this.switchTick + (e2 - base);
    }
    return tick;
  }

  /** OUT at `tick` (call sync(tick) first). */
  outAt(tick: number): boolean {
    if (!this.armed) return this.mode !== 0; // after a control word: mode 0 low, the others high
    const mode = this.mode;
    if ((mode === 2 || mode === 3) && !this.gate) return true; // GATE low forces OUT high
    const d = this.dAt(tick);
    if (d === 0) return this.prevOut;
    const n = this.n;
    switch (mode) {
      case 0: case 1: return d > n; // low until terminal count (mode 1: from the trigger)
      case 2: return (d - 1) % n !== n - 1; // low for the one CLK the counter holds 1
      case 3: return (d - 1) % n < (n + 1) >> 1; // high ceil(N/2), low floor(N/2)
      default: return d !== n + 1; // 4, 5: low for one CLK at terminal count
    }
  }

  /** CE at `tick` as a binary number below the modulus (call sync(tick) first). */
  private countAt(tick: number): number {
    const m = this.modulus;
    if (!this.armed) return this.idleCE % m;
    const d = this.dAt(tick);
    const n = this.n;
    if (d === 0) return n % m; // before the load pulse; undefined on the chip, the new count here
    switch (this.mode) {
      case 2: return (n - ((d - 1) % n)) % m; // N, N-1, ... 1, N, ...
      case 3: return squareWaveCount(n, (d - 1) % n) % m;
      default: return (((n - (d - 1)) % m) + m) % m; // 0, 1, 4, 5: keeps counting down past 0, wrapping
    }
  }

  /** CE as the guest reads it: binary, or four BCD digits. */
  private shownCount(tick: number): number {
    const count = this.countAt(tick);
    return this.bcd ? toBcd(count) : count;
  }

  private nullCount(tick: number): boolean {
    return tick < this.nullUntilTick;
  }

  /** Starts a counting sequence at `tick`: the count is loaded by the next CLK pulse. */
  private start(tick: number, prevOut: boolean): void {
    this.armed = true;
    this.n = this.crN;
    this.prevOut = prevOut;
    this.switchTick = Infinity;
    this.runTick = tick;
    this.nullUntilTick = Math.min(this.nullUntilTick, tick + 1);
    if (this.gated() && !this.gate) {
      // The load pulse does not depend on GATE; counting does.
      this.base = 1;
      this.running = false;
    } else {
      this.base = 0;
      this.running = true;
    }
  }

  // --- control word ------------------------------------------------------

  program(modeBits: number, rw: number, bcd: boolean, tick: number): void {
    this.idleCE = this.countAt(tick);
    this.modeBits = modeBits;
    this.rw = rw;
    this.bcd = bcd;
    this.readMsbNext = false;
    this.writeMsbNext = false;
    this.armed = false;
    this.hasCount = false;
    this.switchTick = Infinity;
    this.nullUntilTick = Infinity; // writing a control word sets NULL COUNT
  }

  /** Counter latch command (and read-back with COUNT): a second latch before the read is ignored. */
  latchCount(tick: number): void {
    if (this.latchedCount > 0) return;
    const v = this.shownCount(tick);
    const bytes = this.s.latchedBytes;
    const at = 2 * this.i;
    if (this.rw === RW_LSB) {
      bytes[at] = v & 0xff;
      this.latchedCount = 1;
    } else if (this.rw === RW_MSB) {
      bytes[at] = v >> 8;
      this.latchedCount = 1;
    } else {
      bytes[at] = v & 0xff;
      bytes[at + 1] = v >> 8;
      this.latchedCount = 2;
    }
  }

  /** Read-back with STATUS: OUTPUT | NULL COUNT | RW1 RW0 | M2 M1 M0 | BCD. */
  latchStatus(tick: number): void {
    if (this.statusLatched) return;
    this.status = (this.outAt(tick) ? 0x80 : 0) | (this.nullCount(tick) ? 0x40 : 0) |
      (this.rw << 4) | (this.modeBits << 1) | (this.bcd ? 1 : 0);
    this.statusLatched = true;
  }

  // --- data port -----------------------------------------------------------

  read(tick: number): number {
    if (this.statusLatched) { // status first, then a latched count
      this.statusLatched = false;
      return this.status;
    }
    const latched = this.latchedCount;
    if (latched > 0) {
      const bytes = this.s.latchedBytes;
      const at = 2 * this.i;
      const byte = bytes[at];
      bytes[at] = bytes[at + 1]; // the MSB of a two-byte latch is next
      this.latchedCount = latched - 1;
      return byte;
    }
    const v = this.shownCount(tick);
    if (this.rw === RW_LSB) return v & 0xff;
    if (this.rw === RW_MSB) return v >> 8;
    this.readMsbNext = !this.readMsbNext;
    return this.readMsbNext ? v & 0xff : v >> 8;
  }

  write(byte: number, tick: number): void {
    if (this.rw === RW_LSB) return this.loadCount(byte, tick);
    if (this.rw === RW_MSB) return this.loadCount(byte << 8, tick);
    if (!this.writeMsbNext) {
      this.writeMsbNext = true;
      this.writeLsb = byte;
      if (this.mode === 0 && this.armed) {
        // Mode 0: the first byte of a new count stops counting and sets OUT low.
        this.idleCE = this.countAt(tick);
        this.armed = false;
      }
      return;
    }
    this.writeMsbNext = false;
    this.loadCount(this.writeLsb | (byte << 8), tick);
  }

  /** A complete count has been written to CR. */
  private loadCount(raw: number, tick: number): void {
    this.crN = (this.bcd ? fromBcd(raw) : raw) || this.modulus;
    this.hasCount = true;
    this.nullUntilTick = Infinity;
    const mode = this.mode;
    // Modes 1 and 5: the count waits for the next trigger on GATE.
    if (mode === 1 || mode === 5) return;
    if ((mode === 2 || mode === 3) && this.armed && this.dAt(tick) > 0) {
      // Modes 2 and 3 while counting: the current cycle (mode 2) or half-cycle
      // (mode 3) finishes with the old count; the new one is loaded at its end,
      // or by a trigger if GATE is low now.
      if (this.running) this.scheduleSwitch(tick);
      return;
    }
    // Modes 0 and 4, and the first count after a mode 2/3 control word: loaded
    // on the next CLK pulse. Mode 0 OUT is low until terminal count.
    this.start(tick, mode !== 0);
  }

  private scheduleSwitch(tick: number): void {
    const d = this.dAt(tick);
    const n = this.n;
    const p = (d - 1) % n; // position in the current period
    let end: number;
    if (this.mode === 2) {
      end = d + (n - p);
      this.switchToLowHalf = false;
    } else {
      const high = (n + 1) >> 1;
      this.switchToLowHalf = p < high;
      end = this.switchToLowHalf ? d + (high - p) : d + (n - p);
    }
    this.switchTick = this.runTick + (end - this.base);
    this.nullUntilTick = this.switchTick;
  }

  // --- GATE ------------------------------------------------------------------

  setGate(high: boolean, tick: number): void {
    if (high === this.gate) return;
    const outBefore = this.outAt(tick);
    this.gate = high;
    switch (this.mode) {
      case 0: case 4: // GATE enables counting
        if (!this.armed) return;
        if (high) {
          this.runTick = tick;
          this.running = true;
        } else {
          this.base = this.dAt(tick);
          this.running = false;
        }
        return;
      case 2: case 3: // low: stop, OUT high; rising edge: reload and start again
        if (high) {
          if (this.hasCount) this.start(tick, true);
        } else if (this.armed) {
          this.base = this.dAt(tick);
          this.running = false;
          if (this.switchTick !== Infinity) {
            this.switchTick = Infinity; // the pending count now waits for the trigger
            this.nullUntilTick = Infinity;
          }
        }
        return;
      default: // 1, 5: a rising edge triggers; the level does not matter
        if (high && this.hasCount) this.start(tick, outBefore);
    }
  }
}

export interface Pit8254Options {
  /** Called after the guest programmed a counter: counter 0's next IRQ0 edge may have moved. */
  onReprogrammed?: () => void;
  /**
   * The PIT's state (PIT8254_STATE), as Pit8254.createState() made it or as
   * another thread's Pit8254 over it left it; absent: a new PIT at power-on.
   */
  state?: SharedArrayBuffer;
}

/** What became of counter 0's rising edges (IRQ0 ticks). */
export interface Irq0Counts {
  /** Rising edges of OUT0 so far. */
  ticks: number;
  /** Edges that reached the interrupt controller as a new request. */
  delivered: number;
  /** Edges merged into a request the guest had not acknowledged yet (see pollTimer). */
  coalesced: number;
  /** Edges the controller ignored: IRQ0 masked, or no controller. */
  ignored: number;
}

export class Pit8254 implements BusDevice, StatefulDevice {
  readonly name = 'pit';
  /** Every mutable bit of the PIT (PIT8254_STATE): share it to serve the PIT from several threads. */
  readonly state: SharedArrayBuffer;
  private readonly s: PitViews;
  private readonly counters: readonly [Counter, Counter, Counter];
  private readonly onReprogrammed: (() => void) | undefined;

  /** A PIT's state at power-on, at `clock`'s present time. */
  static createState(clock: Clock): SharedArrayBuffer {
    const state = PIT8254_STATE.create();
    const s = PIT8254_STATE.views(state);
    const tick = pitTicksAt(clock.nowNs());
    // Counters 0 and 1 have GATE tied high on a PC; counter 2's GATE is port 0x61 bit 0.
    new Counter(s, 0).powerOn(true, tick);
    new Counter(s, 1).powerOn(true, tick);
    new Counter(s, 2).powerOn(false, tick);
    return state;
  }

  /** `irq0` receives counter 0's OUT as pulses on an edge-triggered input. */
  constructor(private readonly clock: Clock, private readonly irq0: InterruptLine, options: Pit8254Options = {}) {
    this.onReprogrammed = options.onReprogrammed;
    this.state = options.state ?? Pit8254.createState(clock);
    this.s = PIT8254_STATE.views(this.state);
    this.counters = [new Counter(this.s, 0), new Counter(this.s, 1), new Counter(this.s, 2)];
  }

  saveState(): SavedDeviceState {
    return PIT8254_STATE.save(this.state);
  }

  /** Takes `saved` as the PIT's state; the times in it are the machine clock's, restored beside it. */
  restoreState(saved: SavedDeviceState): void {
    PIT8254_STATE.restore(saved, this.state);
    this.onReprogrammed?.(); // counter 0's next IRQ0 edge is the restored one
  }

  /** IRQ0 ticks so far and what became of them (a copy). */
  get irq0Ticks(): Irq0Counts {
    const s = this.s;
    return { ticks: s.irq0Ticks[0], delivered: s.irq0Delivered[0], coalesced: s.irq0Coalesced[0], ignored: s.irq0Ignored[0] };
  }

  report(): Record<string, unknown> {
    return { irq0: this.irq0Ticks };
  }

  private tick(): number {
    return pitTicksAt(this.clock.nowNs());
  }

  private counter(channel: number): Counter {
    const c = this.counters[channel];
    if (c === undefined) throw new RangeError(`PIT has counters 0-2, not ${channel}`);
    return c;
  }

  // --- bus ---------------------------------------------------------------------

  /** The 8254 is a byte device: wider accesses reach consecutive ports, low byte first. */
  read(offset: number, size: number): number {
    let value = 0;
    for (let i = 0; i < size; i++) value |= this.readByte(offset + i) << (8 * i);
    return value >>> 0;
  }

  write(offset: number, size: number, value: number): void {
    for (let i = 0; i < size; i++) this.writeByte(offset + i, (value >>> (8 * i)) & 0xff);
  }

  private readByte(offset: number): number {
    // The control word register cannot be read: the data bus floats (0xFF on a PC).
    if (offset < 0 || offset > 2) return 0xff;
    const tick = this.tick();
    const c = this.counters[offset]!;
    c.sync(tick);
    return c.read(tick);
  }

  private writeByte(offset: number, byte: number): void {
    const tick = this.tick();
    if (offset === PitReg.CONTROL) this.writeControl(byte, tick);
    else if (offset >= 0 && offset < 3) {
      const c = this.counters[offset]!;
      c.sync(tick);
      const out = c.outAt(tick);
      c.write(byte, tick);
      c.noteChange(out, tick);
    }
    this.deliver(tick); // programming may have raised counter 0's OUT
    this.onReprogrammed?.();
  }

  private writeControl(byte: number, tick: number): void {
    const sc = byte >> 6;
    if (sc === READ_BACK) {
      for (let i = 0; i < 3; i++) {
        if (!(byte & (2 << i))) continue;
        const c = this.counters[i]!;
        c.sync(tick);
        if (!(byte & READ_BACK_NOT_COUNT)) c.latchCount(tick);
        if (!(byte & READ_BACK_NOT_STATUS)) c.latchStatus(tick);
      }
      return;
    }
    const c = this.counters[sc]!;
    c.sync(tick);
    const rw = (byte >> 4) & 3;
    if (rw === 0) return c.latchCount(tick); // counter latch command; mode bits ignored
    const out = c.outAt(tick);
    c.program((byte >> 1) & 7, rw, (byte & 1) !== 0, tick);
    c.noteChange(out, tick); // modes 1-5 set OUT high: an edge if it was low
  }

  // --- pins ----------------------------------------------------------------------

  /** Drives a counter's GATE input (on a PC only counter 2's is wired, to port 0x61). */
  setGate(channel: number, high: boolean): void {
    const c = this.counter(channel);
    const tick = this.tick();
    c.sync(tick);
    const out = c.outAt(tick);
    c.setGate(high, tick);
    c.noteChange(out, tick);
    if (channel === 0) {
      this.deliver(tick);
      this.onReprogrammed?.();
    }
  }

  gate(channel: number): boolean {
    return this.counter(channel).gate;
  }

  /** A counter's OUT pin now. */
  output(channel: number): boolean {
    const c = this.counter(channel);
    const tick = this.tick();
    c.sync(tick);
    return c.outAt(tick);
  }

  // --- IRQ0 ------------------------------------------------------------------------

  /**
   * The clock time (ns) of counter 0's next rising OUT edge that has not been
   * delivered, or null if none is coming (mode 0 after terminal count, GATE
   * low, a mode waiting for a count). It may be in the past when the caller is
   * late; the machine arms its timer for this time and calls pollTimer().
   */
  nextEventNs(): number | null {
    const tick = this.counters[0].nextEdgeTick();
    return tick === null ? null : pitTickNs(tick);
  }

  /**
   * Delivers IRQ0 for the rising edges of counter 0's OUT up to now: one at
   * each period in modes 2 and 3, one at terminal count in mode 0, one at the
   * end of the pulse or strobe in modes 1, 4 and 5, and one for OUT rising
   * because of programming.
   *
   * Coalescing, as KVM's PIT without reinjection and QEMU's
   * lost_tick_policy=discard do: ticks the guest cannot have acknowledged are
   * dropped, never queued. All edges since the last call reach the PIC as one
   * pulse (the guest ran no code between them to acknowledge one), and that
   * pulse too is dropped by the PIC when IRQ0 is still pending there (the
   * line reports it as coalesced: KVM_IRQ_LINE_STATUS). How often this runs
   * is the caller's choice: the machine bounds it (device-timers.ts), so a
   * tiny count cannot turn into a storm of host timer signals. Counter values
   * and OUT stay exact whatever the call rate; a guest that keeps time by
   * counting ticks should use a clocksource instead (Linux does: TSC/kvm-clock).
   */
  pollTimer(): void {
    this.deliver(this.tick());
  }

  private deliver(tick: number): void {
    const c = this.counters[0];
    c.sync(tick);
    const edges = c.takeEdges();
    if (edges === 0) return;
    const s = this.s;
    s.irq0Ticks[0] += edges;
    s.irq0Coalesced[0] += edges - 1;
    const outcome = this.irq0.pulse();
    if (outcome === 'new') s.irq0Delivered[0]++;
    else if (outcome === 'coalesced') s.irq0Coalesced[0]++;
    else s.irq0Ignored[0]++;
  }
}
