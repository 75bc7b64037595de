// The 8254 PIT, section by section of the Intel 82C54 datasheet. Time is a
// ManualClock; `at(k)` moves it to CLK edge k (edge 0 is time 0), so a count
// written at time 0 is loaded by the CLK pulse at edge 1.
import { describe, expect, it } from 'vitest';
import { ManualClock } from '../src/devices/clock.ts';
import { RecordingLine } from '../src/devices/interrupt-line.ts';
import { PIT_HZ, Pit8254, PitReg, pitTickNs, pitTicksAt, type Pit8254Options } from '../src/devices/pit8254.ts';

const CONTROL = PitReg.CONTROL;

function setup(options?: Pit8254Options, startNs = 0) {
  const clock = new ManualClock(startNs);
  const irq = new RecordingLine();
  const pit = new Pit8254(clock, irq, options);
  const t0 = pitTicksAt(startNs);
  /** Moves the clock to CLK edge `k` counted from the start. */
  const at = (k: number) => clock.setNs(pitTickNs(t0 + k));
  /** Control word: SC | RW | mode | BCD. */
  const control = (sc: number, rw: number, mode: number, bcd = 0) =>
    pit.write(CONTROL, 1, (sc << 6) | (rw << 4) | (mode << 1) | bcd);
  /** Writes a count LSB then MSB (the counter must be in RW mode 3). */
  const load = (ch: number, count: number) => {
    pit.write(ch, 1, count & 0xff);
    pit.write(ch, 1, count >> 8);
  };
  /** Counter latch command, then both bytes. */
  const latched = (ch: number) => {
    pit.write(CONTROL, 1, ch << 6);
    const lsb = pit.read(ch, 1);
    return lsb | (pit.read(ch, 1) << 8);
  };
  /** Read-back of one counter's status byte. */
  const status = (ch: number) => {
    pit.write(CONTROL, 1, 0xc0 | 0x20 | (2 << ch));
    return pit.read(ch, 1);
  };
  /** OUT at edges from..to, as a string of 1s and 0s. */
  const wave = (ch: number, from: number, to: number) => {
    let s = '';
    for (let k = from; k <= to; k++) {
      at(k);
      s += pit.output(ch) ? '1' : '0';
    }
    return s;
  };
  /** Latched counts at edges from..to. */
  const countsAt = (ch: number, from: number, to: number) => {
    const values: number[] = [];
    for (let k = from; k <= to; k++) {
      at(k);
      values.push(latched(ch));
    }
    return values;
  };
  /** OUT and the latched count, sampled together at edges from..to. */
  const trace = (ch: number, from: number, to: number) => {
    let out = '';
    const counts: number[] = [];
    for (let k = from; k <= to; k++) {
      at(k);
      out += pit.output(ch) ? '1' : '0';
      counts.push(latched(ch));
    }
    return { out, counts };
  };
  return { clock, irq, pit, at, control, load, latched, status, wave, countsAt, trace };
}

const RW_LSB = 1, RW_MSB = 2, RW_WORD = 3;

describe('clock arithmetic', () => {
  it('CLK edges are numbered exactly, also far from the clock origin', () => {
    expect(pitTicksAt(0)).toBe(0);
    expect(pitTicksAt(1_000_000_000)).toBe(PIT_HZ);
    expect(pitTicksAt(999_999_999)).toBe(PIT_HZ - 1);
    expect(pitTickNs(1)).toBe(839); // 838.095 ns, rounded up to the first whole ns after the edge
    for (const k of [0, 1, 2, 1193, PIT_HZ - 1, PIT_HZ, 7_000_000_000_000 + 12345, 10_000_000_000_000 - 1]) {
      const ns = pitTickNs(k);
      expect(pitTicksAt(ns)).toBe(k);
      expect(pitTicksAt(ns - 1)).toBe(k - 1);
    }
  });

  it('a counter far from the origin (100 days of uptime) counts exactly', () => {
    const { pit, at, control, load, latched } = setup({}, 100 * 86_400 * 1_000_000_000 + 123_456_789);
    control(0, RW_WORD, 0);
    load(0, 0xffff);
    at(5000);
    expect(latched(0)).toBe(0xffff - 4999);
    at(0xffff);
    expect(pit.output(0)).toBe(false);
    at(0x10000);
    expect(pit.output(0)).toBe(true);
  });
});

describe('control word format (SC1 SC0 RW1 RW0 M2 M1 M0 BCD)', () => {
  it('SC selects the counter; RW, mode and BCD show in its status byte', () => {
    const { control, status } = setup();
    control(1, RW_LSB, 4, 1);
    // OUTPUT=1 (mode 4 starts high), NULL COUNT=1, RW=01, M=100, BCD=1
    expect(status(1)).toBe(0x80 | 0x40 | 0x10 | 0x08 | 0x01);
    control(0, RW_WORD, 0);
    expect(status(0)).toBe(0x40 | 0x30); // mode 0 starts low
    expect(status(2)).toBe(0x80 | 0x30 | 0x06); // counter 2 untouched: power-on mode 3
  });

  it('power-on state (as QEMU and a PC BIOS leave it): mode 3, LSB then MSB, count 65536', () => {
    const { irq, pit, at, latched, status } = setup();
    expect(status(0)).toBe(0x80 | 0x30 | 0x06); // count already loaded: NULL COUNT 0
    at(1);
    expect(latched(0)).toBe(0); // 65536 reads as 0
    at(32769);
    expect(pit.output(0)).toBe(false); // low after 32768 CLKs
    at(65537);
    pit.pollTimer();
    expect(irq.risingEdges).toBe(1); // 18.2 Hz
    expect(pit.output(2)).toBe(true); // counter 2's GATE is low: mode 3 holds OUT high
  });

  it('modes 6 and 7 act as modes 2 and 3; the status byte shows the bits as written', () => {
    const { control, load, wave, status } = setup();
    control(0, RW_WORD, 6);
    load(0, 4);
    expect(wave(0, 0, 9)).toBe('1111011101'); // mode 2
    expect(status(0) & 0x0e).toBe(6 << 1);
    control(1, RW_WORD, 7); // at edge 9
    load(1, 4);
    expect(wave(1, 9, 17)).toBe('111001100'); // mode 3
  });

  it('the control word register cannot be read (floating bus)', () => {
    const { pit } = setup();
    expect(pit.read(CONTROL, 1)).toBe(0xff);
  });

  it('a wider access reaches consecutive ports, low byte first', () => {
    const { pit, control, status } = setup();
    control(0, RW_LSB, 2);
    control(1, RW_LSB, 2);
    pit.write(0, 2, 0x0605); // counter 0 gets 5, counter 1 gets 6
    pit.write(CONTROL, 1, 0xc0 | 0x10 | 0x02 | 0x04); // read-back: latch counts of 0 and 1
    expect(pit.read(0, 2)).toBe(0x0605);
    expect(status(0) & 0x0e).toBe(2 << 1);
  });
});

describe('write operations: LSB only, MSB only, LSB then MSB', () => {
  it('RW=01 writes and reads the least significant byte only', () => {
    const { pit, at, control } = setup();
    control(0, RW_LSB, 0);
    pit.write(0, 1, 0x80);
    at(1);
    expect(pit.read(0, 1)).toBe(0x80);
    expect(pit.read(0, 1)).toBe(0x80); // no flip-flop
  });

  it('RW=10 writes and reads the most significant byte only (LSB = 0)', () => {
    const { pit, at, control, latched } = setup();
    control(1, RW_MSB, 0);
    pit.write(1, 1, 0x12);
    at(1);
    expect(pit.read(1, 1)).toBe(0x12);
    at(2);
    control(1, RW_WORD, 0); // read the whole count back through a word-mode latch of the same state
    expect(latched(1)).toBe(0x11ff); // the control word stopped counting; CE kept 0x1200 - 1
  });

  it('RW=11: the first byte is the LSB, the second the MSB; a control word resets the flip-flops', () => {
    const { pit, at, control, latched } = setup();
    control(0, RW_WORD, 0);
    pit.write(0, 1, 0x34);
    control(0, RW_WORD, 0); // restart: the next byte is an LSB again
    pit.write(0, 1, 0x78);
    pit.write(0, 1, 0x56);
    at(1);
    expect(latched(0)).toBe(0x5678);
    expect(pit.read(0, 1)).toBe(0x78);
    expect(pit.read(0, 1)).toBe(0x56);
  });

  it('read and write flip-flops are separate: read LSB, write LSB, read MSB, write MSB is legal', () => {
    const { pit, at, control, load, latched } = setup();
    control(2, RW_WORD, 4); // counter 2, GATE low: the count holds still
    load(2, 0x1234);
    at(5);
    expect(pit.read(2, 1)).toBe(0x34);
    pit.write(2, 1, 0xcd);
    expect(pit.read(2, 1)).toBe(0x12);
    pit.write(2, 1, 0xab);
    at(10);
    expect(latched(2)).toBe(0xabcd);
  });
});

describe('counter latch command (RW=00)', () => {
  it('freezes the count in the output latch while the counter keeps running', () => {
    const { pit, at, control, load } = setup();
    control(0, RW_WORD, 0);
    load(0, 1000);
    at(11); // loaded at edge 1, ten decrements since
    pit.write(CONTROL, 1, 0x00); // latch counter 0
    at(500);
    expect(pit.read(0, 1) | (pit.read(0, 1) << 8)).toBe(990);
    // the latch is released once read: the next reads follow the counter
    expect(pit.read(0, 1) | (pit.read(0, 1) << 8)).toBe(1000 - 499);
  });

  it('a second latch command before the count is read is ignored', () => {
    const { pit, at, control, load } = setup();
    control(0, RW_WORD, 0);
    load(0, 1000);
    at(101);
    pit.write(CONTROL, 1, 0x00);
    at(201);
    pit.write(CONTROL, 1, 0x00);
    expect(pit.read(0, 1) | (pit.read(0, 1) << 8)).toBe(900);
  });

  it('reads the latched count in the programmed format (MSB only here)', () => {
    const { pit, at, control } = setup();
    control(0, RW_MSB, 0);
    pit.write(0, 1, 0x40); // 0x4000
    at(0x101);
    pit.write(CONTROL, 1, 0x00);
    at(0x900);
    expect(pit.read(0, 1)).toBe(0x3f); // 0x4000 - 0x100
    expect(pit.read(0, 1)).toBe(0x37); // live again
  });
});

describe('read-back command (11 COUNT STATUS CNT2 CNT1 CNT0 0)', () => {
  it('NULL COUNT is 1 from the control word until the count reaches CE on the next CLK', () => {
    const { at, control, load, status } = setup();
    control(0, RW_WORD, 2);
    expect(status(0) & 0x40).toBe(0x40);
    load(0, 100);
    expect(status(0) & 0x40).toBe(0x40); // written, not yet loaded
    at(1);
    expect(status(0) & 0x40).toBe(0);
  });

  it('mode 2: a new count written while counting stays NULL until the reload', () => {
    const { at, control, load, status } = setup();
    control(0, RW_WORD, 2);
    load(0, 100);
    at(30);
    load(0, 50);
    expect(status(0) & 0x40).toBe(0x40);
    at(100); // reload at edge 101 (1 + 100)
    expect(status(0) & 0x40).toBe(0x40);
    at(101);
    expect(status(0) & 0x40).toBe(0);
  });

  it('latches count and status of several counters; status is read first', () => {
    const { pit, at, control, load } = setup();
    control(0, RW_WORD, 2);
    load(0, 300);
    control(1, RW_WORD, 0);
    load(1, 400);
    at(51);
    pit.write(CONTROL, 1, 0xc0 | 0x02 | 0x04); // COUNT and STATUS of counters 0 and 1
    at(200);
    expect(pit.read(0, 1)).toBe(0x80 | 0x34); // OUT high, mode 2, RW 11
    expect(pit.read(0, 1) | (pit.read(0, 1) << 8)).toBe(250);
    expect(pit.read(1, 1)).toBe(0x30); // OUT low, mode 0
    expect(pit.read(1, 1) | (pit.read(1, 1) << 8)).toBe(350);
  });

  it('a status latched twice keeps the first', () => {
    const { pit, at, control, load } = setup();
    control(0, RW_WORD, 0);
    load(0, 10);
    pit.write(CONTROL, 1, 0xe2); // status only, counter 0: OUT low
    at(20);
    pit.write(CONTROL, 1, 0xe2); // OUT is high now, but the first status is unread
    expect(pit.read(0, 1) & 0x80).toBe(0);
    pit.write(CONTROL, 1, 0xe2);
    expect(pit.read(0, 1) & 0x80).toBe(0x80);
  });
});

describe('mode 0: interrupt on terminal count', () => {
  it('OUT is low after the control word and goes high N+1 CLKs after the count is written', () => {
    const { control, load, trace } = setup();
    control(0, RW_WORD, 0);
    load(0, 3);
    expect(trace(0, 0, 6)).toEqual({
      out: '0000111',
      counts: [3, 3, 2, 1, 0, 0xffff, 0xfffe], // loaded by edge 1; keeps counting past 0
    });
  });

  it('writing the first byte of a new count stops counting and sets OUT low', () => {
    const { pit, at, control, load, latched } = setup();
    control(0, RW_WORD, 0);
    load(0, 5);
    at(10);
    expect(pit.output(0)).toBe(true);
    pit.write(0, 1, 20);
    expect(pit.output(0)).toBe(false);
    const held = latched(0);
    at(50);
    expect(latched(0)).toBe(held);
    pit.write(0, 1, 0); // count 20 loads on the next CLK
    expect(pit.output(0)).toBe(false);
    at(50 + 20);
    expect(pit.output(0)).toBe(false);
    at(50 + 21);
    expect(pit.output(0)).toBe(true);
  });

  it('GATE low suspends counting, GATE high resumes it', () => {
    const { pit, at, control, load, latched } = setup();
    control(2, RW_WORD, 0);
    pit.setGate(2, true);
    load(2, 100);
    at(41);
    pit.setGate(2, false);
    expect(latched(2)).toBe(60);
    at(1000);
    expect(latched(2)).toBe(60);
    expect(pit.output(2)).toBe(false);
    pit.setGate(2, true); // 60 decrements left: terminal count at edge 1060
    at(1059);
    expect(pit.output(2)).toBe(false);
    at(1060);
    expect(pit.output(2)).toBe(true);
  });

  it('a count written while GATE is low is loaded, then counts from the rising edge', () => {
    const { pit, at, control, load, latched } = setup();
    control(2, RW_WORD, 0);
    load(2, 10);
    at(100);
    expect(latched(2)).toBe(10);
    pit.setGate(2, true);
    at(109);
    expect(pit.output(2)).toBe(false);
    at(110);
    expect(pit.output(2)).toBe(true);
  });

  it('raises IRQ0 once, at terminal count', () => {
    const { irq, pit, at, control, load } = setup();
    control(0, RW_WORD, 0);
    load(0, 100);
    expect(pit.nextEventNs()).toBe(pitTickNs(101));
    at(100);
    pit.pollTimer();
    expect(irq.risingEdges).toBe(0);
    at(101);
    pit.pollTimer();
    at(100_000);
    pit.pollTimer();
    expect(irq.risingEdges).toBe(1);
    expect(irq.levels).toEqual([true, false]);
    expect(pit.nextEventNs()).toBeNull();
  });
});

describe('mode 1: hardware retriggerable one-shot', () => {
  it('nothing happens until a GATE rising edge; then OUT is low for N CLKs', () => {
    const { pit, control, load, wave, trace } = setup();
    control(2, RW_WORD, 1);
    load(2, 3);
    expect(wave(2, 0, 5)).toBe('111111');
    pit.setGate(2, true); // trigger at edge 5
    expect(trace(2, 5, 11)).toEqual({ out: '1000111', counts: [3, 3, 2, 1, 0, 0xffff, 0xfffe] });
  });

  it('a trigger during the pulse restarts it: OUT stays low N CLKs after the last trigger', () => {
    const { pit, at, control, load, wave } = setup();
    control(2, RW_WORD, 1);
    load(2, 4);
    pit.setGate(2, true);
    at(3);
    pit.setGate(2, false);
    pit.setGate(2, true); // retrigger at edge 3
    expect(wave(2, 3, 9)).toBe('0000011');
  });

  it('a new count does not disturb the current pulse; the next trigger uses it', () => {
    const { pit, at, control, load, wave } = setup();
    control(2, RW_WORD, 1);
    load(2, 3);
    pit.setGate(2, true);
    at(2);
    load(2, 6);
    expect(wave(2, 2, 5)).toBe('0011');
    pit.setGate(2, false);
    at(10);
    pit.setGate(2, true);
    expect(wave(2, 10, 18)).toBe('100000011');
  });
});

describe('mode 2: rate generator', () => {
  it('OUT is low for one CLK when the count reaches 1, then the count reloads: period N', () => {
    const { control, load, trace } = setup();
    control(0, RW_WORD, 2);
    load(0, 4);
    expect(trace(0, 0, 13)).toEqual({
      out: '11110111011101',
      counts: [4, 4, 3, 2, 1, 4, 3, 2, 1, 4, 3, 2, 1, 4],
    });
  });

  it('a new count takes effect at the end of the current period', () => {
    const { at, control, load, wave } = setup();
    control(0, RW_WORD, 2);
    load(0, 4);
    at(2);
    load(0, 3);
    expect(wave(0, 2, 12)).toBe('11011011011');
  });

  it('GATE low stops counting and forces OUT high; a rising GATE reloads the count', () => {
    const { pit, at, control, load, wave, latched } = setup();
    control(2, RW_WORD, 2);
    pit.setGate(2, true);
    load(2, 4);
    at(4); // OUT low (count 1)
    expect(pit.output(2)).toBe(false);
    pit.setGate(2, false);
    expect(pit.output(2)).toBe(true);
    at(20);
    expect(latched(2)).toBe(1);
    pit.setGate(2, true);
    expect(wave(2, 20, 28)).toBe('111101110');
  });
});

describe('mode 3: square wave', () => {
  it('even N: high N/2, low N/2; the counter decrements by two', () => {
    const { control, load, trace } = setup();
    control(0, RW_WORD, 3);
    load(0, 4);
    expect(trace(0, 0, 8)).toEqual({ out: '111001100', counts: [4, 4, 2, 4, 2, 4, 2, 4, 2] });
  });

  it('odd N: high (N+1)/2, low (N-1)/2', () => {
    const { control, load, trace } = setup();
    control(0, RW_WORD, 3);
    load(0, 5);
    // high: N, N-1, then by twos; low: N, N-3, then by twos
    expect(trace(0, 0, 11)).toEqual({ out: '111100111001', counts: [5, 5, 4, 2, 5, 2, 5, 4, 2, 5, 2, 5] });
  });

  it('high ceil(N/2) and low floor(N/2) CLKs for a range of counts', () => {
    for (const n of [2, 3, 6, 7, 100, 101]) {
      const { control, load, wave } = setup();
      control(0, RW_WORD, 3);
      load(0, n);
      const w = wave(0, 1, 2 * n);
      const expected = ('1'.repeat(Math.ceil(n / 2)) + '0'.repeat(Math.floor(n / 2))).repeat(2);
      expect(w).toBe(expected);
    }
  });

  it('a new count takes effect at the end of the current half-cycle', () => {
    const { at, control, load, wave } = setup();
    control(0, RW_WORD, 3);
    load(0, 8);
    at(2); // in the high half (edges 1-4)
    load(0, 4);
    // old high half ends at edge 5, then the new count: low 2, high 2, low 2 ...
    expect(wave(0, 2, 12)).toBe('11100110011');
  });

  it('GATE low forces OUT high and holds the count; a rising GATE restarts the cycle', () => {
    const { pit, at, control, load, wave } = setup();
    control(2, RW_WORD, 3);
    pit.setGate(2, true);
    load(2, 6);
    at(5);
    expect(pit.output(2)).toBe(false);
    pit.setGate(2, false);
    expect(pit.output(2)).toBe(true);
    at(30);
    pit.setGate(2, true);
    expect(wave(2, 30, 42)).toBe('1111000111000');
  });
});

describe('mode 4: software triggered strobe', () => {
  it('OUT is high and goes low for one CLK N+1 CLKs after the count is written', () => {
    const { control, load, wave } = setup();
    control(0, RW_WORD, 4);
    load(0, 3);
    expect(wave(0, 0, 7)).toBe('11110111');
  });

  it('GATE low suspends counting', () => {
    const { pit, at, control, load, wave } = setup();
    control(2, RW_WORD, 4);
    pit.setGate(2, true);
    load(2, 10);
    at(6); // count 5
    pit.setGate(2, false);
    at(100);
    pit.setGate(2, true);
    expect(wave(2, 100, 107)).toBe('11111011'); // count 5 left: strobe at edge 105
  });

  it('IRQ0 sees the strobe\'s rising edge', () => {
    const { irq, pit, at, control, load } = setup();
    control(0, RW_WORD, 4);
    load(0, 10);
    expect(pit.nextEventNs()).toBe(pitTickNs(12));
    at(12);
    pit.pollTimer();
    expect(irq.risingEdges).toBe(1);
  });
});

describe('mode 5: hardware triggered strobe', () => {
  it('waits for a GATE rising edge; OUT goes low for one CLK N+1 CLKs after it', () => {
    const { pit, at, control, load, wave } = setup();
    control(2, RW_WORD, 5);
    load(2, 3);
    expect(wave(2, 0, 10)).toBe('11111111111');
    at(10);
    pit.setGate(2, true);
    expect(wave(2, 10, 16)).toBe('1111011');
  });

  it('a retrigger restarts the count', () => {
    const { pit, at, control, load, wave } = setup();
    control(2, RW_WORD, 5);
    load(2, 4);
    pit.setGate(2, true);
    at(3);
    pit.setGate(2, false);
    pit.setGate(2, true);
    expect(wave(2, 3, 10)).toBe('11111011');
  });
});

describe('BCD counting', () => {
  it('counts in four decades: 0100, 0099, 0098 ...', () => {
    const { control, load, countsAt } = setup();
    control(0, RW_WORD, 0, 1);
    load(0, 0x0100);
    expect(countsAt(0, 1, 4)).toEqual([0x0100, 0x0099, 0x0098, 0x0097]);
  });

  it('count 0 means 10000 in BCD: 0000, 9999, ...; mode 2 period 10000', () => {
    const { irq, pit, at, control, load, countsAt } = setup();
    control(0, RW_WORD, 2, 1);
    load(0, 0);
    expect(countsAt(0, 1, 3)).toEqual([0x0000, 0x9999, 0x9998]);
    at(10_001);
    pit.pollTimer();
    expect(irq.risingEdges).toBe(1);
    at(20_000);
    pit.pollTimer();
    expect(irq.risingEdges).toBe(1);
  });

  it('mode 3 in BCD decrements by two in decimal', () => {
    const { control, load, countsAt } = setup();
    control(0, RW_WORD, 3, 1);
    load(0, 0x1000);
    expect(countsAt(0, 1, 3)).toEqual([0x1000, 0x0998, 0x0996]);
  });
});

describe('count 0 means 65536 in binary', () => {
  it('mode 0: reads 0, then FFFF; OUT goes high after 65537 CLKs', () => {
    const { pit, at, control, load, countsAt } = setup();
    control(0, RW_WORD, 0);
    load(0, 0);
    expect(countsAt(0, 1, 2)).toEqual([0, 0xffff]);
    at(65536);
    expect(pit.output(0)).toBe(false);
    at(65537);
    expect(pit.output(0)).toBe(true);
  });

  it('mode 2: period 65536 CLKs', () => {
    const { irq, pit, at, control, load } = setup();
    control(0, RW_WORD, 2);
    load(0, 0);
    at(65536);
    pit.pollTimer();
    expect(irq.risingEdges).toBe(0);
    at(65537);
    pit.pollTimer();
    expect(irq.risingEdges).toBe(1);
    expect(pit.nextEventNs()).toBe(pitTickNs(1 + 2 * 65536));
  });
});

describe('IRQ0: counter 0 OUT on an edge-triggered PIC input', () => {
  const HZ_1000 = Math.round(PIT_HZ / 1000); // 1193: what Linux writes for HZ=1000

  function periodic(options?: Pit8254Options) {
    const s = setup(options);
    s.control(0, RW_WORD, 2);
    s.load(0, HZ_1000);
    return s;
  }

  it('10 ms of a 1000 Hz mode-2 counter seen at once: 10 ticks, one pulse, 9 coalesced', () => {
    const { irq, pit, clock } = periodic();
    clock.advance(10_000_000);
    pit.pollTimer();
    // The guest ran no code between those edges: the PIC could only have taken one.
    expect(irq.risingEdges).toBe(1);
    expect(irq.levels).toEqual([true, false]); // a pulse: high, then low
    expect(pit.irq0Ticks).toEqual({ ticks: 10, delivered: 1, coalesced: 9, ignored: 0 });
  });

  it('a timer that sleeps until nextEventNs gets exactly one pulse per wake-up', () => {
    const { irq, pit, clock } = periodic();
    for (let i = 1; i <= 100; i++) {
      clock.setNs(pit.nextEventNs()!);
      pit.pollTimer();
      expect(irq.risingEdges).toBe(i);
    }
    expect(clock.nowNs()).toBe(pitTickNs(1 + 100 * HZ_1000)); // 99.985 ms: 1193 CLKs is 999.85 us
    expect(pit.irq0Ticks).toEqual({ ticks: 100, delivered: 100, coalesced: 0, ignored: 0 });
  });

  it('nextEventNs is the first ns at or after the CLK edge where OUT rises', () => {
    const { irq, pit, clock } = periodic();
    for (let j = 1; j <= 5; j++) {
      const next = pit.nextEventNs()!;
      expect(next).toBe(pitTickNs(1 + j * HZ_1000));
      clock.setNs(next - 1);
      pit.pollTimer();
      expect(irq.risingEdges).toBe(j - 1);
      clock.setNs(next);
      pit.pollTimer();
      expect(irq.risingEdges).toBe(j);
    }
    expect(pit.nextEventNs()! - pitTickNs(1 + 5 * HZ_1000)).toBeCloseTo((HZ_1000 * 1e9) / PIT_HZ, -1);
  });

  it('a late caller sees nextEventNs in the past, at the first undelivered edge', () => {
    const { pit, clock } = periodic();
    clock.advance(5_000_000);
    pit.output(0); // any access brings the counter up to date; the edges stay undelivered
    expect(pit.nextEventNs()).toBe(pitTickNs(1 + HZ_1000));
  });

  it('after a long stall: one pulse, the rest coalesced, and the schedule goes on from now', () => {
    const { irq, pit, clock } = periodic();
    clock.advance(1_000_000_000); // one second late: 1000 edges
    pit.pollTimer();
    expect(irq.risingEdges).toBe(1);
    expect(pit.irq0Ticks).toEqual({ ticks: 1000, delivered: 1, coalesced: 999, ignored: 0 });
    expect(pit.nextEventNs()).toBeGreaterThan(clock.nowNs());
    expect(pit.nextEventNs()! - clock.nowNs()).toBeLessThanOrEqual(1_000_000);
  });

  it('a tick the PIC reports as coalesced (IRQ0 still pending: not acknowledged) is counted, not queued', () => {
    const { irq, pit, clock } = periodic();
    clock.setNs(pit.nextEventNs()!);
    pit.pollTimer();
    irq.outcome = 'coalesced'; // the guest has not acknowledged that one yet
    for (let i = 0; i < 5; i++) {
      clock.setNs(pit.nextEventNs()!);
      pit.pollTimer();
    }
    expect(pit.irq0Ticks).toEqual({ ticks: 6, delivered: 1, coalesced: 5, ignored: 0 });
    irq.outcome = 'new'; // acknowledged: the next tick is a new request, and nothing was saved up
    clock.setNs(pit.nextEventNs()!);
    pit.pollTimer();
    expect(pit.irq0Ticks).toEqual({ ticks: 7, delivered: 2, coalesced: 5, ignored: 0 });
    expect(irq.risingEdges).toBe(7);
  });

  it('a masked IRQ0 counts its ticks as ignored', () => {
    const { irq, pit, clock } = periodic();
    irq.outcome = 'ignored';
    clock.setNs(pit.nextEventNs()!);
    pit.pollTimer();
    expect(pit.irq0Ticks).toEqual({ ticks: 1, delivered: 0, coalesced: 0, ignored: 1 });
  });

  it('count 2 in mode 2 (a tick every 1.7 us): a poll costs one pulse however many ticks passed', () => {
    const { irq, pit, clock, control, load } = setup();
    control(0, RW_WORD, 2);
    load(0, 2);
    for (let i = 1; i <= 50; i++) {
      clock.advance(200_000); // the machine's minimum timer period
      pit.pollTimer();
      expect(irq.risingEdges).toBe(i);
    }
    const { ticks, delivered, coalesced } = pit.irq0Ticks;
    expect(ticks).toBe(Math.floor((pitTicksAt(10_000_000) - 1) / 2));
    expect(delivered).toBe(50);
    expect(coalesced).toBe(ticks - 50);
  });

  it('mode 3 at 1000 Hz also pulses once per period', () => {
    const { irq, pit, clock, control, load } = setup();
    control(0, RW_WORD, 3);
    load(0, HZ_1000);
    for (let i = 1; i <= 10; i++) {
      clock.setNs(pit.nextEventNs()!);
      pit.pollTimer();
    }
    expect(irq.risingEdges).toBe(10);
    expect(clock.nowNs()).toBe(pitTickNs(1 + 10 * HZ_1000));
  });

  it('a control word that raises OUT (mode 0, before terminal count, to mode 2) is an edge', () => {
    const { irq, pit, control, load } = setup();
    control(0, RW_WORD, 0);
    load(0, 1000);
    expect(irq.risingEdges).toBe(0);
    control(0, RW_WORD, 2); // OUT low -> high
    expect(irq.risingEdges).toBe(1);
    expect(pit.nextEventNs()).toBeNull(); // no count yet
  });

  it('a new mode-2 count is followed by edges at the new rate after the current period', () => {
    const { irq, pit, at, control, load } = setup();
    control(0, RW_WORD, 2);
    load(0, 100);
    at(50);
    load(0, 10);
    expect(pit.nextEventNs()).toBe(pitTickNs(101));
    pit.pollTimer();
    at(101);
    pit.pollTimer();
    expect(pit.nextEventNs()).toBe(pitTickNs(111));
    at(131);
    pit.pollTimer();
    expect(pit.irq0Ticks.ticks).toBe(4); // 101, 111, 121, 131
    expect(irq.risingEdges).toBe(2); // the last three in one poll: one pulse
  });

  it('a stopped counter has no next event', () => {
    const { pit, control } = setup();
    control(0, RW_WORD, 2);
    expect(pit.nextEventNs()).toBeNull();
  });
});
