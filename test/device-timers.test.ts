// The vCPU thread's device timer (src/machine/device-timers.ts) with a manual
// clock and a recorded host timer, no KVM: how often a PIT can make the host
// timer fire, whatever the guest programs.
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../src/devices/clock.ts';
import { RecordingLine } from '../src/devices/interrupt-line.ts';
import { PIT_HZ, Pit8254, PitReg } from '../src/devices/pit8254.ts';
import { DeviceTimers, MIN_TIMER_PERIOD_NS } from '../src/machine/device-timers.ts';

/** A host timer that only records when it was armed for. */
class RecordedTimer {
  armedForNs = 0;
  readonly armed: number[] = [];
  armAt(ns: number): void {
    this.armedForNs = ns;
    this.armed.push(ns);
  }
}

function machine(count: number) {
  const clock = new ManualClock(1_000_000);
  const timer = new RecordedTimer();
  const timers = new DeviceTimers({ originNs: 0n, nowNs: () => clock.nowNs() }, timer);
  const irq = new RecordingLine();
  const pit = new Pit8254(clock, irq, { onReprogrammed: () => timers.reschedule() });
  timers.add(pit);
  // Counter 0, LSB then MSB, mode 2 (rate generator).
  pit.write(PitReg.CONTROL, 1, 0x34);
  pit.write(PitReg.COUNTER0, 1, count & 0xff);
  pit.write(PitReg.COUNTER0, 1, count >> 8);
  /** Runs the timer as the vCPU thread would: sleep until it fires, poll. Returns the polls. */
  const runFor = (ns: number) => {
    const end = clock.nowNs() + ns;
    let polls = 0;
    while (timer.armedForNs !== 0 && timer.armedForNs <= end && polls < 1_000_000) {
      clock.setNs(Math.max(clock.nowNs(), timer.armedForNs));
      timers.poll();
      polls++;
    }
    return polls;
  };
  return { clock, timer, timers, irq, pit, runFor };
}

describe('DeviceTimers', () => {
  it('a PIT count of 2 (a tick every 1.7 us) fires the host timer at most every 200 us', () => {
    const { timer, pit, irq, runFor } = machine(2);
    timer.armed.length = 0; // from here on, every arming follows a poll
    const polls = runFor(100_000_000); // 100 ms
    // 100 ms / 200 us; unbounded it would be one poll per tick, ~59,659.
    expect(polls).toBeLessThanOrEqual(100_000_000 / MIN_TIMER_PERIOD_NS + 1);
    expect(polls).toBeGreaterThanOrEqual(100_000_000 / MIN_TIMER_PERIOD_NS - 1);
    for (let i = 1; i < timer.armed.length; i++) expect(timer.armed[i]! - timer.armed[i - 1]!).toBeGreaterThanOrEqual(MIN_TIMER_PERIOD_NS);
    // Every tick is accounted for: one pulse per poll, the rest coalesced.
    const { ticks, delivered, coalesced } = pit.irq0Ticks;
    expect(ticks).toBeGreaterThan(59_000);
    expect(delivered).toBe(irq.risingEdges);
    expect(delivered + coalesced).toBe(ticks);
  });

  it('a slower timer (1000 Hz) is served at its own edges, not delayed', () => {
    const { clock, pit, runFor } = machine(Math.round(PIT_HZ / 1000));
    const next = pit.nextEventNs()!;
    expect(runFor(10_000_000)).toBe(10);
    expect(pit.irq0Ticks).toEqual({ ticks: 10, delivered: 10, coalesced: 0, ignored: 0 });
    expect(clock.nowNs()).toBeLessThan(next + 10 * 1_000_000);
  });

  it('reprogramming right after a poll does not arm the timer sooner than the minimum period', () => {
    const { clock, timer, timers, pit } = machine(Math.round(PIT_HZ / 1000));
    clock.setNs(timer.armedForNs);
    timers.poll();
    const polledAt = clock.nowNs();
    pit.write(PitReg.CONTROL, 1, 0x34);
    pit.write(PitReg.COUNTER0, 1, 2);
    pit.write(PitReg.COUNTER0, 1, 0);
    expect(timer.armedForNs).toBe(polledAt + MIN_TIMER_PERIOD_NS);
  });
});
