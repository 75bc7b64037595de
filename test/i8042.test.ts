// The i8042 keyboard controller and its keyboard, command by command (Intel
// 8042 / IBM PC AT technical reference; QEMU pckbd.c and ps2.c, kvmtool
// i8042.c where those are silent).
import { describe, expect, it } from 'vitest';
import { RecordingLine } from '../src/devices/interrupt-line.ts';
import { I8042, I8042_PORT_COUNT, I8042Port } from '../src/devices/i8042.ts';
import { PortLayout } from '../src/layout.ts';

const DATA = I8042Port.DATA;
const CMD = I8042Port.STATUS_COMMAND;

// Status register
const OBF = 0x01, IBF = 0x02, SYS = 0x04, A2 = 0x08, UNLOCKED = 0x10, AUXDATA = 0x20, TIMEOUT = 0x40;
// Command byte
const KBD_INT = 0x01, AUX_INT = 0x02, CTR_SYS = 0x04, KBD_DIS = 0x10, AUX_DIS = 0x20, XLATE = 0x40;

function controller() {
  const keyboardIrq = new RecordingLine();
  const auxIrq = new RecordingLine();
  let resets = 0;
  const dev = new I8042({ onReset: () => resets++, keyboardIrq, auxIrq });
  const status = () => dev.read(CMD, 1);
  const command = (c: number, data?: number) => {
    dev.write(CMD, 1, c);
    if (data !== undefined) dev.write(DATA, 1, data);
  };
  const send = (...bytes: number[]) => bytes.forEach((b) => dev.write(DATA, 1, b));
  /** Reads the output buffer until empty, as Linux's i8042_flush does. */
  const drain = () => {
    const out: number[] = [];
    while (status() & OBF) out.push(dev.read(DATA, 1));
    return out;
  };
  const commandByte = () => {
    command(0x20);
    return dev.read(DATA, 1);
  };
  return { dev, keyboardIrq, auxIrq, resets: () => resets, status, command, send, drain, commandByte };
}

describe('registration', () => {
  it('is one range of five ports at 0x60: data at offset 0, status/command at offset 4', () => {
    expect([PortLayout.I8042_DATA, PortLayout.I8042_COMMAND, I8042_PORT_COUNT]).toEqual([0x60, 0x64, 5]);
    const { dev } = controller();
    expect(dev.read(1, 1)).toBe(0xff); // 0x61..0x63 are not the controller's
    expect(dev.read(3, 1)).toBe(0xff);
  });

  it('commandPort serves 0x64 alone, for a machine that keeps 0x61 for the speaker port', () => {
    const { dev, drain } = controller();
    dev.commandPort.write(0, 1, 0xaa);
    expect(dev.commandPort.read(0, 1) & OBF).toBe(OBF);
    expect(drain()).toEqual([0x55]);
  });
});

describe('status register (read 0x64)', () => {
  it('at power-on: unlocked, system flag set (as firmware leaves it), buffers empty', () => {
    const { status } = controller();
    expect(status()).toBe(UNLOCKED | SYS);
  });

  it('IBF is never set: commands complete at once', () => {
    const { status, command, send } = controller();
    command(0x60);
    expect(status() & IBF).toBe(0);
    send(0x45);
    expect(status() & IBF).toBe(0);
  });

  it('A2 (bit 3) tells whether the last write went to 0x64 or 0x60', () => {
    const { status, command, send } = controller();
    command(0xa8);
    expect(status() & A2).toBe(A2);
    send(0xf4);
    expect(status() & A2).toBe(0);
  });

  it('OBF is set while a byte waits; reading 0x60 clears it and the byte stays readable', () => {
    const { dev, status, command } = controller();
    command(0xab);
    expect(status() & OBF).toBe(OBF);
    expect(dev.read(DATA, 1)).toBe(0x00);
    expect(status() & OBF).toBe(0);
    command(0xaa);
    dev.read(DATA, 1);
    expect(dev.read(DATA, 1)).toBe(0x55); // the buffer keeps its last byte
  });
});

describe('controller tests (0xAA, 0xAB, 0xA9)', () => {
  it('0xAA self test answers 0x55 and sets the system flag', () => {
    const { status, command, drain, commandByte } = controller();
    command(0x60, 0x00);
    expect(status() & SYS).toBe(0);
    command(0xaa);
    expect(drain()).toEqual([0x55]);
    expect(status() & SYS).toBe(SYS);
    expect(commandByte() & CTR_SYS).toBe(CTR_SYS);
  });

  it('0xAB keyboard interface test and 0xA9 aux interface test answer 0x00 (no error)', () => {
    const { command, drain } = controller();
    command(0xab);
    expect(drain()).toEqual([0x00]);
    command(0xa9);
    expect(drain()).toEqual([0x00]);
  });
});

describe('command byte (0x20 read, 0x60 write)', () => {
  it('powers on as a BIOS leaves it: translation, system flag, keyboard interrupt', () => {
    const { commandByte } = controller();
    expect(commandByte()).toBe(XLATE | CTR_SYS | KBD_INT);
  });

  it('0x60 writes the next data byte into it; bit 7 is reserved', () => {
    const { command, commandByte } = controller();
    command(0x60, 0xff);
    expect(commandByte()).toBe(0x7f);
    command(0x60, KBD_INT | AUX_INT);
    expect(commandByte()).toBe(KBD_INT | AUX_INT);
  });

  it('the status system flag follows command byte bit 2', () => {
    const { status, command } = controller();
    command(0x60, 0);
    expect(status() & SYS).toBe(0);
    command(0x60, CTR_SYS);
    expect(status() & SYS).toBe(SYS);
  });

  it('the rest of the internal RAM (0x21..0x3F, 0x61..0x7F) is plain storage', () => {
    const { dev, command, drain } = controller();
    command(0x65, 0x99);
    command(0x25);
    expect(drain()).toEqual([0x99]);
    command(0x3f);
    expect(dev.read(DATA, 1)).toBe(0);
  });

  it('a new command abandons one still waiting for its data byte', () => {
    const { command, send, drain, commandByte } = controller();
    command(0x60);
    command(0xab);
    expect(drain()).toEqual([0x00]);
    send(0xf4); // goes to the keyboard, not into the command byte
    expect(drain()).toEqual([0xfa]);
    expect(commandByte()).toBe(XLATE | CTR_SYS | KBD_INT);
  });
});

describe('port enables (0xA7/0xA8 aux, 0xAD/0xAE keyboard)', () => {
  it('set and clear the disable bits of the command byte', () => {
    const { command, commandByte } = controller();
    command(0xa7);
    expect(commandByte() & AUX_DIS).toBe(AUX_DIS);
    command(0xa8);
    expect(commandByte() & AUX_DIS).toBe(0);
    command(0xad);
    expect(commandByte() & KBD_DIS).toBe(KBD_DIS);
    command(0xae);
    expect(commandByte() & KBD_DIS).toBe(0);
  });
});

describe('output port (0xD0 read, 0xD1 write) and the reset line', () => {
  it('reads reset high, A20 on, lines idle, no buffer full', () => {
    const { command, drain } = controller();
    command(0xd0);
    expect(drain()).toEqual([0xcf]);
  });

  it('0xD1 stores the next byte; A20 off does not reset', () => {
    const { dev, command, resets } = controller();
    command(0xd1, 0xcd);
    expect(dev.outputPort).toBe(0xcd);
    expect(resets()).toBe(0);
  });

  it('0xD1 with bit 0 clear holds the CPU in reset: onReset', () => {
    const { command, resets } = controller();
    command(0xd1, 0xce);
    expect(resets()).toBe(1);
  });

  it('0xFE pulses the reset line: onReset (how Linux reboots); 0xFF pulses nothing', () => {
    const { command, resets } = controller();
    command(0xff);
    expect(resets()).toBe(0);
    command(0xfe);
    expect(resets()).toBe(1);
  });
});

describe('writing the output buffer (0xD2 keyboard, 0xD3 aux)', () => {
  it('0xD2 queues a byte as if the keyboard sent it: IRQ1', () => {
    const { status, command, drain, keyboardIrq, auxIrq } = controller();
    command(0xd2, 0x1c);
    expect(status() & (OBF | AUXDATA)).toBe(OBF);
    expect(keyboardIrq.level).toBe(true);
    expect(drain()).toEqual([0x1c]);
    expect(keyboardIrq.level).toBe(false);
    expect(auxIrq.levels).toEqual([]);
  });

  it('0xD3 queues a byte as if the mouse sent it: AUX_DATA and IRQ12', () => {
    const { status, command, drain, auxIrq } = controller();
    command(0x60, KBD_INT | AUX_INT);
    command(0xd3, 0xa5);
    expect(status() & (OBF | AUXDATA)).toBe(OBF | AUXDATA);
    expect(auxIrq.level).toBe(true);
    expect(drain()).toEqual([0xa5]);
    expect(auxIrq.level).toBe(false);
  });
});

describe('aux device (0xD4): none attached', () => {
  it('a byte for the mouse times out: 0xFE from the aux port with TIMEOUT set', () => {
    const { status, command, drain, auxIrq } = controller();
    command(0x60, KBD_INT | AUX_INT);
    command(0xd4, 0xf2);
    expect(status() & (OBF | AUXDATA | TIMEOUT)).toBe(OBF | AUXDATA | TIMEOUT);
    expect(auxIrq.level).toBe(true);
    expect(drain()).toEqual([0xfe]);
    expect(status() & TIMEOUT).toBe(0);
  });
});

describe('interrupts: IRQ1 and IRQ12', () => {
  it('are raised only when the command byte enables them', () => {
    const { command, drain, keyboardIrq, auxIrq } = controller();
    command(0x60, 0);
    command(0xd2, 1);
    command(0xd3, 2);
    expect(keyboardIrq.levels).toEqual([]);
    expect(auxIrq.levels).toEqual([]);
    drain();
  });

  it('enabling the interrupt with a byte waiting raises the line', () => {
    const { command, keyboardIrq } = controller();
    command(0x60, 0);
    command(0xd2, 1);
    expect(keyboardIrq.level).toBe(false);
    command(0x60, KBD_INT);
    expect(keyboardIrq.level).toBe(true);
  });

  it('give an edge per byte, so an edge-triggered PIC sees every reply byte', () => {
    const { send, drain, keyboardIrq } = controller();
    send(0xff); // 0xFA then 0xAA
    drain();
    expect(keyboardIrq.levels).toEqual([true, false, true, false]);
    expect(keyboardIrq.risingEdges).toBe(2);
  });

  it("pass Linux's AUX IRQ test: 0xD3 0xA5 raises IRQ12 with AUX_DATA", () => {
    const { status, command, auxIrq } = controller();
    command(0x60, KBD_INT | AUX_INT);
    command(0xd3, 0xa5);
    expect(auxIrq.risingEdges).toBe(1);
    expect(status() & AUXDATA).toBe(AUXDATA);
  });
});

describe('keyboard commands (written to 0x60)', () => {
  it('0xFF reset: ACK, then 0xAA (self test passed)', () => {
    const { send, drain } = controller();
    send(0xff);
    expect(drain()).toEqual([0xfa, 0xaa]);
  });

  it('0xF2 identify: ACK, 0xAB 0x83 (0xAB 0x41 through translation, as QEMU)', () => {
    const { command, send, drain } = controller();
    command(0x60, KBD_INT);
    send(0xf2);
    expect(drain()).toEqual([0xfa, 0xab, 0x83]);
    command(0x60, KBD_INT | XLATE);
    send(0xf2);
    expect(drain()).toEqual([0xfa, 0xab, 0x41]);
  });

  it('0xF4 enable and 0xF5 disable scanning: ACK', () => {
    const { dev, send, drain } = controller();
    send(0xf5);
    expect(drain()).toEqual([0xfa]);
    expect(dev.scanning).toBe(false);
    send(0xf4);
    expect(drain()).toEqual([0xfa]);
    expect(dev.scanning).toBe(true);
  });

  it('0xED set LEDs: ACK for the command and for its argument', () => {
    const { dev, send, drain } = controller();
    send(0xed);
    expect(drain()).toEqual([0xfa]);
    send(0x05);
    expect(drain()).toEqual([0xfa]);
    expect(dev.leds).toBe(0x05);
  });

  it('0xF3 typematic rate/delay: ACK, ACK', () => {
    const { dev, send, drain } = controller();
    send(0xf3, 0x20);
    expect(drain()).toEqual([0xfa, 0xfa]);
    expect(dev.typematic).toBe(0x20);
  });

  it('0xEE echo answers 0xEE, without ACK', () => {
    const { send, drain } = controller();
    send(0xee);
    expect(drain()).toEqual([0xee]);
  });

  it('0xF0 scan code set: argument 0 reports the set (2, or 0x41 translated)', () => {
    const { command, send, drain } = controller();
    command(0x60, KBD_INT);
    send(0xf0, 0x00);
    expect(drain()).toEqual([0xfa, 0xfa, 0x02]);
    send(0xf0, 0x01, 0xf0, 0x00);
    expect(drain()).toEqual([0xfa, 0xfa, 0xfa, 0xfa, 0x01]);
    command(0x60, KBD_INT | XLATE);
    send(0xf0, 0x00);
    expect(drain()).toEqual([0xfa, 0xfa, 0x43]);
  });

  it('any other command is acknowledged', () => {
    const { send, drain } = controller();
    send(0xf6, 0xf8, 0x12);
    expect(drain()).toEqual([0xfa, 0xfa, 0xfa]);
  });

  it('reset restores the defaults: LEDs off, scanning on, set 2', () => {
    const { dev, send, drain } = controller();
    send(0xed, 0x07, 0xf5, 0xff);
    drain();
    expect(dev.leds).toBe(0);
    expect(dev.scanning).toBe(true);
  });
});

describe("Linux's i8042 probe, in order", () => {
  it('flush, self test, CTR, AUX loop, AUX toggle, MUX check, psmouse: all answer at once', () => {
    const { command, send, drain, commandByte, status } = controller();
    expect(drain()).toEqual([]); // i8042_controller_check
    command(0xaa);
    expect(drain()).toEqual([0x55]); // i8042_controller_selftest
    const ctr = commandByte(); // i8042_controller_init
    command(0x60, (ctr | KBD_DIS) & ~KBD_INT);
    command(0xd3, 0x5a); // i8042_check_aux: AUX_LOOP
    expect(status() & AUXDATA).toBe(AUXDATA);
    expect(drain()).toEqual([0x5a]);
    command(0xa7);
    expect(commandByte() & AUX_DIS).toBe(AUX_DIS);
    command(0xa8);
    expect(commandByte() & AUX_DIS).toBe(0);
    const echoes = [0xf0, 0x56, 0xa4].map((b) => { command(0xd3, b); return drain()[0]; });
    expect(echoes).toEqual([0xf0, 0x56, 0xa4]); // i8042_check_mux: the third echo means "no MUX"
    command(0xd4, 0xf2); // psmouse GETID
    expect(status() & TIMEOUT).toBe(TIMEOUT);
    expect(drain()).toEqual([0xfe]);
    command(0x60, ctr & ~KBD_DIS); // enable the keyboard port; atkbd probes
    send(0xf2);
    expect(drain()).toEqual([0xfa, 0xab, 0x41]);
  });
});

describe('reset()', () => {
  it('empties the output buffer, drops the IRQs and restores the command byte', () => {
    const { dev, command, status, keyboardIrq, commandByte } = controller();
    command(0x60, KBD_INT | AUX_INT);
    command(0xd2, 1);
    dev.reset();
    expect(keyboardIrq.level).toBe(false);
    expect(status()).toBe(UNLOCKED | SYS);
    expect(commandByte()).toBe(XLATE | CTR_SYS | KBD_INT);
  });
});
