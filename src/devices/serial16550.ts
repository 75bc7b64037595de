// A 16550A UART (National Semiconductor PC16550D datasheet), offsets from the
// port base (0x3F8 = COM1). Where the datasheet leaves room, QEMU's
// hw/char/serial.c is the reference.
//
// The line is virtual, so some hardware timing collapses:
// - Transmit is instantaneous: a THR write reaches the sink at once, THR and
//   the shift register are empty again before the next access, so LSR always
//   shows THRE|TEMT and the TX FIFO never holds a byte (FCR bit 2 is a no-op).
// - Receive: the host pushes bytes with receive(); a full RX FIFO refuses
//   them instead of overrunning, so no host input is ever lost (the caller
//   keeps the rest and retries, e.g. from onReceiveSpace). Overrun (OE) only
//   happens in loopback, where the guest itself writes faster than it reads.
// - Character timeout (IIR 0x0C) is raised at once when the RX FIFO holds
//   data below the trigger level, instead of after four character times.
// - Parity and framing errors cannot happen; a break can (receiveBreak()).
//
// The IRQ output follows the PC wiring: the UART's INTR pin reaches the
// interrupt controller only while MCR.OUT2 is set.
import type { BusDevice } from '../bus/index.ts';
import type { CharSink } from './char-sink.ts';
import type { InterruptLine } from './interrupt-line.ts';

export const COM_PORTS = [
  { name: 'COM1', base: 0x3f8, irq: 4 },
  { name: 'COM2', base: 0x2f8, irq: 3 },
  { name: 'COM3', base: 0x3e8, irq: 4 },
  { name: 'COM4', base: 0x2e8, irq: 3 },
] as const;

export const UART_PORT_COUNT = 8;

/** Register offsets. With LCR.DLAB set, offsets 0 and 1 reach the divisor latch. */
export const Reg = { RBR_THR_DLL: 0, IER_DLM: 1, IIR_FCR: 2, LCR: 3, MCR: 4, LSR: 5, MSR: 6, SCR: 7 } as const;

const FIFO_SIZE = 16; // a power of two: ring indices wrap with a mask

// IER: which sources may interrupt.
const IER_ERBFI = 0x01; // received data available (and character timeout)
const IER_ETBEI = 0x02; // transmitter holding register empty
const IER_ELSI = 0x04; // receiver line status
const IER_EDSSI = 0x08; // modem status

// IIR: interrupt identification, highest priority first.
const IIR_RECEIVER_LINE_STATUS = 0x06;
const IIR_RECEIVED_DATA = 0x04;
const IIR_CHARACTER_TIMEOUT = 0x0c;
const IIR_THR_EMPTY = 0x02;
const IIR_MODEM_STATUS = 0x00;
const IIR_NONE = 0x01;
const IIR_FIFOS_ENABLED = 0xc0;

// FCR
const FCR_ENABLE = 0x01;
const FCR_CLEAR_RX = 0x02;
const FCR_KEPT = 0xc9; // enable, DMA mode, trigger level: what stays programmed
const RX_TRIGGER_LEVELS = [1, 4, 8, 14] as const; // by FCR bits 7:6

// LCR
const LCR_DLAB = 0x80;

// MCR
const MCR_OUT2 = 0x08;
const MCR_LOOP = 0x10;

// LSR
const LSR_DR = 0x01;
const LSR_OE = 0x02;
const LSR_BI = 0x10;
const LSR_THRE = 0x20;
const LSR_TEMT = 0x40;
const LSR_FIFO_ERROR = 0x80;
const LSR_CLEARED_ON_READ = 0x1e; // OE, PE, FE, BI: also the line-status interrupt sources

// MSR: inputs in bits 7:4, their change flags in bits 3:0.
const MSR_CTS = 0x10;
const MSR_DSR = 0x20;
const MSR_RI = 0x40;
const MSR_DCD = 0x80;
const MSR_TERI = 0x04; // trailing edge of RI: set when RI goes from on to off
/** The host side of the line: a connected, ready terminal (DCD, DSR, CTS on). */
const HOST_MODEM_INPUTS = MSR_DCD | MSR_DSR | MSR_CTS;

/** In loopback, MCR's outputs feed MSR's inputs: DTR→DSR, RTS→CTS, OUT1→RI, OUT2→DCD. */
function loopbackModemStatus(mcr: number): number {
  return ((mcr & 0x01) << 5) | ((mcr & 0x02) << 3) | ((mcr & 0x0c) << 4);
}

export class Serial16550 implements BusDevice {
  readonly byteWide = true;
  private ier = 0;
  private lcr = 0;
  private mcr = MCR_OUT2; // as QEMU: guests that never touch MCR still get interrupts
  private scr = 0;
  private divisor = 12; // 9600 baud; the datasheet leaves the latch unset at reset
  private fcr = 0;
  private rxTrigger = 1;

  // RX FIFO (capacity 1 = the RBR when FIFOs are off). Each byte carries the
  // LSR error bits (BI) it arrived with.
  private readonly rxData = new Uint8Array(FIFO_SIZE);
  private readonly rxErrors = new Uint8Array(FIFO_SIZE);
  private rxHead = 0;
  private rxCount = 0;
  private rxErrorCount = 0; // bytes in the FIFO that carry an error
  private lastRead = 0; // RBR keeps the last byte when the FIFO is empty

  /** OE, PE, FE, BI as LSR will show them; cleared by reading LSR. */
  private lineErrors = 0;
  /** LSR bit 7: an error entered the FIFO; cleared by an LSR read once none is left. */
  private fifoError = false;
  private msrDeltas = 0;
  /** THRE interrupt pending; cleared by writing THR or reading it from IIR. */
  private thrEmptyPending = false;
  private irqLevel = false;
  private receiveRefused = false;

  /**
   * Called when the guest frees RX space after receive() refused bytes: the
   * moment to offer the rest again.
   */
  onReceiveSpace: (() => void) | undefined;

  constructor(readonly name: string, private readonly output: CharSink, private readonly irq?: InterruptLine) {}

  /** Power-on state. SCR and the divisor latch keep their values, as on the chip. */
  reset(): void {
    this.ier = 0;
    this.lcr = 0;
    this.mcr = MCR_OUT2;
    this.fcr = 0;
    this.rxTrigger = 1;
    this.clearRxFifo();
    this.lineErrors = 0;
    this.msrDeltas = 0;
    this.thrEmptyPending = false;
    this.updateInterrupt();
  }

  // --- host side ---------------------------------------------------------

  /** Bytes receive() would accept now: 0 in loopback, where the serial input is disconnected. */
  canReceive(): number {
    if (this.mcr & MCR_LOOP) return 0;
    return this.rxCapacity() - this.rxCount;
  }

  /**
   * Offers host input to the receiver. Returns how many leading bytes were
   * taken; the rest were refused (FIFO full or loopback) and should be offered
   * again later. Refusal never sets OE: host input is flow-controlled, not lost.
   */
  receive(bytes: Uint8Array | number[]): number {
    const accepted = Math.min(bytes.length, this.canReceive());
    for (let i = 0; i < accepted; i++) this.pushRx(bytes[i]! & 0xff, 0);
    if (accepted < bytes.length) this.receiveRefused = true;
    if (accepted > 0) this.updateInterrupt();
    return accepted;
  }

  /**
   * A break on the line (what a host console's "send break" means): a NUL
   * byte with LSR.BI, which Linux turns into a SysRq prefix. False if refused.
   */
  receiveBreak(): boolean {
    if (this.canReceive() === 0) {
      this.receiveRefused = true;
      return false;
    }
    this.pushRx(0, LSR_BI);
    this.updateInterrupt();
    return true;
  }

  // --- guest side --------------------------------------------------------

  read(offset: number, _size: number): number {
    switch (offset) {
      case Reg.RBR_THR_DLL: return this.lcr & LCR_DLAB ? this.divisor & 0xff : this.readRbr();
      case Reg.IER_DLM: return this.lcr & LCR_DLAB ? this.divisor >> 8 : this.ier;
      case Reg.IIR_FCR: return this.readIir();
      case Reg.LCR: return this.lcr;
      case Reg.MCR: return this.mcr;
      case Reg.LSR: return this.readLsr();
      case Reg.MSR: return this.readMsr();
      case Reg.SCR: return this.scr;
      default: return 0xff;
    }
  }

  write(offset: number, _size: number, value: number): void {
    const byte = value & 0xff;
    switch (offset) {
      case Reg.RBR_THR_DLL:
        if (this.lcr & LCR_DLAB) this.divisor = (this.divisor & 0xff00) | byte;
        else this.writeThr(byte);
        break;
      case Reg.IER_DLM:
        if (this.lcr & LCR_DLAB) this.divisor = (this.divisor & 0x00ff) | (byte << 8);
        else this.writeIer(byte);
        break;
      case Reg.IIR_FCR: this.writeFcr(byte); break;
      case Reg.LCR: this.lcr = byte; break;
      case Reg.MCR: this.writeMcr(byte); break;
      case Reg.SCR: this.scr = byte; break;
      default: break; // LSR and MSR are read-only
    }
  }

  private writeThr(byte: number): void {
    if (this.mcr & MCR_LOOP) this.loopBack(byte);
    else this.output.writeByte(byte);
    // The write clears the THRE interrupt and the instant transmit sets it again.
    this.thrEmptyPending = (this.ier & IER_ETBEI) !== 0;
    this.updateInterrupt();
  }

  private writeIer(byte: number): void {
    const enabled = byte & ~this.ier;
    this.ier = byte & 0x0f;
    // Enabling ETBEI while THR is empty raises THRE at once (not in the
    // datasheet; Linux's 8250 driver and Windows rely on it, QEMU does it).
    if (enabled & IER_ETBEI) this.thrEmptyPending = true;
    this.updateInterrupt();
  }

  private writeFcr(byte: number): void {
    const enable = byte & FCR_ENABLE;
    // Entering or leaving FIFO mode empties both FIFOs.
    if (enable !== (this.fcr & FCR_ENABLE)) this.clearRxFifo();
    if (enable) {
      if (byte & FCR_CLEAR_RX) this.clearRxFifo(); // bit 2 (clear TX) has nothing to clear
      this.fcr = byte & FCR_KEPT;
      this.rxTrigger = RX_TRIGGER_LEVELS[byte >> 6]!;
    } else {
      // "FCR0 must be 1 when other FCR bits are written to or they will not be programmed."
      this.fcr = 0;
      this.rxTrigger = 1;
    }
    this.updateInterrupt();
    this.offerSpace();
  }

  private writeMcr(byte: number): void {
    const before = this.modemInputs();
    const wasLoop = this.mcr & MCR_LOOP;
    this.mcr = byte & 0x1f;
    const after = this.modemInputs();
    const changed = before ^ after;
    this.msrDeltas |= ((changed & (MSR_DCD | MSR_DSR | MSR_CTS)) >> 4) | (before & ~after & MSR_RI ? MSR_TERI : 0);
    this.updateInterrupt();
    if (wasLoop && !(this.mcr & MCR_LOOP)) this.offerSpace(); // the serial input is connected again
  }

  private readRbr(): number {
    if (this.rxCount === 0) return this.lastRead;
    const i = this.rxHead;
    const byte = this.rxData[i]!;
    if (this.rxErrors[i]) this.rxErrorCount--;
    this.rxHead = (i + 1) & (FIFO_SIZE - 1);
    this.rxCount--;
    // The next byte's errors show in LSR once it reaches the top of the FIFO.
    if (this.rxCount > 0) this.lineErrors |= this.rxErrors[this.rxHead]!;
    this.lastRead = byte;
    this.updateInterrupt();
    this.offerSpace();
    return byte;
  }

  private readIir(): number {
    const id = this.pendingInterrupt();
    // Reading IIR acknowledges THRE, but only when THRE is what it reports.
    if (id === IIR_THR_EMPTY) {
      this.thrEmptyPending = false;
      this.updateInterrupt();
    }
    return id | (this.fcr & FCR_ENABLE ? IIR_FIFOS_ENABLED : 0);
  }

  private readLsr(): number {
    const lsr = (this.rxCount > 0 ? LSR_DR : 0) | this.lineErrors | LSR_THRE | LSR_TEMT | (this.fifoError ? LSR_FIFO_ERROR : 0);
    this.fifoError = (this.fcr & FCR_ENABLE) !== 0 && this.rxErrorCount > 0;
    if (this.lineErrors) {
      this.lineErrors = 0;
      this.updateInterrupt();
    }
    return lsr;
  }

  private readMsr(): number {
    const msr = this.modemInputs() | this.msrDeltas;
    if (this.msrDeltas) {
      this.msrDeltas = 0;
      this.updateInterrupt();
    }
    return msr;
  }

  /** A THR write in loopback: the transmitter shifts straight into the receiver. */
  private loopBack(byte: number): void {
    if (this.rxCount < this.rxCapacity()) {
      this.pushRx(byte, 0);
      return;
    }
    this.lineErrors |= LSR_OE;
    // FIFO mode keeps the FIFO and loses the new byte; the 16450 mode's RBR is overwritten.
    if (!(this.fcr & FCR_ENABLE)) {
      if (this.rxErrors[this.rxHead]) this.rxErrorCount--;
      this.rxData[this.rxHead] = byte;
      this.rxErrors[this.rxHead] = 0;
    }
  }

  private pushRx(byte: number, errors: number): void {
    const i = (this.rxHead + this.rxCount) & (FIFO_SIZE - 1);
    this.rxData[i] = byte;
    this.rxErrors[i] = errors;
    if (this.rxCount === 0) this.lineErrors |= errors;
    this.rxCount++;
    if (errors) {
      this.rxErrorCount++;
      if (this.fcr & FCR_ENABLE) this.fifoError = true;
    }
  }

  private clearRxFifo(): void {
    this.rxHead = 0;
    this.rxCount = 0;
    this.rxErrorCount = 0;
    this.fifoError = false;
    this.lineErrors &= LSR_OE; // the per-byte errors left with their bytes
  }

  private rxCapacity(): number {
    return this.fcr & FCR_ENABLE ? FIFO_SIZE : 1;
  }

  private modemInputs(): number {
    return this.mcr & MCR_LOOP ? loopbackModemStatus(this.mcr) : HOST_MODEM_INPUTS;
  }

  /** The IIR identification: the highest-priority enabled source, or IIR_NONE. */
  private pendingInterrupt(): number {
    const ier = this.ier;
    if (ier & IER_ELSI && this.lineErrors & LSR_CLEARED_ON_READ) return IIR_RECEIVER_LINE_STATUS;
    if (ier & IER_ERBFI && this.rxCount > 0) {
      return this.fcr & FCR_ENABLE && this.rxCount < this.rxTrigger ? IIR_CHARACTER_TIMEOUT : IIR_RECEIVED_DATA;
    }
    if (ier & IER_ETBEI && this.thrEmptyPending) return IIR_THR_EMPTY;
    if (ier & IER_EDSSI && this.msrDeltas) return IIR_MODEM_STATUS;
    return IIR_NONE;
  }

  private updateInterrupt(): void {
    const level = this.mcr & MCR_OUT2 ? this.pendingInterrupt() !== IIR_NONE : false;
    if (level === this.irqLevel) return;
    this.irqLevel = level;
    this.irq?.setLevel(level);
  }

  private offerSpace(): void {
    if (!this.receiveRefused || this.canReceive() === 0) return;
    this.receiveRefused = false;
    this.onReceiveSpace?.();
  }
}
