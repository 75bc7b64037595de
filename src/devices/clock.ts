// Where a device's notion of time comes from. Timers in a device (the PIT's
// counters) are functions of this clock; the machine injects a monotonic one,
// unit tests a manual one they step by hand.

export interface Clock {
  /** Monotonic time in integer nanoseconds. Never decreases. */
  nowNs(): number;
}

/**
 * The host's monotonic clock (process.hrtime), counted from an origin so the
 * number of nanoseconds stays an exact integer in a double (2^53 ns ≈ 104 days
 * after the origin). Every party that compares times (the device and the
 * machine's timer that calls it back) must share one instance.
 */
export class MonotonicClock implements Clock {
  readonly originNs: bigint;

  constructor(originNs: bigint = process.hrtime.bigint()) {
    this.originNs = originNs;
  }

  nowNs(): number {
    return Number(process.hrtime.bigint() - this.originNs);
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
