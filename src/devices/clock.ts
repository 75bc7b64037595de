// Where a device's notion of time comes from. Timers in a device (the PIT's
// counters) are functions of this clock; the machine injects the guest clock
// (MonotonicClock), unit tests a manual one they step by hand.
import { InputError } from '../errors.ts';
import { DeviceStateLayout, type SavedDeviceState, type StatefulDevice, type StateViews } from './device-state.ts';

export interface Clock {
  /** Monotonic time in integer nanoseconds. Never decreases. */
  nowNs(): number;
}

/** A reading of the host's CLOCK_MONOTONIC as [seconds, nanoseconds], process.hrtime()'s form. */
export type HostTime = () => [number, number];

const NS_PER_S = 1_000_000_000;

/**
 * The guest clock's state. Guest time is the host's CLOCK_MONOTONIC counted
 * from an origin while the VM runs, and stands still while it is paused. A
 * saved clock holds only guest time (the origin is a moment of this boot of
 * this host, meaningless to the process that restores it).
 */
export const CLOCK_STATE = new DeviceStateLayout('clock', 1, {
  // 1 while guest time runs with the host's, 0 while the VM is paused.
  // Atomics: pause and resume come from the main thread, outside the device lock.
  running: ['u8', 1],
  // The guest time (ns) at which the clock stopped: by pause(), or, in a saved state, by saveState().
  stoppedAtNs: ['f64', 1],
  // While running: the host's CLOCK_MONOTONIC at guest time 0, as whole
  // seconds and nanoseconds (0 to 1e9 - 1), so guest ns stay exact integers
  // whatever the host's uptime. Seconds are negative when guest time
  // (restored) is ahead of the host's uptime.
  origin: ['f64', 2],
});

type ClockViews = StateViews<typeof CLOCK_STATE.fields>;

/** Starts `s` running so that guest time is `guestNs` at host time `now`. */
function runFrom(s: ClockViews, guestNs: number, now: [number, number]): void {
  const guestS = Math.floor(guestNs / NS_PER_S);
  let seconds = now[0] - guestS;
  let nanos = now[1] - (guestNs - guestS * NS_PER_S);
  if (nanos < 0) {
    nanos += NS_PER_S;
    seconds -= 1;
  }
  s.origin[0] = seconds;
  s.origin[1] = nanos;
  s.stoppedAtNs[0] = guestNs;
  Atomics.store(s.running, 0, 1);
}

/**
 * The guest clock, one per machine: the host's monotonic clock from an origin
 * kept in a shared CLOCK_STATE buffer, so every thread's MonotonicClock over
 * that buffer reads the same time, and a device state saved in one thread (or
 * process) refers to times every other one agrees on. Nanoseconds are exact
 * integers in a double for 2^53 ns (about 104 days of guest time).
 *
 * pause() stops guest time and resume() continues it from where it stopped,
 * as QEMU's virtual clock does while a VM is stopped: timed devices (the
 * PIT) see no time pass while the VM is paused or saved. Call them, and
 * restoreState(), while no vCPU runs (the machine stops its vCPUs first): a
 * vCPU reading the clock at the same moment might see time step back by the
 * length of that read.
 */
export class MonotonicClock implements Clock, StatefulDevice {
  /** The clock's state (CLOCK_STATE): share it with every thread's clock of this machine. */
  readonly state: SharedArrayBuffer;
  private readonly s: ClockViews;

  /** A running clock at guest time 0 now. */
  static createState(hostTime: HostTime = process.hrtime): SharedArrayBuffer {
    const state = CLOCK_STATE.create();
    runFrom(CLOCK_STATE.views(state), 0, hostTime());
    return state;
  }

  /**
   * `state` as createState() made it or another thread's clock left it
   * (absent: a new clock at guest time 0). `hostTime` is CLOCK_MONOTONIC;
   * tests replace it.
   */
  constructor(state?: SharedArrayBuffer, private readonly hostTime: HostTime = process.hrtime) {
    this.state = state ?? MonotonicClock.createState(hostTime);
    this.s = CLOCK_STATE.views(this.state);
  }

  nowNs(): number {
    const s = this.s;
    if (Atomics.load(s.running, 0) === 0) return s.stoppedAtNs[0];
    const now = this.hostTime();
    return (now[0] - s.origin[0]) * NS_PER_S + (now[1] - s.origin[1]);
  }

  /**
   * The host's CLOCK_MONOTONIC (ns) at guest time 0, while the clock runs: a
   * guest deadline `t` is host time originNs + t (the machine arms host
   * timers so). It moves on resume() and restoreState().
   */
  get originNs(): bigint {
    return BigInt(this.s.origin[0]) * BigInt(NS_PER_S) + BigInt(this.s.origin[1]);
  }

  get paused(): boolean {
    return Atomics.load(this.s.running, 0) === 0;
  }

  /** Stops guest time where it is (nothing if already paused). */
  pause(): void {
    if (this.paused) return;
    this.s.stoppedAtNs[0] = this.nowNs();
    Atomics.store(this.s.running, 0, 0);
  }

  /** Lets guest time run again from where pause() stopped it (nothing if running). */
  resume(): void {
    if (!this.paused) return;
    runFrom(this.s, this.s.stoppedAtNs[0], this.hostTime());
  }

  /** Guest time now, and whether it runs; not the origin, which means nothing elsewhere. */
  saveState(): SavedDeviceState {
    const saved = CLOCK_STATE.create();
    const v = CLOCK_STATE.views(saved);
    v.running[0] = this.paused ? 0 : 1;
    v.stoppedAtNs[0] = this.nowNs();
    return CLOCK_STATE.save(saved);
  }

  /**
   * Guest time continues from the saved time: at once if the clock was saved
   * running, at resume() if it was saved paused. The time spent saved does
   * not count.
   */
  restoreState(saved: SavedDeviceState): void {
    const copy = CLOCK_STATE.create();
    CLOCK_STATE.restore(saved, copy); // checks kind, version and size
    const v = CLOCK_STATE.views(copy);
    const guestNs = v.stoppedAtNs[0];
    if (!Number.isSafeInteger(guestNs) || guestNs < 0 || v.running[0] > 1) {
      throw new InputError(`clock state: guest time ${guestNs} ns, running ${v.running[0]} (damaged state)`);
    }
    Atomics.store(this.s.running, 0, 0);
    this.s.stoppedAtNs[0] = guestNs;
    if (v.running[0] === 1) runFrom(this.s, guestNs, this.hostTime());
  }
}

/** A clock that moves only when told to (unit tests). */
export class ManualClock implements Clock {
  private ns: number;

  constructor(startNs = 0) {
    this.ns = startNs;
  }

  nowNs(): number {
    return this.ns;
  }

  /** Moves time forward by `ns` (a non-negative integer). */
  advance(ns: number): void {
    if (!Number.isInteger(ns) || ns < 0) throw new RangeError(`ManualClock.advance: ${ns} is not a whole number of ns >= 0`);
    this.ns += ns;
  }

  /** Moves time forward to `ns`, which must not be in the past. */
  setNs(ns: number): void {
    if (!Number.isInteger(ns) || ns < this.ns) throw new RangeError(`ManualClock.setNs: ${ns} is before ${this.ns}`);
    this.ns = ns;
  }
}
