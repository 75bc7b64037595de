// Guest pages tsvmm itself wrote. KVM's dirty log (KVM_GET_DIRTY_LOG) sees
// only what vCPUs write; the virtio I/O thread writes guest RAM from the
// host side (request data, used rings), which KVM never sees. Live migration
// must send those pages again too, so while it runs every such write is
// marked here: one bit per 4 KiB guest-physical page, in a SharedArrayBuffer
// every thread marks with Atomics and the migration thread harvests.
export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;

/** Word 0: 1 while logging; then the bitmap, 32 pages per word. */
const HEADER_WORDS = 1;

export class DirtyPageLog {
  private readonly words: Int32Array;

  /** A log for guest-physical addresses below `end`, not logging yet. */
  static create(end: number): SharedArrayBuffer {
    const pages = Math.ceil(end / PAGE_SIZE);
    return new SharedArrayBuffer((HEADER_WORDS + Math.ceil(pages / 32)) * 4);
  }

  constructor(readonly buffer: SharedArrayBuffer) {
    this.words = new Int32Array(buffer);
  }

  /** Pages the log can hold. */
  get pages(): number {
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

  /** Marks the pages of [address, address + length) written, while logging (cheap when not). */
  mark(address: number, length: number): void {
    if (Atomics.load(this.words, 0) !== 1 || length <= 0) return;
    const last = Math.min(Math.floor((address + length - 1) / PAGE_SIZE), this.pages - 1);
    for (let page = Math.floor(address / PAGE_SIZE); page <= last; page++) {
      Atomics.or(this.words, HEADER_WORDS + (page >>> 5), 1 << (page & 31));
    }
  }

  /** The pages marked since the last harvest, as guest page numbers; clears them. */
  harvest(): number[] {
    const pages: number[] = [];
    for (let w = HEADER_WORDS; w < this.words.length; w++) {
      if (this.words[w] === 0) continue;
      const bits = Atomics.exchange(this.words, w, 0);
      for (let b = 0; b < 32; b++) if (bits & (1 << b)) pages.push((w - HEADER_WORDS) * 32 + b);
    }
    return pages;
  }
}
