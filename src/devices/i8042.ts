// The i8042 keyboard controller (Intel 8042 / IBM PC AT), with a PS/2
// keyboard behind it and no mouse. Enough for Linux's i8042 and atkbd probes
// to finish at once, and for a guest to reboot with command 0xFE. Where the
// references leave room, QEMU's hw/input/pckbd.c and ps2.c and kvmtool's
// hw/i8042.c decide.
//
// Registration: one range of I8042_PORT_COUNT ports: offset 0 = data port
// (0x60 on a PC), offset 4 = status/command port (0x64). That range also
// covers 0x61 (system control port B, the PC speaker and PIT gate), which
// another device may need; a machine that wants 0x61 elsewhere (tsvmm's does)
// registers `controller` at 0x60 length 1 and `controller.commandPort` at
// 0x64 length 1 instead.
//
// Commands complete instantly, so the input buffer is never full (IBF = 0).
// The 8042's one-byte output buffer is the head of a small queue: a keyboard
// holds its next reply byte until the previous one has been read.
//
// All of the controller's and the keyboard's state is in one
// SharedArrayBuffer (I8042_STATE): one object per vCPU thread over the same
// buffer is one controller, and the state can be saved and restored. The
// reset callback and the interrupt lines are wiring, outside it.
import type { BusDevice } from '../bus/index.ts';
import { DeviceStateLayout, type SavedDeviceState, type StatefulDevice } from './device-state.ts';
import type { InterruptLine } from './interrupt-line.ts';

export const I8042_PORT_COUNT = 5;

/** Offsets within the controller's range. */
export const I8042Port = { DATA: 0, STATUS_COMMAND: 4 } as const;

/** Status register (read from 0x64). */
export const Status = {
  OUTPUT_FULL: 0x01, // OBF: a byte waits at 0x60
  INPUT_FULL: 0x02, // IBF: never set, commands complete at once
  SYSTEM: 0x04, // SYS: self-test passed (mirrors command byte bit 2)
  COMMAND: 0x08, // A2: the last write went to 0x64, not 0x60
  UNLOCKED: 0x10, // keyboard not inhibited by a key lock
  AUX_DATA: 0x20, // the byte at 0x60 came from the aux (mouse) port
  TIMEOUT: 0x40, // the device did not answer
  PARITY: 0x80,
} as const;

/** Command byte ("controller configuration byte", read by 0x20, written by 0x60). */
export const CommandByte = {
  KEYBOARD_INTERRUPT: 0x01,
  AUX_INTERRUPT: 0x02,
  SYSTEM: 0x04,
  KEYBOARD_DISABLED: 0x10,
  AUX_DISABLED: 0x20,
  TRANSLATE: 0x40, // scan code set 2 → set 1 translation
} as const;

/** Output port (0xD0 reads it, 0xD1 writes it). Bit 0 low holds the CPU in reset. */
export const OutputPort = { RESET_HIGH: 0x01, A20: 0x02, KEYBOARD_OBF: 0x10, AUX_OBF: 0x20 } as const;

// Keyboard replies.
const ACK = 0xfa;
const RESEND = 0xfe;
const BAT_OK = 0xaa;
const KEYBOARD_ID = 0xab;
const KEYBOARD_ID_2 = 0x83;
const KEYBOARD_ID_2_TRANSLATED = 0x41;
/** What the translation turns scan code set numbers 1..3 into (QEMU's table). */
const TRANSLATED_SCAN_SET = [0, 0x43, 0x41, 0x3f] as const;

/**
 * Power-on command byte, what a PC BIOS leaves behind: keyboard interrupt,
 * system flag and translation on, both ports enabled.
 */
const DEFAULT_COMMAND_BYTE = CommandByte.KEYBOARD_INTERRUPT | CommandByte.SYSTEM | CommandByte.TRANSLATE;
/** Reset line high (CPU running), A20 enabled, clock and data lines idle high. */
const DEFAULT_OUTPUT_PORT = 0xcf;

const QUEUE_SIZE = 16; // a power of two; a reply is at most 3 bytes
const KEYBOARD_DEFAULT_TYPEMATIC = 0x2b; // 10.9 characters/s after 500 ms
const KEYBOARD_DEFAULT_SCAN_SET = 2;
/** A queued byte carries, in bits 15:8, the status bits it shows with. */
const SOURCE_KEYBOARD = 0;
const SOURCE_AUX = Status.AUX_DATA << 8;
const SOURCE_AUX_TIMEOUT = (Status.AUX_DATA | Status.TIMEOUT) << 8;

/** Where each value sits in I8042_STATE.regs: the controller's, then the keyboard's. */
const R = {
  COMMAND_BYTE: 0, // RAM byte 0, read by 0x20, written by 0x60
  OUTPUT_PORT: 1, // as last written by 0xD1 (its OBF lines are worked out when read)
  /** The status register's A2 (COMMAND) bit: the last write went to 0x64. */
  LAST_WRITE_WAS_COMMAND: 2,
  /** A controller command waiting for its data byte at 0x60 (0 = none). */
  PENDING_COMMAND: 3,
  /** The output queue ring: index of the byte at 0x60, bytes waiting. */
  QUEUE_HEAD: 4,
  QUEUE_COUNT: 5,
  /** What 0x60 reads once the queue is empty: the last byte read. */
  LAST_DATA: 6,
  /** The levels last driven on IRQ1 and IRQ12 (1 = high). */
  KEYBOARD_IRQ_LEVEL: 7,
  AUX_IRQ_LEVEL: 8,
  /** The keyboard: a command waiting for its argument byte (0 = none)... */
  KEYBOARD_PENDING_COMMAND: 9,
  /** ...whether it sends scan codes (F4/F5), its LEDs (ED), typematic byte (F3) and scan code set (F0). */
  KEYBOARD_SCANNING: 10,
  KEYBOARD_LEDS: 11,
  KEYBOARD_TYPEMATIC: 12,
  KEYBOARD_SCAN_SET: 13,
} as const;

export const I8042_STATE = new DeviceStateLayout('i8042', 1, {
  /** The controller's registers and the keyboard's settings, indexed by R. */
  regs: ['u8', 14],
  /** Internal RAM 0x21..0x3F by its index (byte 0, the command byte, is regs[R.COMMAND_BYTE]). */
  ram: ['u8', 32],
  /** The output queue: each byte with, in bits 15:8, the status bits it shows with. */
  queue: ['u32', QUEUE_SIZE],
});

export interface I8042Options {
  /** The guest pulsed the CPU reset line (command 0xFE, or 0xD1 with bit 0 clear): reboot. */
  onReset: () => void;
  /** IRQ1. */
  keyboardIrq?: InterruptLine;
  /** IRQ12. */
  auxIrq?: InterruptLine;
  /**
   * The controller's state (I8042_STATE), shared with the other objects that
   * serve the same controller; used as it is. Default: a power-on state of its own.
   */
  state?: SharedArrayBuffer;
}

export class I8042 implements BusDevice, StatefulDevice {
  readonly name = 'i8042';
  readonly byteWide = true;

  /** Port 0x64 alone, for a machine that registers 0x60 and 0x64 as two one-port ranges. */
  readonly commandPort: BusDevice;

  /** The shared state, laid out by I8042_STATE. */
  readonly state: SharedArrayBuffer;
  private readonly regs: Uint8Array;
  private readonly ram: Uint8Array;
  private readonly queue: Uint32Array;

  private readonly onReset: () => void;
  private readonly keyboardIrq: InterruptLine | undefined;
  private readonly auxIrq: InterruptLine | undefined;

  /** The power-on state of the controller and keyboard, to share between the threads that serve it. */
  static createState(): SharedArrayBuffer {
    const state = I8042_STATE.create();
    const regs = I8042_STATE.views(state).regs;
    I8042.powerOn(regs);
    return state;
  }

  constructor(options: I8042Options) {
    this.onReset = options.onReset;
    this.keyboardIrq = options.keyboardIrq;
    this.auxIrq = options.auxIrq;
    this.state = options.state ?? I8042.createState();
    const views = I8042_STATE.views(this.state);
    this.regs = views.regs;
    this.ram = views.ram;
    this.queue = views.queue;
    this.commandPort = {
      name: 'i8042 command',
      byteWide: true,
      read: () => this.read(I8042Port.STATUS_COMMAND, 1),
      write: (_offset, size, value) => this.write(I8042Port.STATUS_COMMAND, size, value),
    };
  }

  saveState(): SavedDeviceState {
    return I8042_STATE.save(this.state);
  }

  /** Restores the controller and keyboard, then drives IRQ1 and IRQ12 to the restored levels. */
  restoreState(saved: SavedDeviceState): void {
    I8042_STATE.restore(saved, this.state);
    this.keyboardIrq?.setLevel(this.regs[R.KEYBOARD_IRQ_LEVEL] !== 0);
    this.auxIrq?.setLevel(this.regs[R.AUX_IRQ_LEVEL] !== 0);
  }

  /** Power-on state of the controller and the keyboard. */
  reset(): void {
    this.ram.fill(0);
    I8042.powerOn(this.regs);
    this.updateInterrupts(false);
  }

  /** Writes the power-on values; the IRQ levels are left for updateInterrupts to drive. */
  private static powerOn(regs: Uint8Array): void {
    regs[R.COMMAND_BYTE] = DEFAULT_COMMAND_BYTE;
    regs[R.OUTPUT_PORT] = DEFAULT_OUTPUT_PORT;
    regs[R.LAST_WRITE_WAS_COMMAND] = 0;
    regs[R.PENDING_COMMAND] = 0;
    regs[R.QUEUE_HEAD] = 0;
    regs[R.QUEUE_COUNT] = 0;
    regs[R.LAST_DATA] = 0;
    I8042.resetKeyboard(regs);
  }

  /** The keyboard LEDs last set by the guest (bit 0 Scroll, 1 Num, 2 Caps Lock). */
  get leds(): number {
    return this.regs[R.KEYBOARD_LEDS]!;
  }

  /** Whether the keyboard would send scan codes (F4 enables, F5 disables). */
  get scanning(): boolean {
    return this.regs[R.KEYBOARD_SCANNING] !== 0;
  }

  /** The typematic byte last set with 0xF3. */
  get typematic(): number {
    return this.regs[R.KEYBOARD_TYPEMATIC]!;
  }

  /** The output port: bit 1 is the A20 gate (stored only; KVM guests see all memory). */
  get outputPort(): number {
    return this.regs[R.OUTPUT_PORT]!;
  }

  read(offset: number, _size: number): number {
    if (offset === I8042Port.DATA) return this.readData();
    if (offset === I8042Port.STATUS_COMMAND) return this.readStatus();
    return 0xff; // 0x61..0x63 are not the controller's
  }

  write(offset: number, _size: number, value: number): void {
    const byte = value & 0xff;
    if (offset === I8042Port.DATA) this.writeData(byte);
    else if (offset === I8042Port.STATUS_COMMAND) this.writeCommand(byte);
  }

  private readStatus(): number {
    const regs = this.regs;
    let status = Status.UNLOCKED | (regs[R.COMMAND_BYTE]! & CommandByte.SYSTEM);
    if (regs[R.LAST_WRITE_WAS_COMMAND]) status |= Status.COMMAND;
    if (regs[R.QUEUE_COUNT]! > 0) status |= Status.OUTPUT_FULL | (this.queue[regs[R.QUEUE_HEAD]!]! >> 8);
    return status;
  }

  private readData(): number {
    const regs = this.regs;
    if (regs[R.QUEUE_COUNT] === 0) return regs[R.LAST_DATA]!; // the buffer keeps its last byte
    const head = regs[R.QUEUE_HEAD]!;
    const byte = this.queue[head]! & 0xff;
    regs[R.LAST_DATA] = byte;
    regs[R.QUEUE_HEAD] = (head + 1) & (QUEUE_SIZE - 1);
    regs[R.QUEUE_COUNT]!--;
    // Reading empties the buffer and drops the IRQ; the next byte raises it
    // again, so an edge-triggered PIC sees one edge per byte.
    this.updateInterrupts(true);
    return byte;
  }

  private writeCommand(command: number): void {
    const regs = this.regs;
    regs[R.LAST_WRITE_WAS_COMMAND] = 1;
    regs[R.PENDING_COMMAND] = 0;
    const commandByte = regs[R.COMMAND_BYTE]!;
    if (command >= 0x20 && command <= 0x3f) {
      this.reply(command === 0x20 ? commandByte : this.ram[command - 0x20]!, SOURCE_KEYBOARD);
      return;
    }
    if ((command >= 0x60 && command <= 0x7f) || (command >= 0xd1 && command <= 0xd4)) {
      regs[R.PENDING_COMMAND] = command; // the argument follows at 0x60
      return;
    }
    if (command >= 0xf0) {
      // Pulse output port bits 3:0 low for 6 µs where the command's bit is 0;
      // bit 0 is the CPU reset line.
      if (!(command & OutputPort.RESET_HIGH)) this.onReset();
      return;
    }
    switch (command) {
      case 0xa7: this.setCommandByte(commandByte | CommandByte.AUX_DISABLED); break;
      case 0xa8: this.setCommandByte(commandByte & ~CommandByte.AUX_DISABLED); break;
      case 0xa9: this.reply(0x00, SOURCE_KEYBOARD); break; // aux interface test: no error
      case 0xaa: // controller self-test passed; it sets the system flag
        this.setCommandByte(commandByte | CommandByte.SYSTEM);
        this.reply(0x55, SOURCE_KEYBOARD);
        break;
      case 0xab: this.reply(0x00, SOURCE_KEYBOARD); break; // keyboard interface test: no error
      case 0xad: this.setCommandByte(commandByte | CommandByte.KEYBOARD_DISABLED); break;
      case 0xae: this.setCommandByte(commandByte & ~CommandByte.KEYBOARD_DISABLED); break;
      case 0xd0: this.reply(this.currentOutputPort(), SOURCE_KEYBOARD); break;
      default: break; // unknown commands are ignored, as by the 8042 firmware
    }
  }

  private writeData(byte: number): void {
    const regs = this.regs;
    regs[R.LAST_WRITE_WAS_COMMAND] = 0;
    const command = regs[R.PENDING_COMMAND]!;
    regs[R.PENDING_COMMAND] = 0;
    if (command === 0) {
      // Data for the keyboard. Sent even while the command byte disables the
      // keyboard interface (0xAD): Linux only talks to an enabled keyboard.
      this.keyboardWrite(byte);
      return;
    }
    if (command === 0x60) this.setCommandByte(byte);
    else if (command > 0x60 && command <= 0x7f) this.ram[command - 0x60] = byte;
    else if (command === 0xd1) this.writeOutputPort(byte);
    else if (command === 0xd2) this.reply(byte, SOURCE_KEYBOARD); // as if the keyboard sent it
    else if (command === 0xd3) this.reply(byte, SOURCE_AUX); // as if the mouse sent it
    else if (command === 0xd4) {
      // Write to the aux device. No mouse is attached, so the controller
      // reports a transmit timeout: 0xFE from the aux port with TIMEOUT set,
      // the way PS/2 controllers report an absent device. Linux's libps2
      // aborts the command on the timeout flag at once, so psmouse/atkbd give
      // up on the aux port immediately instead of waiting 200 ms+ per command
      // (what silence would cost). The port itself (0xD3 echo, 0xA7/0xA8,
      // IRQ12) works, as on a real PC without a mouse.
      this.reply(RESEND, SOURCE_AUX_TIMEOUT);
    }
  }

  private setCommandByte(value: number): void {
    this.regs[R.COMMAND_BYTE] = value & 0x7f;
    this.updateInterrupts(false);
  }

  private writeOutputPort(value: number): void {
    this.regs[R.OUTPUT_PORT] = value;
    if (!(value & OutputPort.RESET_HIGH)) this.onReset();
  }

  /** The output port with its buffer-full lines as they are now. */
  private currentOutputPort(): number {
    const regs = this.regs;
    let port = regs[R.OUTPUT_PORT]! & ~(OutputPort.KEYBOARD_OBF | OutputPort.AUX_OBF);
    if (regs[R.QUEUE_COUNT]! > 0) port |= this.queue[regs[R.QUEUE_HEAD]!]! & SOURCE_AUX ? OutputPort.AUX_OBF : OutputPort.KEYBOARD_OBF;
    return port;
  }

  // --- the keyboard --------------------------------------------------------

  private keyboardWrite(byte: number): void {
    const regs = this.regs;
    const pending = regs[R.KEYBOARD_PENDING_COMMAND]!;
    if (pending !== 0) {
      regs[R.KEYBOARD_PENDING_COMMAND] = 0;
      this.keyboardArgument(pending, byte);
      return;
    }
    switch (byte) {
      case 0xed: // set LEDs
      case 0xf0: // get/set scan code set
      case 0xf3: // set typematic rate
        regs[R.KEYBOARD_PENDING_COMMAND] = byte;
        this.reply(ACK, SOURCE_KEYBOARD);
        break;
      case 0xee: this.reply(0xee, SOURCE_KEYBOARD); break; // echo, no ACK
      case 0xf2: // identify
        this.reply(ACK, SOURCE_KEYBOARD);
        this.reply(KEYBOARD_ID, SOURCE_KEYBOARD);
        this.reply(regs[R.COMMAND_BYTE]! & CommandByte.TRANSLATE ? KEYBOARD_ID_2_TRANSLATED : KEYBOARD_ID_2, SOURCE_KEYBOARD);
        break;
      case 0xf4: regs[R.KEYBOARD_SCANNING] = 1; this.reply(ACK, SOURCE_KEYBOARD); break;
      case 0xf5: // disable: also restores the defaults
        I8042.resetKeyboard(regs);
        regs[R.KEYBOARD_SCANNING] = 0;
        this.reply(ACK, SOURCE_KEYBOARD);
        break;
      case 0xf6: I8042.resetKeyboard(regs); this.reply(ACK, SOURCE_KEYBOARD); break; // set defaults
      case 0xff: // reset and basic assurance test
        I8042.resetKeyboard(regs);
        this.reply(ACK, SOURCE_KEYBOARD);
        this.reply(BAT_OK, SOURCE_KEYBOARD);
        break;
      default: this.reply(ACK, SOURCE_KEYBOARD); break;
    }
  }

  private keyboardArgument(command: number, argument: number): void {
    const regs = this.regs;
    if (command === 0xed) regs[R.KEYBOARD_LEDS] = argument & 0x07;
    else if (command === 0xf3) regs[R.KEYBOARD_TYPEMATIC] = argument & 0x7f;
    else if (command === 0xf0 && argument >= 1 && argument <= 3) regs[R.KEYBOARD_SCAN_SET] = argument;
    this.reply(ACK, SOURCE_KEYBOARD);
    if (command === 0xf0 && argument === 0) {
      const set = regs[R.KEYBOARD_SCAN_SET]!;
      this.reply(regs[R.COMMAND_BYTE]! & CommandByte.TRANSLATE ? TRANSLATED_SCAN_SET[set]! : set, SOURCE_KEYBOARD);
    }
  }

  /** The keyboard's own defaults (power-on, F5, F6, FF). */
  private static resetKeyboard(regs: Uint8Array): void {
    regs[R.KEYBOARD_PENDING_COMMAND] = 0;
    regs[R.KEYBOARD_SCANNING] = 1;
    regs[R.KEYBOARD_LEDS] = 0;
    regs[R.KEYBOARD_TYPEMATIC] = KEYBOARD_DEFAULT_TYPEMATIC;
    regs[R.KEYBOARD_SCAN_SET] = KEYBOARD_DEFAULT_SCAN_SET;
  }

  // --- output buffer and IRQs -----------------------------------------------

  private reply(byte: number, source: number): void {
    const regs = this.regs;
    const count = regs[R.QUEUE_COUNT]!;
    if (count === QUEUE_SIZE) return; // cannot happen with replies of ≤ 3 bytes
    this.queue[(regs[R.QUEUE_HEAD]! + count) & (QUEUE_SIZE - 1)] = byte | source;
    regs[R.QUEUE_COUNT] = count + 1;
    this.updateInterrupts(false);
  }

  /**
   * IRQ1 is high while a keyboard/controller byte waits and the command byte
   * enables it; IRQ12 likewise for an aux byte. `pulse` drops both first.
   */
  private updateInterrupts(pulse: boolean): void {
    const regs = this.regs;
    let keyboard = false;
    let aux = false;
    if (regs[R.QUEUE_COUNT]! > 0) {
      const fromAux = (this.queue[regs[R.QUEUE_HEAD]!]! & SOURCE_AUX) !== 0;
      const commandByte = regs[R.COMMAND_BYTE]!;
      keyboard = !fromAux && (commandByte & CommandByte.KEYBOARD_INTERRUPT) !== 0;
      aux = fromAux && (commandByte & CommandByte.AUX_INTERRUPT) !== 0;
    }
    if (pulse) {
      this.setIrq(R.KEYBOARD_IRQ_LEVEL, this.keyboardIrq, false);
      this.setIrq(R.AUX_IRQ_LEVEL, this.auxIrq, false);
    }
    this.setIrq(R.KEYBOARD_IRQ_LEVEL, this.keyboardIrq, keyboard);
    this.setIrq(R.AUX_IRQ_LEVEL, this.auxIrq, aux);
  }

  /** Drives `line` to `high` if it is not there already; `levelAt` remembers the level. */
  private setIrq(levelAt: number, line: InterruptLine | undefined, high: boolean): void {
    const level = high ? 1 : 0;
    if (level === this.regs[levelAt]) return;
    this.regs[levelAt] = level;
    line?.setLevel(high);
  }
}
