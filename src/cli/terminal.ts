// The terminal as the guest's console: keystrokes go to COM1 raw (Ctrl-C
// included, so it reaches the guest's shell), and Ctrl-A starts an escape
// like QEMU's -nographic: Ctrl-A x quits, Ctrl-A p presses the guest's power
// button, Ctrl-A h lists the escapes, Ctrl-A Ctrl-A sends a Ctrl-A.
import { writeSync } from 'node:fs';

const CTRL_A = 0x01;

export const ESCAPE_HELP = [
  'Ctrl-A h    print this help',
  'Ctrl-A x    quit tsvmm',
  'Ctrl-A p    press the ACPI power button (the guest shuts down)',
  'Ctrl-A Ctrl-A  send Ctrl-A to the guest',
].join('\r\n');

export interface TerminalTarget {
  sendInput(bytes: Uint8Array): void;
  quit(): void;
  powerButton(): void;
}

/** Splits terminal input into guest bytes and escape commands. */
export class EscapeParser {
  private escaped = false;

  constructor(private readonly target: TerminalTarget, private readonly say: (text: string) => void) {}

  feed(chunk: Uint8Array): void {
    const out: number[] = [];
    for (const byte of chunk) {
      if (this.escaped) {
        this.escaped = false;
        if (byte === CTRL_A) out.push(CTRL_A);
        else if (byte === 0x78 /* x */) {
          this.flush(out);
          this.target.quit();
          return;
        } else if (byte === 0x70 /* p */) {
          this.flush(out);
          this.target.powerButton();
        } else if (byte === 0x68 /* h */ || byte === 0x3f /* ? */) this.say(`\r\n${ESCAPE_HELP}\r\n`);
        // Anything else after Ctrl-A is dropped, as QEMU does.
      } else if (byte === CTRL_A) this.escaped = true;
      else out.push(byte);
    }
    this.flush(out);
  }

  private flush(out: number[]): void {
    if (out.length) this.target.sendInput(Uint8Array.from(out));
    out.length = 0;
  }
}

/** Connects process.stdin to a machine for the duration of a run. */
export class TerminalConsole {
  private readonly parser: EscapeParser;
  private readonly onData = (chunk: Buffer) => this.parser.feed(chunk);
  // A terminal that went away (EIO) ends the input, not tsvmm: the guest runs on.
  private readonly onError = () => this.stop();
  private rawMode = false;
  private started = false;

  constructor(target: TerminalTarget, private readonly stdin: NodeJS.ReadStream = process.stdin) {
    this.parser = new EscapeParser(target, (text) => writeSync(2, text));
  }

  start(): void {
    this.started = true;
    if (this.stdin.isTTY) {
      this.stdin.setRawMode(true);
      this.rawMode = true;
    }
    this.stdin.on('data', this.onData);
    this.stdin.on('error', this.onError);
    this.stdin.resume();
  }

  stop(): void {
    if (!this.started) return;
    this.started = false;
    this.stdin.off('data', this.onData);
    // Stays listening: a late error from a closing stream must not go unhandled.
    if (this.rawMode) {
      this.rawMode = false;
      try {
        this.stdin.setRawMode(false);
      } catch {
        // A terminal that is gone has no mode left to restore.
      }
    }
    this.stdin.pause();
    // A pipe left open would keep the process alive after the guest ended.
    if (!this.stdin.isTTY) this.stdin.destroy();
  }
}
