// The 8254's state as data: every bit of the three counters lives in one
// PIT8254_STATE buffer. A PIT driven into a busy state (a count latched and
// half read, a 16-bit count half read, a count half written, a status byte
// latched, a mode 3 count waiting for the end of a half-cycle, IRQ0 edges
// due) is saved and restored into another PIT, with its own buffer and clock
// and programmed otherwise; both must then answer every port and raise IRQ0
// alike as time goes on. Time is a ManualClock, stepped in CLK edges.
import { describe, expect, it } from 'vitest';
import { ManualClock, MonotonicClock } from '../../src/devices/clock.ts';
import { RecordingLine } from '../../src/devices/interrupt-line.ts';
import { PIT8254_STATE, Pit8254, PitReg, pitTickNs, pitTicksAt } from '../../src/devices/pit8254.ts';
import { InputError } from '../../src/errors.ts';

const CONTROL = PitReg.CONTROL;
const RW_LSB = 1, RW_MSB = 2, RW_WORD = 3;
/** Where the tests' time starts: a while after the clock's origin, as in a running machine. */
const START_NS = 5_000_000_000;
const T0 = pitTicksAt(START_NS);

/** A PIT on a ManualClock at edge `k` after T0, over `state` if given. */
function makePit(k: number, state?: SharedArrayBuffer) {
  const clock = new ManualClock(pitTickNs(T0 + k));
  const irq = new RecordingLine();
  let reprogrammed = 0;
  const pit = new Pit8254(clock, irq, { state, onReprogrammed: () => reprogrammed++ });
  return {
    clock, irq, pit,
    get reprogrammed() { return reprogrammed; },
    /** Moves the clock to CLK edge `k` after T0. */
    at: (edge: number) => clock.setNs(pitTickNs(T0 + edge)),
    control: (sc: number, rw: number, mode: number, bcd = 0) => pit.write(CONTROL, 1, (sc << 6) | (rw << 4) | (mode << 1) | bcd),
    load: (ch: number, count: number) => {
      pit.write(ch, 1, count & 0xff);
      pit.write(ch, 1, count >> 8);
    },
  };
}

/**
 * The busy PIT, at edge 4100:
 * - counter 0, mode 2, count 1000 from edge 0: the IRQ0 edges at 1001, 2001
 *   and 3001 taken, the one at 4001 due and not yet taken; the LSB of its
 *   live count read (901 = 0x385), the MSB not;
 * - counter 1, mode 0, BCD, count 5000 from edge 100: count latched at edge
 *   200 (4901) and its LSB read, the MSB waiting in the latch; at edge 3900
 *   the LSB of a new count written, which stops it (mode 0), the MSB not;
 * - counter 2, GATE high, mode 3, count 3001 from edge 300; at edge 3900 the
 *   LSB of its live count read (the read flip-flop now points at the MSB),
 *   then a count 500 written, to take over at the end of the half-cycle
 *   (edge 4803), then its status latched by a read-back and not read.
 */
function busyPit() {
  const p = makePit(0);
  const { pit, at, control, load } = p;
  control(0, RW_WORD, 2);
  load(0, 1000);
  at(100);
  control(1, RW_WORD, 0, 1);
  load(1, 0x5000);
  at(200);
  pit.write(CONTROL, 1, 1 << 6); // counter latch command, counter 1
  const counter1LatchedLsb = pit.read(1, 1);
  at(300);
  pit.setGate(2, true);
  control(2, RW_WORD, 3);
  load(2, 3001);
  at(2000);
  pit.pollTimer();
  at(3900);
  pit.read(2, 1); // LSB of counter 2's live count
  load(2, 500);
  pit.write(CONTROL, 1, 0xc0 | 0x20 | (1 << 3)); // read-back: status of counter 2, not its count
  pit.write(1, 1, 0x21); // LSB of counter 1's new count (BCD 0x4321)
  at(4100);
  const counter0LiveLsb = pit.read(0, 1);
  return { ...p, counter1LatchedLsb, counter0LiveLsb };
}

/**
 * A PIT in another busy state, every counter programmed otherwise, IRQ0 ticks
 * ignored by a masked controller: the state a restore must overwrite entirely.
 */
function otherBusyPit() {
  const p = makePit(0);
  const { pit, irq, at, control, load } = p;
  control(0, RW_WORD, 2);
  load(0, 10);
  irq.outcome = 'ignored';
  at(95);
  pit.pollTimer();
  control(0, RW_LSB, 1, 1);
  pit.write(0, 1, 0x05); // mode 1 waits for a trigger on GATE
  control(1, RW_MSB, 4);
  pit.write(1, 1, 0x10);
  control(2, RW_LSB, 5, 1); // no count yet
  pit.write(CONTROL, 1, 0 << 6); // latch counter 0
  pit.write(CONTROL, 1, 0xc0 | 0x20 | (1 << 2)); // read-back: status of counter 1
  at(4100);
  irq.outcome = 'new';
  return p;
}

/**
 * Everything a guest and the machine can observe, in one fixed order: every
 * port read, each OUT and GATE, when IRQ0 is next due, and IRQ0 as time goes
 * on. Reads change the PIT (latches, flip-flops), so both PITs must go through
 * the same script.
 */
function observe(p: ReturnType<typeof makePit>) {
  const { pit, irq, at } = p;
  const edgesBefore = irq.risingEdges; // the original's line also saw the edges before the save
  const pulses = () => irq.risingEdges - edgesBefore;
  const pins = () => [0, 1, 2].map((ch) => [pit.output(ch), pit.gate(ch)]);
  const first = {
    counter1LatchedMsb: pit.read(1, 1),
    counter1Live: pit.read(1, 1) | (pit.read(1, 1) << 8),
    counter2Status: pit.read(2, 1),
    counter2LiveMsb: pit.read(2, 1),
    counter0LiveMsb: pit.read(0, 1),
    control: pit.read(CONTROL, 1),
    pins: pins(),
    nextIrq0Ns: pit.nextEventNs(),
  };
  pit.pollTimer();
  const afterPoll = { pulses: pulses(), irq0: pit.irq0Ticks };
  pit.write(1, 1, 0x43); // completes counter 1's new count: 4321, loaded by the next CLK
  const later: unknown[] = [pit.nextEventNs()];
  for (let edge = 4100, step = 0; step < 60; step++) {
    edge += 97 + 31 * (step % 5);
    at(edge);
    pit.pollTimer();
    pit.write(CONTROL, 1, 0xc0 | 0x0e); // read-back: count and status of all three
    later.push(edge, pulses(), pit.nextEventNs(), pins());
    for (const ch of [0, 1, 2]) later.push(pit.read(ch, 1), pit.read(ch, 1), pit.read(ch, 1));
  }
  at(4100 + 60 * 200);
  pit.pollTimer();
  const irq0 = pit.irq0Ticks;
  pit.setGate(2, false); // a GATE trigger restarts counter 2's mode 3 with the count it has
  pit.setGate(2, true);
  at(4100 + 60 * 200 + 300);
  pit.write(CONTROL, 1, 0xc0 | 0x08); // read-back: count and status of counter 2
  const retriggered = [pit.read(2, 1), pit.read(2, 1), pit.read(2, 1)];
  return { first, afterPoll, later, irq0, retriggered };
}

describe('the 8254 saved and restored', () => {
  it('a restored PIT answers every read and raises IRQ0 as the original does', () => {
    const original = busyPit();
    expect(original.counter1LatchedLsb).toBe(0x01); // BCD 4901
    expect(original.counter0LiveLsb).toBe(0x85); // 901 = 0x385
    const saved = original.pit.saveState();
    expect(saved.kind).toBe('pit8254');

    const restored = otherBusyPit(); // its own clock and buffer, at edge 4100
    const before = restored.reprogrammed;
    restored.pit.restoreState(saved);
    expect(restored.reprogrammed).toBe(before + 1); // the machine re-arms its timer for the restored IRQ0
    expect(restored.pit.state).not.toBe(original.pit.state);

    const expected = observe(original);
    const actual = observe(restored);
    expect(actual).toEqual(expected);
    // And what both saw is the busy PIT, not a power-on one.
    expect(expected.first).toEqual({
      counter1LatchedMsb: 0x49,
      counter1Live: 0x1201, // held since the new count's first byte stopped it at edge 3900: 5000 - 3799 (BCD)
      counter2Status: 0x80 | 0x40 | 0x30 | (3 << 1), // OUT high, NULL COUNT (500 waits), LSB then MSB, mode 3
      counter2LiveMsb: 1406 >> 8, // still the count 3001: 798 CLKs into its high half-cycle
      counter0LiveMsb: 0x03,
      control: 0xff,
      pins: [[true, true], [false, true], [true, true]], // counter 1: mode 0 OUT low while a count is written
      nextIrq0Ns: pitTickNs(T0 + 4001), // due, not yet taken
    });
    expect(expected.afterPoll).toEqual({ pulses: 1, irq0: { ticks: 4, delivered: 3, coalesced: 1, ignored: 0 } });
    expect(expected.later[0]).toBe(pitTickNs(T0 + 5001)); // counter 0's next IRQ0 edge
    expect(expected.irq0).toMatchObject({ ticks: 16 }); // IRQ0 edges at 1001, 2001, ... 16001
    expect(expected.retriggered[0]).toBe(0x30 | (3 << 1)); // running again with 500: 300 CLKs in, the low half
  });

  it('a PIT saved in the CLK between a count\'s write and its load pulse shows the same OUT and NULL COUNT, then counts alike', () => {
    const original = makePit(0);
    original.control(1, RW_WORD, 0);
    original.at(4100);
    original.load(1, 300); // mode 0: OUT low at once; the next CLK loads the count
    const restored = otherBusyPit();
    restored.pit.restoreState(original.pit.saveState());
    for (const p of [original, restored]) {
      expect(p.pit.output(1)).toBe(false);
      p.pit.write(CONTROL, 1, 0xc0 | 0x20 | (1 << 2)); // read-back: status of counter 1
      expect(p.pit.read(1, 1)).toBe(0x40 | 0x30); // OUT low, NULL COUNT, LSB then MSB, mode 0
      p.at(4100 + 301);
      expect(p.pit.output(1)).toBe(true); // terminal count: N + 1 CLKs after the write
    }
  });

  it('a counter 2 half-read in one PIT object is finished in another over the same buffer: one PIT', () => {
    const a = makePit(0);
    a.control(2, RW_WORD, 0);
    a.load(2, 0x1234);
    a.pit.setGate(2, true);
    a.pit.write(CONTROL, 1, 2 << 6); // latch counter 2
    const b = makePit(0, a.pit.state); // another thread's PIT: the buffer as it is, not reset
    expect(a.pit.read(2, 1)).toBe(0x34);
    expect(b.pit.read(2, 1)).toBe(0x12);
    expect(b.pit.gate(2)).toBe(true);
    b.pit.write(CONTROL, 1, 0xc0 | 0x20 | (1 << 3)); // read-back status through b ...
    // ... read through a: OUT low (mode 0), NULL COUNT (the count is loaded by the next CLK), LSB then MSB, mode 0
    expect(a.pit.read(2, 1)).toBe(0x40 | 0x30);

    // IRQ0 edges are taken once, by whichever object polls.
    a.control(0, RW_WORD, 2);
    a.load(0, 100);
    a.at(350);
    b.at(350);
    b.pit.pollTimer();
    a.pit.pollTimer();
    expect(b.irq.risingEdges).toBe(1);
    expect(a.irq.risingEdges).toBe(0);
    expect(a.pit.irq0Ticks).toEqual(b.pit.irq0Ticks);
  });

  it('refuses the state of another device, of another version, or of the wrong size', () => {
    const { pit } = makePit(0);
    const saved = pit.saveState();
    const clockState = new MonotonicClock().saveState();
    expect(() => pit.restoreState(clockState)).toThrow(InputError);
    expect(() => pit.restoreState(clockState)).toThrow('clock state cannot be restored into pit8254 (another device)');
    expect(() => pit.restoreState({ ...saved, version: 0 })).toThrow('pit8254 state version 0 cannot be restored: this tsvmm reads version 1');
    expect(() => pit.restoreState({ ...saved, bytes: saved.bytes.subarray(8) })).toThrow(
      `pit8254 state: ${PIT8254_STATE.bytes - 8} bytes, expected ${PIT8254_STATE.bytes} (damaged state)`,
    );
  });
});
