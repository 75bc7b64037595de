// The benchmark's no-op device: takes the exitloop guest's accesses on port
// 0x520 and at MMIO 0xD0000000, does nothing with writes, reads zero. What is
// measured is then the exit path itself.
import type { BusDevice } from '../../src/bus/index.ts';
import type { PlatformContext } from '../../src/machine/bus-devices.ts';

class NullDevice implements BusDevice {
  readonly name = 'bench null device';

  read(): number {
    return 0;
  }

  write(): void {}
}

export function attach(platform: PlatformContext): void {
  const device = new NullDevice();
  platform.pio.register(0x520, 4, device);
  platform.mmio.register(0xd000_0000, 0x1000, device);
}
