// isa-debug-exit: the device's QEMU semantics, `--device isa-debug-exit,...`
// parsed as QEMU's -device takes it, and the device moved to kvm-unit-tests'
// 0xf4 (4 ports) ending a guest through real KVM exits.
import { describe, expect, it } from 'vitest';
import { AddressSpace } from '../src/bus/index.ts';
import { MonotonicClock } from '../src/devices/clock.ts';
import { DebugExit } from '../src/devices/debug-exit.ts';
import { RecordingLine } from '../src/devices/interrupt-line.ts';
import { InputError } from '../src/errors.ts';
import { attachDevices } from '../src/machine/bus-devices.ts';
import { machineDevices } from '../src/machine/builder.ts';
import type { MachineConfig } from '../src/machine/config.ts';
import { Machine } from '../src/machine/machine.ts';
import { GuestMemory } from '../src/memory/index.ts';
import type { VcpuStop } from '../src/vcpu/index.ts';
import { parseIsaDebugExit, platformConfigFromOptions } from '../src/cli/platform-options.ts';
import { configFromOptions } from '../src/cli/run.ts';
import { exitLoopImage, ExitLoopOp, firmwarePath } from '../bench/lib/artifacts.ts';
import { hasKvm, tsvmm } from './helpers/kvm.ts';

describe('debug-exit (QEMU isa-debug-exit semantics)', () => {
  const statusFor = (offset: number, size: number, value: number) => {
    let status = -1;
    new DebugExit((s) => (status = s)).write(offset, size, value);
    return status;
  };

  it('a write of v ends with status (v << 1) | 1', () => {
    expect(statusFor(0, 1, 0)).toBe(1);
    expect(statusFor(0, 1, 0x2a)).toBe(85);
    expect(statusFor(0, 1, 0x7f)).toBe(255);
  });

  it('keeps the 8 bits a process exit status has', () => {
    expect(statusFor(0, 1, 0x80)).toBe(1);
    expect(statusFor(0, 2, 0x0102)).toBe(5);
    expect(statusFor(0, 4, 0x1234_5678)).toBe(0xf1);
  });

  it('a write at any port of the range carries the value as written, as QEMU\'s ignores the offset', () => {
    expect(statusFor(1, 1, 0x02)).toBe(5);
    expect(statusFor(3, 1, 0x2a)).toBe(85);
  });
});

describe('--device isa-debug-exit[,iobase=N][,iosize=N]', () => {
  it('takes QEMU\'s defaults for what is left out (0x501, 2 ports), and decimal or 0x numbers', () => {
    expect(parseIsaDebugExit('isa-debug-exit')).toEqual({ port: 0x501, size: 2 });
    expect(parseIsaDebugExit('isa-debug-exit,iobase=0xf4,iosize=0x4')).toEqual({ port: 0xf4, size: 4 });
    expect(parseIsaDebugExit('isa-debug-exit,iobase=244,iosize=4')).toEqual({ port: 0xf4, size: 4 });
    expect(parseIsaDebugExit('isa-debug-exit,iosize=1')).toEqual({ port: 0x501, size: 1 });
  });

  it.each([
    ['isa-debug-exit,iobase=0xzz', '--device isa-debug-exit,iobase=0xzz: iobase=0xzz is not a number (decimal or 0x...)'],
    ['isa-debug-exit,iobase', '--device isa-debug-exit,iobase: iobase needs a value (iobase=...)'],
    ['isa-debug-exit,iosize=0', '--device isa-debug-exit,iosize=0: iosize must be at least 1 port'],
    ['isa-debug-exit,iobase=0xfffe,iosize=4', '--device isa-debug-exit,iobase=0xfffe,iosize=4: ports 0xfffe+4 go past 0xffff, the last I/O port'],
    ['isa-debug-exit,iobase=0x3f6,iosize=4', '--device isa-debug-exit,iobase=0x3f6,iosize=4: ports 0x3f6-0x3f9 overlap COM1 at 0x3f8'],
    ['isa-debug-exit,port=0xf4', '--device isa-debug-exit,port=0xf4: unknown setting "port" (known: iobase, iosize)'],
  ])('%s is refused with one line', (spec, message) => {
    expect(() => parseIsaDebugExit(spec)).toThrow(new InputError(message));
  });

  it('is one device: a second one is refused; without one, the machine keeps its default', () => {
    expect(() => platformConfigFromOptions(['isa-debug-exit', 'isa-debug-exit,iobase=0xf4'])).toThrow(InputError);
    expect(platformConfigFromOptions([])).toEqual({});
  });

  it('tsvmm run sends it to the platform and the other --device specs to virtio', () => {
    const config = configFromOptions({ flat: 'x.bin', device: ['virtio-rng', 'isa-debug-exit,iobase=0xf4,iosize=4'] });
    expect(config.debugExit).toEqual({ port: 0xf4, size: 4 });
    expect(config.virtio).toEqual([{ kind: 'rng' }]);
  });

  it('moves the device: nothing answers at 0x501 any more, and every port of 0xf4-0xf7 ends the VM', () => {
    const stops: VcpuStop[] = [];
    const pio = AddressSpace.ports();
    const config: Pick<MachineConfig, 'pit' | 'debugExit'> = { pit: 'kernel', debugExit: { port: 0xf4, size: 4 } };
    attachDevices(machineDevices(config, false), {
      pio, mmio: AddressSpace.memory(), memory: GuestMemory.ofArrayBuffers([{ guestAddress: 0, size: 0x1000 }]),
      requestStop: (stop) => stops.push(stop), irqLine: () => new RecordingLine(), flushPage() {},
    }, { console: { writeByte() {} }, input: null, clock: new MonotonicClock(), timers: null });
    pio.write(0x501, 1, 0x10);
    expect(stops).toEqual([]);
    pio.write(0xf7, 1, 0x10);
    pio.write(0xf8, 1, 0x11);
    expect(stops).toEqual([{ cause: 'debug-exit', status: 0x21, value: 0x10 }]);
  });
});

describe.skipIf(!hasKvm)('isa-debug-exit through real exits (firmware/exitloop.S, one out to the port)', () => {
  it('--device isa-debug-exit,iobase=0xf4,iosize=4: kvm-unit-tests\' `outl(code, 0xf4)` ends tsvmm with (code << 1) | 1', () => {
    const image = exitLoopImage({ iterations: 1, op: ExitLoopOp.OUT32, port: 0xf4, value: 0x2a });
    const r = tsvmm(['run', '--flat', image, '--device', 'isa-debug-exit,iobase=0xf4,iosize=4']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('');
    expect(r.status).toBe(85);
  });

  it('the whole 32-bit value written reaches the device, at any of its ports', async () => {
    const image = exitLoopImage({ iterations: 1, op: ExitLoopOp.OUT16, port: 0xf6, value: 0x0123 });
    const machine = Machine.create({ memoryBytes: 16 << 20, flat: { path: image }, consoleFd: 2, debugExit: { port: 0xf4, size: 4 } });
    const result = await machine.run();
    machine.close();
    expect(result.stop).toMatchObject({ cause: 'debug-exit', value: 0x0123, status: 0x47 });
  });

  it('a bare --device isa-debug-exit is the default device at 0x501', () => {
    const r = tsvmm(['run', '--flat', firmwarePath('exitcode'), '--device', 'isa-debug-exit']);
    expect(r.stdout).toBe('bye\n');
    expect(r.status).toBe(85);
  });
});
