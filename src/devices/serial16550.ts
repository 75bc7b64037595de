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
//
// All of the UART's state is in one SharedArrayBuffer (SERIAL16550_STATE), so
// that one object per vCPU thread over the same buffer is one UART, and so
// that it can be saved and restored. The sink, the interrupt line and
// onReceiveSpace are wiring, outside it.
import type { BusDevice } from '../bus/index.ts';
import type { CharSink } from './char-sink.ts';
import { DeviceStateLayout, type SavedDeviceState, type StatefulDevice } from './device-state.ts';
import type { InterruptLine } from './interrupt-line.ts';

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
const RX_TRIGGER_LEVELS = [1, 4, 8, 14] as const; // by FCR bits 7:6 (0 when FIFOs are off: 1)

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

/**
 * Where each of the UART's values sits in SERIAL16550_STATE.regs: the
 * datasheet's registers first, then what the chip keeps behind them.
 */
const R = {
  IER: 0, // bits 3:0
  LCR: 1,
  MCR: 2, // bits 4:0
  SCR: 3,
  /** FCR as programmed: enable, DMA mode, trigger level (FCR_KEPT); 0 with FIFOs off. */
  FCR: 4,
  DLL: 5, // the divisor latch, low
  DLM: 6, // and high byte
  /** OE, PE, FE, BI as LSR will show them; cleared by reading LSR. */
  LINE_ERRORS: 7,
  /** LSR bit 7: an error entered the FIFO; cleared by an LSR read once none is left. */
  FIFO_ERROR: 8,
  /** MSR bits 3:0, the modem inputs' change flags; cleared by reading MSR. */
  MSR_DELTAS: 9,
  /** THRE interrupt pending; cleared by writing THR or reading it from IIR. */
  THR_EMPTY_PENDING: 10,
  /** RX FIFO ring: index of the oldest byte, bytes held, bytes among them with an error. */
  RX_HEAD: 11,
  RX_COUNT: 12,
  RX_ERROR_COUNT: 13,
  /** What RBR reads once the FIFO is empty: the last byte read. */
  LAST_READ: 14,
  /** The level last driven on the interrupt line (1 = high). */
  IRQ_LEVEL: 15,
  /** receive() refused host bytes: onReceiveSpace is owed once the guest makes room. */
  RECEIVE_REFUSED: 16,
} as const;

export const SERIAL16550_STATE = new DeviceStateLayout('serial16550', 1, {
  /** The registers and internal values, indexed by R. */
  regs: ['u8', 17],
  /** The RX FIFO (capacity 1, the RBR, when FIFOs are off), a ring of FIFO_SIZE bytes... */
  rxData: ['u8', FIFO_SIZE],
  /** ...and the LSR error bits (BI) each byte arrived with. */
  rxErrors: ['u8', FIFO_SIZE],
});

export class Serial16550 implements BusDevice, StatefulDevice {
  readonly byteWide = true;
  /** The shared state, laid out by SERIAL16550_STATE. */
  readonly state: SharedArrayBuffer;
  private readonly regs: Uint8Array;
  private readonly rxData: Uint8Array;
  private readonly rxErrors: Uint8Array;

  /**
   * Called when the guest frees RX space after receive() refused bytes: the
   * moment to offer the rest again.
   */
  onReceiveSpace: (() => void) | undefined;

  /** The power-on state of one UART, to share between the threads that serve it. */
  static createState(): SharedArrayBuffer {
    const state = SERIAL16550_STATE.create();
    const regs = SERIAL16550_STATE.views(state).regs;
    regs[R.MCR] = MCR_OUT2; // as QEMU: guests that never touch MCR still get interrupts
    regs[R.DLL] = 12; // 9600 baud; the datasheet leaves the latch unset at reset
    return state;
  }

  /** Without `state`, the UART starts at power-on; with it, it serves that buffer as it is. */
  constructor(
    readonly name: string,
    private readonly output: CharSink,
    private readonly irq?: InterruptLine,
    state: SharedArrayBuffer = Serial16550.createState(),
  ) {
    this.state = state;
    const views = SERIAL16550_STATE.views(state);
    this.regs = views.regs;
    this.rxData = views.rxData;
    this.rxErrors = views.rxErrors;
  }

  saveState(): SavedDeviceState {
    return SERIAL16550_STATE.save(this.state);
  }

  /** Restores every register and the RX FIFO, then drives the interrupt line to the restored level. */
  restoreState(saved: SavedDeviceState): void {
    SERIAL16550_STATE.restore(saved, this.state);
    this.irq?.setLevel(this.regs[R.IRQ_LEVEL] !== 0);
  }

  /** Power-on state. SCR and the divisor latch keep their values, as on the chip. */
  reset(): void {
    const regs = this.regs;
    regs[R.IER] = 0;
    regs[R.LCR] = 0;
    regs[R.MCR] = MCR_OUT2;
    regs[R.FCR] = 0;
    this.clearRxFifo();
    regs[R.LINE_ERRORS] = 0;
    regs[R.MSR_DELTAS] = 0;
    regs[R.THR_EMPTY_PENDING] = 0;
    this.updateInterrupt();
  }

  // --- host side ---------------------------------------------------------

  /** Bytes receive() would accept now: 0 in loopback, where the serial input is disconnected. */
  canReceive(): number {
    if (this.regs[R.MCR]! & MCR_LOOP) return 0;
    return this.rxCapacity() - this.regs[R.RX_COUNT]!;
  }

  /**
   * Offers host input to the receiver. Returns how many leading bytes were
   * taken; the rest were refused (FIFO full or loopback) and should be offered
   * again later. Refusal never sets OE: host input is flow-controlled, not lost.
   */
  receive(bytes: Uint8Array | number[]): number {
    const accepted = Math.min(bytes.length, this.canReceive());
    for (let i = 0; i < accepted; i++) this.pushRx(bytes[i]! & 0xff, 0);
    if (accepted < bytes.length) this.regs[R.RECEIVE_REFUSED] = 1;
    if (accepted > 0) this.updateInterrupt();
    return accepted;
  }

  /**
   * A break on the line (what a host console's "send break" means): a NUL
   * byte with LSR.BI, which Linux turns into a SysRq prefix. False if refused.
   */
  receiveBreak(): boolean {
    if (this.canReceive() === 0) {
      this.regs[R.RECEIVE_REFUSED] = 1;
      return false;
    }
    this.pushRx(0, LSR_BI);
    this.updateInterrupt();
    return true;
  }

  // --- guest side --------------------------------------------------------

  read(offset: number, _size: number): number {
    const regs = this.regs;
    const dlab = regs[R.LCR]! & LCR_DLAB;
    switch (offset) {
      case Reg.RBR_THR_DLL: return dlab ? regs[R.DLL]! : this.readRbr();
      case Reg.IER_DLM: return dlab ? regs[R.DLM]! : regs[R.IER]!;
      case Reg.IIR_FCR: return this.readIir();
      case Reg.LCR: return regs[R.LCR]!;
      case Reg.MCR: return regs[R.MCR]!;
      case Reg.LSR: return this.readLsr();
      case Reg.MSR: return this.readMsr();
      case Reg.SCR: return regs[R.SCR]!;
      default: return 0xff;
    }
  }

  write(offset: number, _size: number, value: number): void {
    const regs = this.regs;
    const byte = value & 0xff;
    const dlab = regs[R.LCR]! & LCR_DLAB;
    switch (offset) {
      case Reg.RBR_THR_DLL:
        if (dlab) regs[R.DLL] = byte;
        else this.writeThr(byte);
        break;
      case Reg.IER_DLM:
        if (dlab) regs[R.DLM] = byte;
        else this.writeIer(byte);
        break;
      case Reg.IIR_FCR: this.writeFcr(byte); break;
      case Reg.LCR: regs[R.LCR] = byte; break;
      case Reg.MCR: this.writeMcr(byte); break;
      case Reg.SCR: regs[R.SCR] = byte; break;
      default: break; // LSR and MSR are read-only
    }
  }

  private writeThr(byte: number): void {
    if (this.regs[R.MCR]! & MCR_LOOP) this.loopBack(byte);
    else this.output.writeByte(byte);
    // The write clears the THRE interrupt and the instant transmit sets it again.
    this.regs[R.THR_EMPTY_PENDING] = this.regs[R.IER]! & IER_ETBEI ? 1 : 0;
    this.updateInterrupt();
  }

  private writeIer(byte: number): void {
    const enabled = byte & ~this.regs[R.IER]!;
    this.regs[R.IER] = byte & 0x0f;
    // Enabling ETBEI while THR is empty raises THRE at once (not in the
    // datasheet; Linux's 8250 driver and Windows rely on it, QEMU does it).
    if (enabled & IER_ETBEI) this.regs[R.THR_EMPTY_PENDING] = 1;
    this.updateInterrupt();
  }

  private writeFcr(byte: number): void {
    const enable = byte & FCR_ENABLE;
    // Entering or leaving FIFO mode empties both FIFOs.
    if (enable !== (this.regs[R.FCR]! & FCR_ENABLE)) this.clearRxFifo();
    if (enable) {
      if (byte & FCR_CLEAR_RX) this.clearRxFifo(); // bit 2 (clear TX) has nothing to clear
      this.regs[R.FCR] = byte & FCR_KEPT;
    } else {
      // "FCR0 must be 1 when other FCR bits are written to or they will not be programmed."
      this.regs[R.FCR] = 0;
    }
    this.updateInterrupt();
    this.offerSpace();
  }

  private writeMcr(byte: number): void {
    const before = this.modemInputs();
    const wasLoop = this.regs[R.MCR]! & MCR_LOOP;
    this.regs[R.MCR] = byte & 0x1f;
    const after = this.modemInputs();
    const changed = before ^ after;
    this.regs[R.MSR_DELTAS]! |= ((changed & (MSR_DCD | MSR_DSR | MSR_CTS)) >> 4) | (before & ~after & MSR_RI ? MSR_TERI : 0);
    this.updateInterrupt();
    if (wasLoop && !(byte & MCR_LOOP)) this.offerSpace(); // the serial input is connected again
  }

  private readRbr(): number {
    const regs = this.regs;
    if (regs[R.RX_COUNT] === 0) return regs[R.LAST_READ]!;
    const i = regs[R.RX_HEAD]!;
    const byte = this.rxData[i]!;
    if (this.rxErrors[i]) regs[R.RX_ERROR_COUNT]!--;
    const head = (i + 1) & (FIFO_SIZE - 1);
    regs[R.RX_HEAD] = head;
    const count = --regs[R.RX_COUNT]!;
    // The next byte's errors show in LSR once it reaches the top of the FIFO.
    if (count > 0) regs[R.LINE_ERRORS]! |= this.rxErrors[head]!;
    regs[R.LAST_READ] = byte;
    this.updateInterrupt();
    this.offerSpace();
    return byte;
  }

  private readIir(): number {
    const id = this.pendingInterrupt();
    // Reading IIR acknowledges THRE, but only when THRE is what it reports.
    if (id === IIR_THR_EMPTY) {
      this.regs[R.THR_EMPTY_PENDING] = 0;
      this.updateInterrupt();
    }
    return id | (this.regs[R.FCR]! & FCR_ENABLE ? IIR_FIFOS_ENABLED : 0);
  }

  private readLsr(): number {
    const regs = this.regs;
    const lineErrors = regs[R.LINE_ERRORS]!;
    const lsr = (regs[R.RX_COUNT]! > 0 ? LSR_DR : 0) | lineErrors | LSR_THRE | LSR_TEMT | (regs[R.FIFO_ERROR] ? LSR_FIFO_ERROR : 0);
    regs[R.FIFO_ERROR] = regs[R.FCR]! & FCR_ENABLE && regs[R.RX_ERROR_COUNT]! > 0 ? 1 : 0;
    if (lineErrors) {
      regs[R.LINE_ERRORS] = 0;
      this.updateInterrupt();
    }
    return lsr;
  }

  private readMsr(): number {
    const deltas = this.regs[R.MSR_DELTAS]!;
    const msr = this.modemInputs() | deltas;
    if (deltas) {
      this.regs[R.MSR_DELTAS] = 0;
      this.updateInterrupt();
    }
    return msr;
  }

  /** A THR write in loopback: the transmitter shifts straight into the receiver. */
  private loopBack(byte: number): void {
    const regs = this.regs;
    if (regs[R.RX_COUNT]! < this.rxCapacity()) {
      this.pushRx(byte, 0);
      return;
    }
    regs[R.LINE_ERRORS]! |= LSR_OE;
    // FIFO mode keeps the FIFO and loses the new byte; the 16450 mode's RBR is overwritten.
    if (!(regs[R.FCR]! & FCR_ENABLE)) {
      const head = regs[R.RX_HEAD]!;
      if (this.rxErrors[head]) regs[R.RX_ERROR_COUNT]!--;
      this.rxData[head] = byte;
      this.rxErrors[head] = 0;
    }
  }

  private pushRx(byte: number, errors: number): void {
    const regs = this.regs;
    const count = regs[R.RX_COUNT]!;
    const i = (regs[R.RX_HEAD]! + count) & (FIFO_SIZE - 1);
    this.rxData[i] = byte;
    this.rxErrors[i] = errors;
    if (count === 0) regs[R.LINE_ERRORS]! |= errors;
    regs[R.RX_COUNT] = count + 1;
    if (errors) {
      regs[R.RX_ERROR_COUNT]!++;
      if (regs[R.FCR]! & FCR_ENABLE) regs[R.FIFO_ERROR] = 1;
    }
  }

  private clearRxFifo(): void {
    const regs = this.regs;
    regs[R.RX_HEAD] = 0;
    regs[R.RX_COUNT] = 0;
    regs[R.RX_ERROR_COUNT] = 0;
    regs[R.FIFO_ERROR] = 0;
    regs[R.LINE_ERRORS]! &= LSR_OE; // the per-byte errors left with their bytes
  }

  private rxCapacity(): number {
    return this.regs[R.FCR]! & FCR_ENABLE ? FIFO_SIZE : 1;
  }

  private modemInputs(): number {
    const mcr = this.regs[R.MCR]!;
    return mcr & MCR_LOOP ? loopbackModemStatus(mcr) : HOST_MODEM_INPUTS;
  }

  /** The IIR identification: the highest-priority enabled source, or IIR_NONE. */
  private pendingInterrupt(): number {
    const regs = this.regs;
    const ier = regs[R.IER]!;
    if (ier & IER_ELSI && regs[R.LINE_ERRORS]! & LSR_CLEARED_ON_READ) return IIR_RECEIVER_LINE_STATUS;
    const count = regs[R.RX_COUNT]!;
    if (ier & IER_ERBFI && count > 0) {
      const fcr = regs[R.FCR]!;
      // With FIFOs off FCR is 0 and the trigger level is 1: never a timeout.
      return fcr & FCR_ENABLE && count < RX_TRIGGER_LEVELS[fcr >> 6]! ? IIR_CHARACTER_TIMEOUT : IIR_RECEIVED_DATA;
    }
    if (ier & IER_ETBEI && regs[R.THR_EMPTY_PENDING]) return IIR_THR_EMPTY;
    if (ier & IER_EDSSI && regs[R.MSR_DELTAS]) return IIR_MODEM_STATUS;
    return IIR_NONE;
  }

  private updateInterrupt(): void {
    const level = this.regs[R.MCR]! & MCR_OUT2 && this.pendingInterrupt() !== IIR_NONE ? 1 : 0;
    if (level === this.regs[R.IRQ_LEVEL]) return;
    this.regs[R.IRQ_LEVEL] = level;
    this.irq?.setLevel(level === 1);
  }

  private offerSpace(): void {
    if (!this.regs[R.RECEIVE_REFUSED] || this.canReceive() === 0) return;
    this.regs[R.RECEIVE_REFUSED] = 0;
    this.onReceiveSpace?.();
  }
}
