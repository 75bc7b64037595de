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

export class DeviceTimers {
  private readonly devices: TimedDevice[] = [];

  constructor(private readonly clock: MonotonicClock, private readonly timer: ThreadTimer) {}

  add(device: TimedDevice): void {
    this.devices.push(device);
    this.reschedule();
  }

  /** After a kick or a timer signal: let due devices act, then arm for the next deadline. */
  poll(): void {
    const now = this.clock.nowNs();
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
    const absolute = earliest === Infinity ? 0 : Number(this.clock.originNs) + Math.max(earliest, 1);
    if (absolute !== this.timer.armedForNs) this.timer.armAt(absolute);
  }
}
