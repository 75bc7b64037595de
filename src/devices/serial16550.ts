// A 16550A UART, transmit side: what a guest needs to print on COM1 and what
// Linux's 8250 probe and earlyprintk read back. Registers per the National
// Semiconductor PC16550D datasheet; offsets from the port base (0x3F8 = COM1).
//
// Transmit is instantaneous: THR and the shift register are always empty, so
// LSR always shows THRE|TEMT and a guest polling it never waits.
import type { BusDevice } from '../bus/index.ts';
import type { CharSink } from './char-sink.ts';

export const COM_PORTS = [
  { name: 'COM1', base: 0x3f8, irq: 4 },
  { name: 'COM2', base: 0x2f8, irq: 3 },
  { name: 'COM3', base: 0x3e8, irq: 4 },
  { name: 'COM4', base: 0x2e8, irq: 3 },
] as const;

export const UART_PORT_COUNT = 8;

/** Register offsets. With LCR.DLAB set, offsets 0 and 1 reach the divisor latch. */
export const Reg = { RBR_THR_DLL: 0, IER_DLM: 1, IIR_FCR: 2, LCR: 3, MCR: 4, LSR: 5, MSR: 6, SCR: 7 } as const;

const LCR_DLAB = 0x80;
const LSR_THRE = 0x20; // transmit holding register empty
const LSR_TEMT = 0x40; // transmitter empty
const IIR_NO_INTERRUPT = 0x01;
const MCR_LOOP = 0x10;
const MSR_IDLE = 0xb0; // DCD, DSR and CTS asserted: a connected, ready terminal

/** In loopback, MCR's outputs feed MSR's inputs: DTR→DSR, RTS→CTS, OUT1→RI, OUT2→DCD. */
function loopbackModemStatus(mcr: number): number {
  return ((mcr & 0x01) << 5) | ((mcr & 0x02) << 3) | ((mcr & 0x0c) << 4);
}

export class Serial16550 implements BusDevice {
  private ier = 0;
  private lcr = 0x03; // 8N1
  private mcr = 0x08; // OUT2
  private scr = 0;
  private divisor = 12; // 9600 baud
  private fcr = 0;

  constructor(readonly name: string, private readonly output: CharSink) {}

  read(offset: number, _size: number): number {
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case Reg.RBR_THR_DLL: return dlab ? this.divisor & 0xff : 0; // no receiver yet: RBR reads 0
      case Reg.IER_DLM: return dlab ? this.divisor >> 8 : this.ier;
      case Reg.IIR_FCR: return IIR_NO_INTERRUPT | (this.fcr & 0x01 ? 0xc0 : 0);
      case Reg.LCR: return this.lcr;
      case Reg.MCR: return this.mcr;
      case Reg.LSR: return LSR_THRE | LSR_TEMT;
      case Reg.MSR: return this.mcr & MCR_LOOP ? loopbackModemStatus(this.mcr) : MSR_IDLE;
      case Reg.SCR: return this.scr;
      default: return 0xff;
    }
  }

  write(offset: number, _size: number, value: number): void {
    const byte = value & 0xff;
    const dlab = (this.lcr & LCR_DLAB) !== 0;
    switch (offset) {
      case Reg.RBR_THR_DLL:
        if (dlab) this.divisor = (this.divisor & 0xff00) | byte;
        else if (!(this.mcr & MCR_LOOP)) this.output.writeByte(byte);
        break;
      case Reg.IER_DLM:
        if (dlab) this.divisor = (this.divisor & 0x00ff) | (byte << 8);
        else this.ier = byte & 0x0f;
        break;
      case Reg.IIR_FCR: this.fcr = byte; break;
      case Reg.LCR: this.lcr = byte; break;
      case Reg.MCR: this.mcr = byte & 0x1f; break;
      case Reg.SCR: this.scr = byte; break;
      default: break; // LSR and MSR are read-only
    }
  }
}
