// The 16550A's state as data (SERIAL16550_STATE): a UART driven into a busy
// state (FIFOs on with a trigger level, RX FIFO partly full with a break in
// it, a divisor, modem-status changes, a pending THRE, host input refused)
// is saved, restored into a fresh UART, and both then answer every register
// read alike and produce the same next outputs.
import { describe, expect, it } from 'vitest';
import { MemorySink } from '../../src/devices/char-sink.ts';
import { RecordingLine } from '../../src/devices/interrupt-line.ts';
import { Reg, SERIAL16550_STATE, Serial16550 } from '../../src/devices/serial16550.ts';
import { expectRestoreRefusals } from './refusals.ts';

// Register bits, named as in the datasheet.
const IER_ERBFI = 0x01, IER_ETBEI = 0x02, IER_ELSI = 0x04, IER_EDSSI = 0x08;
const FCR_ENABLE = 0x01, FCR_TRIGGER_8 = 0x80;
const LCR_DLAB = 0x80, LCR_8N1 = 0x03;
const MCR_DTR = 0x01, MCR_OUT2 = 0x08, MCR_LOOP = 0x10;
const LSR_DR = 0x01, LSR_OE = 0x02, LSR_THRE = 0x20, LSR_TEMT = 0x40, LSR_FIFO_ERROR = 0x80;
const MSR_DCTS = 0x01, MSR_CTS = 0x10, MSR_DSR = 0x20, MSR_DCD = 0x80;

function uart(state?: SharedArrayBuffer) {
  const sink = new MemorySink();
  const irq = new RecordingLine();
  const dev = new Serial16550('COM1', sink, irq, state);
  let spaceOffers = 0;
  dev.onReceiveSpace = () => spaceOffers++;
  return { sink, irq, dev, offers: () => spaceOffers };
}

/** Every register as the guest sees it, DLAB off then on; reads with side effects included, in a fixed order. */
function readAll(dev: Serial16550): number[] {
  const lcr = dev.read(Reg.LCR, 1);
  const plain = [Reg.IER_DLM, Reg.IIR_FCR, Reg.LCR, Reg.MCR, Reg.SCR].map((r) => dev.read(r, 1));
  dev.write(Reg.LCR, 1, lcr | LCR_DLAB);
  const latch = [dev.read(Reg.RBR_THR_DLL, 1), dev.read(Reg.IER_DLM, 1)];
  dev.write(Reg.LCR, 1, lcr);
  return [...plain, ...latch];
}

/** LSR, MSR, then the RX FIFO drained byte by byte with IIR and LSR after each byte. */
function drain(dev: Serial16550): number[] {
  const seen = [dev.read(Reg.LSR, 1), dev.read(Reg.MSR, 1)];
  for (let i = 0; i < 20; i++) seen.push(dev.read(Reg.RBR_THR_DLL, 1), dev.read(Reg.IIR_FCR, 1), dev.read(Reg.LSR, 1));
  return seen;
}

function busyUart() {
  const u = uart();
  const { dev } = u;
  dev.write(Reg.LCR, 1, LCR_DLAB | LCR_8N1);
  dev.write(Reg.RBR_THR_DLL, 1, 0x01); // 115200 baud
  dev.write(Reg.IER_DLM, 1, 0x00);
  dev.write(Reg.LCR, 1, LCR_8N1);
  dev.write(Reg.IIR_FCR, 1, FCR_ENABLE | FCR_TRIGGER_8);
  dev.write(Reg.SCR, 1, 0x5a);
  dev.write(Reg.MCR, 1, MCR_OUT2 | MCR_LOOP | MCR_DTR); // loopback: DSR follows DTR, a modem-status change
  dev.write(Reg.MCR, 1, MCR_OUT2); // back to the line: the DSR/CTS/DCD inputs change again
  dev.write(Reg.IER_DLM, 1, IER_ERBFI | IER_ETBEI | IER_ELSI | IER_EDSSI);
  expect(dev.receive([0x41, 0x42, 0x43])).toBe(3);
  expect(dev.receiveBreak()).toBe(true);
  expect(dev.receive([0x44])).toBe(1);
  dev.read(Reg.RBR_THR_DLL, 1); // 'A' read: 4 left, below the trigger level of 8
  dev.write(Reg.RBR_THR_DLL, 1, 0x7e); // a byte out, THRE pending again
  expect(dev.receive(new Uint8Array(16).fill(0x61))).toBe(12); // FIFO full, 4 refused
  return u;
}

describe('Serial16550 state', () => {
  it('a busy UART restored into a fresh one reads the same, register by register and byte by byte', () => {
    const original = busyUart();
    expect(original.irq.level).toBe(true);
    const saved = original.dev.saveState();
    expect(saved.kind).toBe('serial16550');

    const copy = uart();
    copy.dev.restoreState(saved);
    expect(copy.irq.levels).toEqual([true]); // the restore drives the line to the saved level

    expect(readAll(copy.dev)).toEqual(readAll(original.dev));
    const drained = drain(original.dev);
    expect(drain(copy.dev)).toEqual(drained);
    // What was restored: LSR with DR, THRE, TEMT and the FIFO error (the break is inside);
    // MSR with the host's DCD/DSR/CTS and the CTS change the loopback made; then the FIFO in order.
    expect(drained.slice(0, 2)).toEqual([LSR_FIFO_ERROR | LSR_TEMT | LSR_THRE | LSR_DR, MSR_DCD | MSR_DSR | MSR_CTS | MSR_DCTS]);
    const bytes = drained.slice(2).filter((_, i) => i % 3 === 0).slice(0, 16);
    expect(bytes).toEqual([0x42, 0x43, 0x00, 0x44, ...new Array<number>(12).fill(0x61)]);
    // Draining freed the space receive() had refused: both owe the host one offer.
    expect([original.offers(), copy.offers()]).toEqual([1, 1]);
    // Same next outputs: a THR write reaches each UART's own sink, the IRQ falls alike.
    original.dev.write(Reg.RBR_THR_DLL, 1, 0x21);
    copy.dev.write(Reg.RBR_THR_DLL, 1, 0x21);
    expect(copy.sink.text()).toBe('!');
    expect(original.sink.text()).toBe('~!');
    expect(copy.irq.level).toBe(original.irq.level);
  });

  it('loopback overrun (OE) and the byte it kept survive a restore', () => {
    const { dev } = uart();
    dev.write(Reg.MCR, 1, MCR_OUT2 | MCR_LOOP); // FIFOs off: one byte of room
    dev.write(Reg.RBR_THR_DLL, 1, 0x31);
    dev.write(Reg.RBR_THR_DLL, 1, 0x32); // overruns and overwrites RBR
    const copy = uart();
    copy.dev.restoreState(dev.saveState());
    expect(copy.dev.read(Reg.LSR, 1) & (LSR_DR | LSR_OE)).toBe(LSR_DR | LSR_OE);
    expect(copy.dev.read(Reg.RBR_THR_DLL, 1)).toBe(0x32);
    expect(copy.dev.canReceive()).toBe(0); // still in loopback
  });

  it('two objects over one buffer are one UART: bytes received through one are read through the other', () => {
    const a = uart();
    const b = uart(a.dev.state);
    b.dev.write(Reg.IER_DLM, 1, IER_ERBFI);
    expect(a.dev.receive([0x68, 0x69])).toBe(1); // FIFOs off: one byte fits, one refused
    expect(b.dev.read(Reg.IIR_FCR, 1) & 0x0f).toBe(0x04); // received data available
    expect(b.dev.read(Reg.RBR_THR_DLL, 1)).toBe(0x68);
    expect(b.offers()).toBe(1); // the refusal recorded by a, the room made by b: b's wiring is told
    expect(a.dev.read(Reg.LSR, 1) & LSR_DR).toBe(0);
    // The interrupt level each object drove: a raised it, b lowered it; the line is one wire in a machine.
    expect(a.irq.levels).toEqual([true]);
    expect(b.irq.levels).toEqual([false]);
  });

  it('a fresh UART starts at power-on: divisor 12, OUT2 on', () => {
    const { dev } = uart();
    dev.write(Reg.LCR, 1, LCR_DLAB);
    expect([dev.read(Reg.RBR_THR_DLL, 1), dev.read(Reg.IER_DLM, 1), dev.read(Reg.MCR, 1)]).toEqual([12, 0, MCR_OUT2]);
  });

  it('refuses another device\'s state, another version and a damaged size', () => {
    expectRestoreRefusals(SERIAL16550_STATE, busyUart().dev);
  });
});
