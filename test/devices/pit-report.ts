// A device module for tests of tsvmm's PIT: it adds no device, and reports
// what became of the IRQ0 ticks of the PIT the platform registered at 0x40.
import type { PlatformContext } from '../../src/machine/bus-devices.ts';
import { Pit8254 } from '../../src/devices/pit8254.ts';
import { PortLayout } from '../../src/layout.ts';

export function attach(context: PlatformContext): { report(): unknown } {
  const device = context.pio.find(PortLayout.PIT, 1)?.device;
  if (!(device instanceof Pit8254)) throw new Error('pit-report: no tsvmm PIT at port 0x40 (run with --pit tsvmm)');
  return { report: () => device.irq0Ticks };
}
