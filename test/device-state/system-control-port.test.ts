// Port 0x61's state as data (SYSTEM_CONTROL_PORT_STATE): its writable bits
// and the refresh toggle. Counter 2's GATE and OUT are the PIT's: neither a
// second object over the same buffer nor a restore drives the gate.
import { describe, expect, it } from 'vitest';
import { PortB, SYSTEM_CONTROL_PORT_STATE, SystemControlPort, type Timer2 } from '../../src/devices/system-control-port.ts';
import { expectRestoreRefusals } from './refusals.ts';

class FakeTimer2 implements Timer2 {
  gates: boolean[] = [];
  out = false;
  setGate(_channel: number, high: boolean): void {
    this.gates.push(high);
  }
  output(): boolean {
    return this.out;
  }
}

describe('SystemControlPort state', () => {
  it('the speaker/check bits and the refresh phase survive save and restore into a fresh port', () => {
    const port = new SystemControlPort(new FakeTimer2());
    port.write(0, 1, PortB.SPEAKER_DATA | PortB.CHANNEL_CHECK_DISABLE | 0xf0); // the read-only bits are dropped
    port.read(0, 1); // refresh now reads 1
    const saved = port.saveState();
    expect(saved.kind).toBe('system-control-port');

    const timer = new FakeTimer2();
    const fresh = new SystemControlPort(timer);
    fresh.restoreState(saved);
    expect(timer.gates).toEqual([false]); // the constructor's only: a restore leaves GATE 2 to the PIT
    // The same sequence of reads from both: writable bits kept, refresh toggling in step.
    const reads = (p: SystemControlPort) => [p.read(0, 1), p.read(0, 1), p.read(0, 1)];
    expect(reads(fresh)).toEqual(reads(port));
    // One read before the save and three after: the fifth read shows refresh set again.
    expect(fresh.read(0, 1)).toBe(PortB.SPEAKER_DATA | PortB.CHANNEL_CHECK_DISABLE | PortB.REFRESH);
  });

  it('two objects over one buffer are one port, and the second does not touch the PIT\'s gate', () => {
    const timer = new FakeTimer2();
    const a = new SystemControlPort(timer);
    const b = new SystemControlPort(timer, a.state);
    expect(timer.gates).toEqual([false]);
    a.write(0, 1, PortB.TIMER2_GATE | PortB.SPEAKER_DATA);
    expect(b.read(0, 1)).toBe(PortB.TIMER2_GATE | PortB.SPEAKER_DATA | PortB.REFRESH);
    expect(a.read(0, 1)).toBe(PortB.TIMER2_GATE | PortB.SPEAKER_DATA); // one refresh toggle between them
  });

  it('refuses another device\'s state, another version and a damaged size', () => {
    expectRestoreRefusals(SYSTEM_CONTROL_PORT_STATE, new SystemControlPort(new FakeTimer2()));
  });
});
