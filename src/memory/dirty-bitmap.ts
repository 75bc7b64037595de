// A dirty log shared between threads: one bit per unit (a guest page, a disk
// chunk) in a SharedArrayBuffer, which a writer marks with Atomics while a
// migration runs and the migration harvests. Word 0 says whether it is on,
// so marking costs one load while no migration runs.
// dirty-pages.ts (guest RAM) and storage/dirty-chunks.ts (disks) are its two logs.

/** Word 0: 1 while logging; then the bitmap, 32 units per word. */
const HEADER_WORDS = 1;

export class DirtyBitmap {
  private readonly words: Int32Array;

  /** A buffer for `units` units, not logging yet. */
  static buffer(units: number): SharedArrayBuffer {
    return new SharedArrayBuffer((HEADER_WORDS + Math.ceil(units / 32)) * 4);
  }

  /** `unitSize`: the bytes each bit stands for. */
  constructor(readonly buffer: SharedArrayBuffer, private readonly unitSize: number) {
    this.words = new Int32Array(buffer);
  }

  /** Units the log can hold. */
  get units(): number {
    return (this.words.length - HEADER_WORDS) * 32;
  }

  get logging(): boolean {
    return Atomics.load(this.words, 0) === 1;
  }

  /** Starts logging, with nothing marked. */
  start(): void {
    this.words.fill(0, HEADER_WORDS);
    Atomics.store(this.words, 0, 1);
  }

  stop(): void {
    Atomics.store(this.words, 0, 0);
  }

  /** Marks the units of [offset, offset + length) written, while logging (cheap when not). */
  mark(offset: number, length: number): void {
    if (Atomics.load(this.words, 0) !== 1 || length <= 0) return;
    const last = Math.min(Math.floor((offset + length - 1) / this.unitSize), this.units - 1);
    for (let unit = Math.floor(offset / this.unitSize); unit <= last; unit++) {
      Atomics.or(this.words, HEADER_WORDS + (unit >>> 5), 1 << (unit & 31));
    }
  }

  /** The units marked since the last harvest, in order; clears them. */
  harvest(): number[] {
    const units: number[] = [];
    for (let w = HEADER_WORDS; w < this.words.length; w++) {
      if (Atomics.load(this.words, w) === 0) continue;
      const bits = Atomics.exchange(this.words, w, 0);
      for (let b = 0; b < 32; b++) if (bits & (1 << b)) units.push((w - HEADER_WORDS) * 32 + b);
    }
    return units;
  }
}
