// What SIGTERM, SIGINT and Ctrl-A p do to a running guest (src/cli/shutdown.ts):
// the first SIGTERM presses the ACPI power button and gives the guest a time
// limit; SIGINT, a second SIGTERM, or the limit running out stops it at once.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ShutdownPolicy } from '../src/cli/shutdown.ts';

function machine(hasAcpi: boolean) {
  const log = { presses: 0, toEnd: 0, stops: 0, said: [] as string[] };
  const policy = new ShutdownPolicy({
    pressPowerButton: () => {
      if (hasAcpi) log.presses++;
      return hasAcpi;
    },
    // SIGTERM's press also says the power-off that follows ends the VM (no --poweroff restart).
    powerDownToEnd: () => {
      if (hasAcpi) {
        log.presses++;
        log.toEnd++;
      }
      return hasAcpi;
    },
    stop: () => log.stops++,
    say: (line) => log.said.push(line),
  }, 30_000);
  return { policy, log };
}

describe('shutdown on signals', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('SIGTERM presses the power button and does not stop a guest that powers off in time', () => {
    const { policy, log } = machine(true);
    policy.onSignal('SIGTERM');
    expect([log.presses, log.toEnd, log.stops]).toEqual([1, 1, 0]);
    expect(log.said[0]).toMatch(/SIGTERM: pressed the ACPI power button; the guest has 30 s/);
    vi.advanceTimersByTime(29_000);
    policy.dispose();  // the guest powered off
    vi.advanceTimersByTime(10_000);
    expect([log.stops, policy.stoppedBy, policy.timedOut]).toEqual([0, null, false]);
  });

  it('a guest that ignores the button is stopped when the time is up, as if by SIGTERM', () => {
    const { policy, log } = machine(true);
    policy.onSignal('SIGTERM');
    vi.advanceTimersByTime(29_999);
    expect(log.stops).toBe(0);
    vi.advanceTimersByTime(1);
    expect([log.stops, policy.stoppedBy, policy.timedOut]).toEqual([1, 'SIGTERM', true]);
    expect(log.said[1]).toMatch(/did not power off within 30 s/);
  });

  it('a second SIGTERM stops the guest at once', () => {
    const { policy, log } = machine(true);
    policy.onSignal('SIGTERM');
    policy.onSignal('SIGTERM');
    expect([log.presses, log.stops, policy.stoppedBy]).toEqual([1, 1, 'SIGTERM']);
    vi.advanceTimersByTime(60_000);
    expect(log.stops).toBe(1);  // the timer went with the stop
  });

  it('SIGINT stops at once, before or after a SIGTERM', () => {
    const first = machine(true);
    first.policy.onSignal('SIGINT');
    expect([first.log.presses, first.log.stops, first.policy.stoppedBy]).toEqual([0, 1, 'SIGINT']);
    const second = machine(true);
    second.policy.onSignal('SIGTERM');
    second.policy.onSignal('SIGINT');
    expect([second.log.presses, second.log.stops, second.policy.stoppedBy]).toEqual([1, 1, 'SIGINT']);
  });

  it('a guest without ACPI (a flat binary) has no button: SIGTERM stops it at once', () => {
    const { policy, log } = machine(false);
    policy.onSignal('SIGTERM');
    expect([log.stops, policy.stoppedBy]).toEqual([1, 'SIGTERM']);
  });

  it('Ctrl-A p presses the button without a time limit (a --poweroff restart guest boots again), and says so when there is none', () => {
    const withAcpi = machine(true);
    withAcpi.policy.onPowerKey();
    vi.advanceTimersByTime(120_000);
    expect([withAcpi.log.presses, withAcpi.log.toEnd, withAcpi.log.stops]).toEqual([1, 0, 0]);
    expect(withAcpi.log.said).toEqual(['tsvmm: pressed the ACPI power button']);
    const flat = machine(false);
    flat.policy.onPowerKey();
    expect([flat.log.stops, flat.log.said]).toEqual([0, ['tsvmm: this guest has no ACPI power button']]);
  });
});
