// The i8042's state as data (I8042_STATE): a controller driven into a busy
// state (command byte, RAM and output port rewritten, five reply bytes queued
// from the keyboard and the aux port, a controller command and a keyboard
// command each waiting for their data byte, keyboard LEDs and scan set set)
// is saved, restored into a fresh controller, and both then answer every
// read alike, finish the pending commands alike and drive IRQ1/IRQ12 alike.
import { describe, expect, it } from 'vitest';
import { I8042, I8042_STATE, I8042Port } from '../../src/devices/i8042.ts';
import { RecordingLine } from '../../src/devices/interrupt-line.ts';
import { expectRestoreRefusals } from './refusals.ts';

const DATA = I8042Port.DATA;
const CMD = I8042Port.STATUS_COMMAND;
// Status register and command byte bits.
const OBF = 0x01, AUXDATA = 0x20, TIMEOUT = 0x40;
const KBD_INT = 0x01, AUX_INT = 0x02, CTR_SYS = 0x04, XLATE = 0x40;
// Keyboard replies.
const ACK = 0xfa, RESEND = 0xfe;

function controller(state?: SharedArrayBuffer) {
  const keyboardIrq = new RecordingLine();
  const auxIrq = new RecordingLine();
  let resets = 0;
  const dev = new I8042({ onReset: () => resets++, keyboardIrq, auxIrq, ...(state ? { state } : {}) });
  const command = (c: number, data?: number) => {
    dev.write(CMD, 1, c);
    if (data !== undefined) dev.write(DATA, 1, data);
  };
  const send = (...bytes: number[]) => bytes.forEach((b) => dev.write(DATA, 1, b));
  return { dev, keyboardIrq, auxIrq, resets: () => resets, command, send };
}

function busyController() {
  const c = controller();
  c.command(0x60, KBD_INT | AUX_INT | CTR_SYS | XLATE); // both interrupts on
  c.command(0x61, 0x5a); // RAM byte 1
  c.command(0xd1, 0xcd); // output port: A20 off, CPU running
  c.send(0xed, 0x05); // LEDs: Scroll and Caps
  c.dev.read(DATA, 1);
  c.dev.read(DATA, 1);
  c.send(0xf0, 0x03); // scan code set 3
  c.dev.read(DATA, 1);
  c.dev.read(DATA, 1);
  c.send(0xf2); // identify: ACK, AB, 41 queued
  c.command(0xd4, 0x00); // to the absent mouse: FE with AUX and TIMEOUT queued
  c.send(0xf3); // typematic: ACK queued, the keyboard waits for the rate byte
  c.command(0xd3); // the controller waits for a byte to echo as if from the mouse
  return c;
}

/** Status and data until the queue is empty (at most 16 bytes), then the command byte, RAM byte 1 and the output port. */
function readAll(c: ReturnType<typeof controller>): number[] {
  const seen: number[] = [];
  for (let i = 0; i < 16; i++) {
    const status = c.dev.read(CMD, 1);
    seen.push(status);
    if (!(status & OBF)) break;
    seen.push(c.dev.read(DATA, 1));
  }
  for (const command of [0x20, 0x21, 0xd0]) {
    c.command(command);
    seen.push(c.dev.read(CMD, 1), c.dev.read(DATA, 1));
  }
  return seen;
}

describe('I8042 state', () => {
  it('a busy controller restored into a fresh one reads, completes and interrupts the same', () => {
    const original = busyController();
    const saved = original.dev.saveState();
    expect(saved.kind).toBe('i8042');

    const copy = controller();
    copy.dev.restoreState(saved);
    // IRQ1 is high for the waiting ACK; IRQ12 low: the restore drives both.
    expect(copy.keyboardIrq.levels).toEqual([true]);
    expect(copy.auxIrq.levels).toEqual([false]);
    expect([copy.dev.leds, copy.dev.scanning, copy.dev.typematic, copy.dev.outputPort]).toEqual([0x05, true, 0x2b, 0xcd]);

    // Both finish the two pending commands: 0x77 echoed from the aux port, 0x14 the keyboard's rate.
    for (const c of [original, copy]) {
      c.keyboardIrq.levels.length = 0;
      c.auxIrq.levels.length = 0;
      c.send(0x77, 0x14);
    }
    const seen = readAll(original);
    expect(readAll(copy)).toEqual(seen);
    expect(copy.dev.typematic).toBe(0x14);
    expect(copy.keyboardIrq.levels).toEqual(original.keyboardIrq.levels);
    expect(copy.auxIrq.levels).toEqual(original.auxIrq.levels);

    // And what was queued is what busyController put there, in order.
    const bytes = seen.filter((_, i) => i % 2 === 1).slice(0, 7);
    expect(bytes).toEqual([ACK, 0xab, 0x41, RESEND, ACK, 0x77, ACK]);
    expect(seen[6]! & (AUXDATA | TIMEOUT)).toBe(AUXDATA | TIMEOUT); // the status with the mouse's FE
    expect(seen.slice(-6).filter((_, i) => i % 2 === 1)).toEqual([KBD_INT | AUX_INT | CTR_SYS | XLATE, 0x5a, 0xcd]);
    expect(copy.auxIrq.risingEdges).toBe(2); // the mouse's FE and the echoed 0x77, one edge each
  });

  it('keyboard settings survive: F0 00 reports scan set 3 (translated) after a restore', () => {
    const original = busyController();
    const copy = controller();
    copy.dev.restoreState(original.dev.saveState());
    copy.send(0x00); // completes 0xD3: echoed as aux data
    copy.send(0x00); // completes 0xF3 with rate 0
    copy.send(0xf0, 0x00);
    const bytes: number[] = [];
    for (let i = 0; i < 16 && copy.dev.read(CMD, 1) & OBF; i++) bytes.push(copy.dev.read(DATA, 1));
    expect(bytes.slice(-2)).toEqual([ACK, 0x3f]); // set 3 through the translation table
  });

  it('two objects over one buffer are one controller: a command on one, its reply on the other', () => {
    const a = controller();
    const b = controller(a.dev.state);
    expect(b.keyboardIrq.levels).toEqual([]); // sharing the buffer does not reset or drive anything
    a.command(0x60, KBD_INT | CTR_SYS);
    a.command(0x20);
    expect(b.dev.read(CMD, 1) & OBF).toBe(OBF);
    expect(b.dev.read(DATA, 1)).toBe(KBD_INT | CTR_SYS);
    expect(a.dev.read(CMD, 1) & OBF).toBe(0);
    a.send(0xed);
    b.dev.read(DATA, 1);
    b.send(0x02); // the LED byte through b completes the command a started
    expect(a.dev.leds).toBe(0x02);
  });

  it('refuses another device\'s state, another version and a damaged size', () => {
    expectRestoreRefusals(I8042_STATE, busyController().dev);
  });
});
