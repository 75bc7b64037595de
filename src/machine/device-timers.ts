// Device deadlines in the vCPU thread. A device with timed behaviour (the
// PIT's IRQ0) says when it next needs attention; this arms a per-thread
// CLOCK_MONOTONIC timer for the earliest deadline, whose signal makes KVM_RUN
// return (KVM_EXIT_INTR) even while the guest is halted, and then polls.
import type { MonotonicClock } from '../devices/clock.ts';
import type { ThreadTimer } from '../kvm/index.ts';

export interface TimedDevice {
  /** When it next needs pollTimer(), in the shared clock's ns; null for never. */
  nextEventNs(): number | null;
  pollTimer(): void;
}

/**
 * The shortest time between two polls the timer asks for: 200 µs, KVM's own
 * bound for its in-kernel PIT (arch/x86/kvm/i8254.c, create_pit_timer, with
 * the kvm module's min_timer_period_us = 200): "Do not allow the guest to
 * program periodic timers with small interval, since the hrtimers are not
 * throttled by the host scheduler". Here every expiry is a signal and a
 * KVM_EXIT_INTR, so without it a PIT count of 2 (a tick every 1.7 µs) would
 * keep the vCPU thread busy with exits and the guest would make no progress.
 * Devices lose nothing by it: their state is a function of the clock, and
 * ticks that fall between polls are coalesced (pit8254.ts, pollTimer).
 */
export const MIN_TIMER_PERIOD_NS = 200_000;

export class DeviceTimers {
  private readonly devices: TimedDevice[] = [];
  /** When poll() last ran, in the clock's ns: the timer is not armed sooner than MIN_TIMER_PERIOD_NS after it. */
  private lastPollNs = -Infinity;

  constructor(
    private readonly clock: Pick<MonotonicClock, 'nowNs' | 'originNs'>,
    private readonly timer: Pick<ThreadTimer, 'armAt' | 'armedForNs'>,
  ) {}

  add(device: TimedDevice): void {
    this.devices.push(device);
    this.reschedule();
  }

  /** After a kick or a timer signal: let due devices act, then arm for the next deadline. */
  poll(): void {
    const now = this.clock.nowNs();
    this.lastPollNs = now;
    for (const d of this.devices) {
      const due = d.nextEventNs();
      if (due !== null && due <= now) d.pollTimer();
    }
    this.reschedule();
  }

  /** Arms the thread timer for the earliest deadline (call after a device was reprogrammed). */
  reschedule(): void {
    let earliest = Infinity;
    for (const d of this.devices) {
      const due = d.nextEventNs();
      if (due !== null && due < earliest) earliest = due;
    }
    const absolute = earliest === Infinity
      ? 0
      : Number(this.clock.originNs) + Math.max(earliest, this.lastPollNs + MIN_TIMER_PERIOD_NS, 1);
    if (absolute !== this.timer.armedForNs) this.timer.armAt(absolute);
  }
}
