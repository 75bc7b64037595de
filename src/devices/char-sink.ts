// Where a character device sends its output. A device knows only this
// interface; the machine decides whether it reaches stdout, a file or a test.

export interface CharSink {
  writeByte(byte: number): void;
}

/** Collects output in memory (unit tests). */
export class MemorySink implements CharSink {
  private bytes: number[] = [];

  writeByte(byte: number): void {
    this.bytes.push(byte);
  }

  text(): string {
    return Buffer.from(this.bytes).toString('latin1');
  }
}
