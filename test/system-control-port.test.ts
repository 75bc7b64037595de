// Port 0x61 (system control port B), and the way Linux uses it with PIT
// counter 2 to calibrate the TSC: the port sequences of quick_pit_calibrate()
// and pit_calibrate_tsc() (arch/x86/kernel/tsc.c), replayed through the bus.
import { describe, expect, it } from 'vitest';
import { AddressSpace } from '../src/bus/index.ts';
import { ManualClock } from '../src/devices/clock.ts';
import { RecordingLine } from '../src/devices/interrupt-line.ts';
import { PIT_HZ, PIT_PORT_COUNT, Pit8254 } from '../src/devices/pit8254.ts';
import { PortB, SystemControlPort, type Timer2 } from '../src/devices/system-control-port.ts';
import { PortLayout } from '../src/layout.ts';

function pc() {
  const clock = new ManualClock();
  const pit = new Pit8254(clock, new RecordingLine());
  const portB = new SystemControlPort(pit);
  const pio = AddressSpace.ports();
  pio.register(PortLayout.PIT, PIT_PORT_COUNT, pit);
  pio.register(PortLayout.SYSTEM_CONTROL_B, 1, portB);
  const inb = (port: number) => pio.read(port, 1);
  const outb = (value: number, port: number) => pio.write(port, 1, value); // Linux's argument order
  return { clock, pit, inb, outb };
}

class FakeTimer2 implements Timer2 {
  gates: boolean[] = [];
  out = false;
  setGate(channel: number, high: boolean): void {
    expect(channel).toBe(2);
    this.gates.push(high);
  }
  output(channel: number): boolean {
    expect(channel).toBe(2);
    return this.out;
  }
}

describe('port 0x61 bits', () => {
  it('bit 0 is counter 2\'s GATE: written through to the PIT and read back', () => {
    const timer = new FakeTimer2();
    const port = new SystemControlPort(timer);
    expect(timer.gates).toEqual([false]); // starts low, in step with the PIT
    port.write(0, 1, PortB.TIMER2_GATE);
    port.write(0, 1, 0);
    expect(timer.gates).toEqual([false, true, false]);
    port.write(0, 1, PortB.TIMER2_GATE);
    expect(port.read(0, 1) & PortB.TIMER2_GATE).toBe(PortB.TIMER2_GATE);
  });

  it('bits 1-3 (speaker data, parity/channel check disables) read back as written', () => {
    const port = new SystemControlPort(new FakeTimer2());
    port.write(0, 1, 0x0e);
    expect(port.read(0, 1) & 0x0f).toBe(0x0e);
  });

  it('bits 4-7 ignore writes', () => {
    const timer = new FakeTimer2();
    const port = new SystemControlPort(timer);
    port.write(0, 1, 0xf0);
    const value = port.read(0, 1);
    expect(value & 0xc0).toBe(0); // no parity or channel check errors
    expect(value & PortB.TIMER2_OUT).toBe(0);
  });

  it('bit 4 (refresh request) toggles on every read', () => {
    const port = new SystemControlPort(new FakeTimer2());
    const bits = Array.from({ length: 4 }, () => port.read(0, 1) & PortB.REFRESH);
    expect(bits).toEqual([0x10, 0, 0x10, 0]);
  });

  it('bit 5 is counter 2\'s OUT', () => {
    const timer = new FakeTimer2();
    const port = new SystemControlPort(timer);
    expect(port.read(0, 1) & PortB.TIMER2_OUT).toBe(0);
    timer.out = true;
    expect(port.read(0, 1) & PortB.TIMER2_OUT).toBe(PortB.TIMER2_OUT);
  });

  it('with the real PIT: GATE low holds counter 2; bit 5 follows a mode 3 square wave once GATE is set', () => {
    const { clock, inb, outb } = pc();
    outb(0xb6, 0x43); // counter 2, LSB then MSB, mode 3: the speaker tone
    outb(100, 0x42);
    outb(0, 0x42);
    clock.advance(1_000_000);
    expect(inb(0x61) & 0x20).toBe(0x20); // mode 3 with GATE low: OUT high
    outb(0x01, 0x61);
    const samples: number[] = [];
    for (let i = 0; i < 200; i++) {
      samples.push(inb(0x61) & 0x20);
      clock.advance(1000); // 1 us per sample; the period is 100 CLKs = 83.8 us
    }
    let changes = 0;
    for (let i = 1; i < samples.length; i++) if (samples[i] !== samples[i - 1]) changes++;
    expect(changes).toBe(2 * Math.floor((200_000 * PIT_HZ) / 1e9 / 100)); // two transitions per period
  });
});

describe('Linux TSC calibration against PIT counter 2', () => {
  it('quick_pit_calibrate: the counter MSB falls by one every 256 CLKs', () => {
    const { clock, inb, outb } = pc();
    // Set the gate high, disable the speaker.
    outb((inb(0x61) & ~0x02) | 0x01, 0x61);
    // Counter 2, mode 0 (one-shot), binary count, LSB then MSB; start at 0xffff.
    outb(0xb0, 0x43);
    outb(0xff, 0x42);
    outb(0xff, 0x42);
    const EXIT_NS = 1500; // what a VM exit for one inb costs, roughly
    const readMsb = () => {
      clock.advance(EXIT_NS);
      inb(0x42); // LSB, discarded
      clock.advance(EXIT_NS);
      return inb(0x42);
    };
    // pit_verify_msb(0): one 16-bit read to let the count load
    readMsb();
    // pit_expect_msb(0xff - i): count the reads that still see each value
    const firstSeen = new Map<number, number>();
    const readsOf = new Map<number, number>();
    let msb = readMsb();
    expect(msb).toBe(0xff);
    while (msb >= 0xff - 200) {
      if (!firstSeen.has(msb)) firstSeen.set(msb, clock.nowNs());
      readsOf.set(msb, (readsOf.get(msb) ?? 0) + 1);
      const next = readMsb();
      expect(next === msb || next === msb - 1).toBe(true); // never skips, never rises
      msb = next;
    }
    // Each MSB value is seen by more than 5 reads (pit_expect_msb's condition).
    for (const [value, reads] of readsOf) if (value !== 0xff - 200) expect(reads).toBeGreaterThan(5);
    // MSB k steps down appears 256*k CLKs after the first step, within one sample.
    const step = (256 * 1e9) / PIT_HZ; // 214.55 us
    const t1 = firstSeen.get(0xfe)!;
    for (let k = 1; k <= 199; k++) {
      expect(Math.abs(firstSeen.get(0xfe - k)! - t1 - k * step)).toBeLessThanOrEqual(2 * EXIT_NS);
    }
    // The frequency Linux would infer is PIT_HZ within its 500 ppm acceptance.
    const measuredHz = (199 * 256 * 1e9) / (firstSeen.get(0xfe - 199)! - t1);
    expect(Math.abs(measuredHz - PIT_HZ) / PIT_HZ).toBeLessThan(500e-6);
  });

  it('pit_calibrate_tsc: mode 0 with a 50 ms count; bit 5 rises at terminal count', () => {
    const { clock, inb, outb } = pc();
    const latch = Math.floor(PIT_HZ / (1000 / 50)); // CLOCK_TICK_RATE / (1000 / ms)
    outb((inb(0x61) & ~0x02) | 0x01, 0x61);
    outb(0xb0, 0x43);
    outb(latch & 0xff, 0x42);
    outb(latch >> 8, 0x42);
    const start = clock.nowNs();
    let polls = 0;
    while ((inb(0x61) & 0x20) === 0) {
      clock.advance(1000);
      polls++;
    }
    const elapsed = clock.nowNs() - start;
    const expected = ((latch + 1) * 1e9) / PIT_HZ; // N+1 CLKs after the write
    expect(Math.abs(elapsed - expected)).toBeLessThanOrEqual(1000);
    expect(polls).toBeGreaterThan(49_000);
  });

  it('clearing the gate between runs re-arms nothing in mode 0: the count keeps its value', () => {
    const { clock, inb, outb } = pc();
    outb(0x01, 0x61);
    outb(0xb0, 0x43);
    outb(0x00, 0x42);
    outb(0x10, 0x42); // 0x1000
    clock.advance(1_000_000); // 1193 CLKs
    outb(0x00, 0x61); // gate low: counting stops
    outb(0x80, 0x43); // latch counter 2
    const held = inb(0x42) | (inb(0x42) << 8);
    expect(held).toBe(0x1000 - (Math.floor((1_000_000 * PIT_HZ) / 1e9) - 1));
    clock.advance(1_000_000);
    outb(0x80, 0x43);
    expect(inb(0x42) | (inb(0x42) << 8)).toBe(held);
  });
});
