// The guest clock as machine state: one CLOCK_STATE buffer that every thread's
// MonotonicClock reads alike, paused and resumed like QEMU's virtual clock,
// and saved as guest time so that a restored machine continues from there.
// Host time is a fake CLOCK_MONOTONIC the test moves by hand, except where a
// real second thread shares the clock.
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { CLOCK_STATE, MonotonicClock } from '../../src/devices/clock.ts';
import { DeviceStateLayout } from '../../src/devices/device-state.ts';
import { InputError } from '../../src/errors.ts';
import { workerUrl } from '../../src/machine/threads.ts';

const S = 1_000_000_000;

/**
 * A host CLOCK_MONOTONIC that stands still until moved, in process.hrtime's
 * [s, ns] form, kept as seconds and nanoseconds so that it stays exact past
 * 2^53 ns of uptime.
 */
function fakeHost(startS: number, startNs = 0) {
  let seconds = startS;
  let nanos = startNs;
  return {
    time: (): [number, number] => [seconds, nanos],
    advance(byNs: number) {
      nanos += byNs;
      seconds += Math.floor(nanos / S);
      nanos %= S;
    },
  };
}

describe('the guest clock', () => {
  it('starts at guest time 0 and runs with the host, in exact nanoseconds', () => {
    // Host uptime of 200 days: past 2^53 ns, where a double of host ns is no longer exact.
    const host = fakeHost(200 * 86_400, 123);
    const clock = new MonotonicClock(undefined, host.time);
    expect(clock.nowNs()).toBe(0);
    host.advance(1);
    expect(clock.nowNs()).toBe(1);
    host.advance(3 * S + 999_999_998);
    expect(clock.nowNs()).toBe(3 * S + 999_999_999);
  });

  it('originNs is the host time at guest time 0: a guest deadline t is host time originNs + t', () => {
    const host = fakeHost(5, 700_000_000);
    const clock = new MonotonicClock(undefined, host.time);
    host.advance(2 * S);
    expect(clock.originNs).toBe(5_700_000_000n);
  });

  it('stands still while paused and continues from there on resume', () => {
    const host = fakeHost(10);
    const clock = new MonotonicClock(undefined, host.time);
    host.advance(1500);
    clock.pause();
    expect(clock.paused).toBe(true);
    host.advance(60 * S); // a minute paused
    expect(clock.nowNs()).toBe(1500);
    clock.pause(); // a second pause changes nothing
    clock.resume();
    expect(clock.paused).toBe(false);
    expect(clock.nowNs()).toBe(1500);
    host.advance(250);
    expect(clock.nowNs()).toBe(1750);
    clock.resume(); // nor does a second resume
    expect(clock.nowNs()).toBe(1750);
    expect(clock.originNs).toBe(BigInt(10 * S + 60 * S));
  });

  it('is one clock for every MonotonicClock over its buffer: pause through one, the other stops', () => {
    const host = fakeHost(1);
    const a = new MonotonicClock(undefined, host.time);
    const b = new MonotonicClock(a.state, host.time); // the buffer as it is: b must not reset it
    host.advance(42);
    expect(b.nowNs()).toBe(42);
    a.pause();
    host.advance(S);
    expect(b.paused).toBe(true);
    expect(b.nowNs()).toBe(42);
    b.resume();
    host.advance(8);
    expect(a.nowNs()).toBe(50);
  });

  it('a clock in another thread over the same buffer reads the same time and sees a pause', async () => {
    const clock = new MonotonicClock(); // the real CLOCK_MONOTONIC
    const worker = new Worker(workerUrl(import.meta.url, 'clock-thread'), { workerData: clock.state });
    try {
      const ask = async (request: 'now' | 'pause') => {
        worker.postMessage(request);
        const [ns] = (await once(worker, 'message')) as [number];
        return ns;
      };
      const before = clock.nowNs();
      const there = await ask('now');
      const after = clock.nowNs();
      expect(before).toBeLessThanOrEqual(there);
      expect(there).toBeLessThanOrEqual(after);

      const pausedThere = await ask('pause');
      expect(clock.paused).toBe(true);
      expect(clock.nowNs()).toBe(pausedThere);
      expect(pausedThere).toBeGreaterThanOrEqual(after);
    } finally {
      worker.postMessage('exit');
      await worker.terminate();
    }
  });
});

describe('saving and restoring the guest clock', () => {
  it('a restored clock continues from the saved guest time: not from 0, not jumping by the time spent saved', () => {
    const host = fakeHost(3);
    const clock = new MonotonicClock(undefined, host.time);
    host.advance(7 * S + 5);
    const saved = clock.saveState();
    expect(saved.kind).toBe('clock');

    // Another process, on a host up for much longer, an hour later.
    const otherHost = fakeHost(90 * 86_400, 17);
    const restored = new MonotonicClock(undefined, otherHost.time);
    otherHost.advance(3600 * S);
    restored.restoreState(saved);
    expect(restored.paused).toBe(false);
    expect(restored.nowNs()).toBe(7 * S + 5);
    otherHost.advance(10);
    expect(restored.nowNs()).toBe(7 * S + 15);
  });

  it('a clock saved paused is restored paused at its time, and runs from there on resume', () => {
    const host = fakeHost(0);
    const clock = new MonotonicClock(undefined, host.time);
    host.advance(900);
    clock.pause();
    host.advance(S);
    const saved = clock.saveState();

    const otherHost = fakeHost(4);
    const restored = new MonotonicClock(undefined, otherHost.time);
    restored.restoreState(saved);
    otherHost.advance(S);
    expect(restored.paused).toBe(true);
    expect(restored.nowNs()).toBe(900);
    restored.resume();
    otherHost.advance(100);
    expect(restored.nowNs()).toBe(1000);
  });

  it('restoring through one clock object restores every clock over the buffer', () => {
    const host = fakeHost(0);
    const source = new MonotonicClock(undefined, host.time);
    host.advance(12_345);
    const saved = source.saveState();
    const a = new MonotonicClock(undefined, host.time);
    const b = new MonotonicClock(a.state, host.time);
    host.advance(S);
    a.restoreState(saved);
    expect(b.nowNs()).toBe(12_345);
  });

  it('refuses the state of another device, of another version, of the wrong size, or with a damaged time', () => {
    const clock = new MonotonicClock();
    const saved = clock.saveState();
    const other = new DeviceStateLayout('pit8254', 1, { x: ['u8', 1] });
    expect(() => clock.restoreState(other.save(other.create()))).toThrow(InputError);
    expect(() => clock.restoreState(other.save(other.create()))).toThrow('pit8254 state cannot be restored into clock (another device)');
    expect(() => clock.restoreState({ ...saved, version: 2 })).toThrow('clock state version 2 cannot be restored: this tsvmm reads version 1');
    expect(() => clock.restoreState({ ...saved, bytes: saved.bytes.subarray(0, 8) })).toThrow(InputError);
    expect(() => clock.restoreState({ ...saved, bytes: saved.bytes.subarray(0, 8) })).toThrow(`clock state: 8 bytes, expected ${CLOCK_STATE.bytes}`);

    const damaged = CLOCK_STATE.create();
    CLOCK_STATE.views(damaged).stoppedAtNs[0] = -5;
    expect(() => clock.restoreState(CLOCK_STATE.save(damaged))).toThrow('clock state: guest time -5 ns, running 0 (damaged state)');
    expect(clock.paused).toBe(false); // a refused state changes nothing
  });
});
