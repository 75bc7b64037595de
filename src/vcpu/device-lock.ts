// One lock for every device of a machine with several vCPUs (QEMU's "big
// QEMU lock" idea, at the scale of tsvmm's devices). Each vCPU thread has its
// own device objects over the same state buffers (src/devices/device-state.ts);
// holding this lock while one of them serves an exit makes every access to a
// device happen as if there were one CPU, so a UART never loses or doubles a
// byte when two CPUs write it at once. A machine with one vCPU has no lock.
//
// The lock is a futex-style word in a SharedArrayBuffer (0 free, 1 held, 2
// held with waiters): uncontended, taking and releasing it is one atomic each,
// which costs nothing measurable next to an exit (docs/architecture.md).

const FREE = 0;
const HELD = 1;
const CONTENDED = 2;
/** Spins before sleeping: another vCPU's exit is served in microseconds. */
const SPINS = 100;

export class DeviceLock {
  private readonly word: Int32Array;

  constructor(readonly buffer: SharedArrayBuffer = DeviceLock.createState()) {
    this.word = new Int32Array(buffer, 0, 1);
  }

  static createState(): SharedArrayBuffer {
    return new SharedArrayBuffer(4);
  }

  acquire(): void {
    if (Atomics.compareExchange(this.word, 0, FREE, HELD) === FREE) return;
    for (let i = 0; i < SPINS; i++) {
      if (Atomics.load(this.word, 0) === FREE && Atomics.compareExchange(this.word, 0, FREE, HELD) === FREE) return;
    }
    // Mark it contended and sleep until the holder's release wakes us.
    while (Atomics.exchange(this.word, 0, CONTENDED) !== FREE) Atomics.wait(this.word, 0, CONTENDED);
  }

  release(): void {
    if (Atomics.exchange(this.word, 0, FREE) === CONTENDED) Atomics.notify(this.word, 0, 1);
  }
}
