// pc-testdev as QEMU's hw/misc/pc-testdev.c behaves, through the buses the
// machine puts it on (src/machine/bus-devices.ts), and `--device pc-testdev`.
import { describe, expect, it } from 'vitest';
import { AddressSpace } from '../src/bus/index.ts';
import { platformConfigFromOptions } from '../src/cli/platform-options.ts';
import { MonotonicClock } from '../src/devices/clock.ts';
import { RecordingLine } from '../src/devices/interrupt-line.ts';
import { PcTestdev, PC_TESTDEV_STATE } from '../src/devices/pc-testdev.ts';
import { InputError } from '../src/errors.ts';
import { MmioLayout } from '../src/layout.ts';
import { attachDevices } from '../src/machine/bus-devices.ts';
import { machineDevices } from '../src/machine/builder.ts';
import { GuestMemory } from '../src/memory/index.ts';

function machineWithTestdev() {
  const pio = AddressSpace.ports();
  const mmio = AddressSpace.memory();
  const lines = new Map<number, RecordingLine>();
  const flushed: number[] = [];
  const devices = machineDevices({ pit: 'kernel', pcTestdev: true }, false);
  attachDevices(devices, {
    pio, mmio, memory: GuestMemory.ofArrayBuffers([{ guestAddress: 0, size: 0x1000 }]),
    requestStop() {},
    irqLine: (irq) => lines.get(irq) ?? lines.set(irq, new RecordingLine()).get(irq)!,
    flushPage: (address) => flushed.push(address),
  }, { console: { writeByte() {} }, input: null, clock: new MonotonicClock(), timers: null });
  const spec = devices.find((d) => d.kind === 'pc-testdev')!;
  return { pio, mmio, lines, flushed, state: (spec as { state: SharedArrayBuffer }).state };
}

describe('pc-testdev', () => {
  it('is on the machine only with --device pc-testdev', () => {
    expect(machineDevices({ pit: 'kernel' }, false).some((d) => d.kind === 'pc-testdev')).toBe(false);
    expect(platformConfigFromOptions(['pc-testdev'])).toEqual({ pcTestdev: true });
    expect(platformConfigFromOptions([])).toEqual({});
  });

  it('port 0xe0 is a 32-bit scratch register that partial accesses read and write in place', () => {
    const { pio } = machineWithTestdev();
    pio.write(0xe0, 4, 0x1234_5678);
    expect(pio.read(0xe0, 4)).toBe(0x1234_5678);
    expect(pio.read(0xe0, 1)).toBe(0x78);
    expect(pio.read(0xe2, 2)).toBe(0x1234);
    pio.write(0xe1, 1, 0xab);
    expect(pio.read(0xe0, 4)).toBe(0x1234_ab78);
    pio.write(0xe0, 2, 0x9999);
    expect(pio.read(0xe0, 4)).toBe(0x1234_9999);
  });

  it('port 0xe8 serves the same register a byte at a time', () => {
    const { pio } = machineWithTestdev();
    pio.write(0xe8, 4, 0xdead_beef);
    expect(pio.read(0xe0, 4)).toBe(0xdead_beef);
    expect(pio.read(0xe9, 2)).toBe(0xadbe);
  });

  it('a byte written to 0x2000 + n drives interrupt line n to (value != 0); a wider write, each byte its line', () => {
    const { pio, lines } = machineWithTestdev();
    pio.write(0x200e, 1, 1);
    pio.write(0x200e, 1, 0);
    pio.write(0x2017, 1, 5);
    expect(lines.get(0x0e)!.levels).toEqual([true, false]);
    expect(lines.get(0x17)!.level).toBe(true);
    // realmode's sti-inhibit test: outl 1 to 0x200b.
    pio.write(0x200b, 4, 1);
    expect([0x0b, 0x0c, 0x0d, 0x0e].map((n) => lines.get(n)!.level)).toEqual([true, false, false, false]);
  });

  it('a 32-bit write to 0xe4 flushes the page holding the address, other widths nothing', () => {
    const { pio, flushed } = machineWithTestdev();
    pio.write(0xe4, 4, 0x0012_3456);
    pio.write(0xe4, 2, 0x7000);
    expect(flushed).toEqual([0x0012_3000]);
  });

  it('the 64 KiB at 0xff000000 keep what is written, at every width, little-endian', () => {
    const { mmio } = machineWithTestdev();
    const base = MmioLayout.PC_TESTDEV_IOMEM;
    mmio.write(base + 0x10, 4, 0x0403_0201);
    expect(mmio.read(base + 0x11, 2)).toBe(0x0302);
    mmio.write64(base + 0xfff8, 0x1122_3344_5566_7788n);
    expect(mmio.read64(base + 0xfff8)).toBe(0x1122_3344_5566_7788n);
    expect(mmio.read(base + 0xfffc, 4)).toBe(0x1122_3344);
    expect(mmio.read(base + 0x20, 4)).toBe(0);
  });

  it('its register and buffer are its state: a save restores into another device', () => {
    const { pio, mmio, state } = machineWithTestdev();
    pio.write(0xe0, 4, 0xcafe_f00d);
    mmio.write(MmioLayout.PC_TESTDEV_IOMEM + 0x100, 1, 0x5a);
    const copy = new PcTestdev({ irqLine: () => new RecordingLine(), flushPage() {} });
    copy.restoreState(PC_TESTDEV_STATE.save(state));
    expect(copy.ioport.read(0, 4)).toBe(0xcafe_f00d);
    expect(copy.iomem.read(0x100, 1)).toBe(0x5a);
  });

  it('--device pc-testdev takes no settings, and isa-debug-exit may not sit on its ports', () => {
    expect(() => platformConfigFromOptions(['pc-testdev,iobase=0x100'])).toThrow(InputError);
    expect(() => platformConfigFromOptions(['pc-testdev', 'isa-debug-exit,iobase=0xe8,iosize=4'])).toThrow(/overlaps pc-testdev's ports 0xe0-0xeb/);
    expect(platformConfigFromOptions(['pc-testdev', 'isa-debug-exit,iobase=0xf4,iosize=4'])).toEqual({ pcTestdev: true, debugExit: { port: 0xf4, size: 4 } });
  });
});
