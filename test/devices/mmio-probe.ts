// A test device for firmware/mmio.S: records every MMIO write it receives and
// answers reads at 0xD0000020.. with values the test knows.
import type { BusDevice } from '../../src/bus/index.ts';
import type { PlatformContext } from '../../src/machine/bus-devices.ts';

export const PROBE_BASE = 0xd000_0000;

class MmioProbe implements BusDevice {
  readonly name = 'mmio probe';
  readonly writes: string[] = [];

  read(offset: number, size: number): number {
    // Each read returns a pattern that shows its offset and width.
    if (size === 1) return 0xa0 | (offset & 0xf);
    if (size === 2) return 0xb0b0 + offset;
    return (0xc0c0_0000 + offset) >>> 0;
  }

  read64(offset: number): bigint {
    return 0xd1d2_d3d4_0000_0000n + BigInt(offset);
  }

  write(offset: number, size: number, value: number): void {
    this.writes.push(`${size}@${offset}=${value.toString(16)}`);
  }

  write64(offset: number, value: bigint): void {
    this.writes.push(`8@${offset}=${value.toString(16)}`);
  }
}

export function attach(platform: PlatformContext) {
  const probe = new MmioProbe();
  platform.mmio.register(PROBE_BASE, 0x1000, probe);
  return { report: () => probe.writes };
}
