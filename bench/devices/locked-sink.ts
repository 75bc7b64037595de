// Placement option B: device state shared between threads in a
// SharedArrayBuffer, each access taken under a lock (what several vCPU threads
// touching one device would need). Measures the lock's cost per exit.
import type { BusDevice } from '../../src/bus/index.ts';
import type { PlatformContext } from '../../src/machine/bus-devices.ts';

const LOCK = 0;
const COUNT = 1;

class LockedNullDevice implements BusDevice {
  readonly name = 'bench locked null device';
  private readonly state = new Int32Array(new SharedArrayBuffer(8));

  private acquire(): void {
    while (Atomics.compareExchange(this.state, LOCK, 0, 1) !== 0) Atomics.wait(this.state, LOCK, 1, 1);
  }

  private release(): void {
    Atomics.store(this.state, LOCK, 0);
    Atomics.notify(this.state, LOCK, 1);
  }

  read(): number {
    this.acquire();
    const v = this.state[COUNT]!;
    this.release();
    return v & 0;
  }

  write(): void {
    this.acquire();
    this.state[COUNT]!++;
    this.release();
  }
}

export function attach(platform: PlatformContext): void {
  const device = new LockedNullDevice();
  platform.pio.register(0x520, 4, device);
  platform.mmio.register(0xd000_0000, 0x1000, device);
}
