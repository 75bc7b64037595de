// QEMU's pvpanic (docs/specs/pvpanic.rst): the port answers with the events
// the host handles, a PANICKED write ends the VM as a guest panic, and
// `--device pvpanic` puts it at QEMU's 0x505 and in the DSDT as QEMU0001,
// where Linux's pvpanic driver finds it.
import { describe, expect, it } from 'vitest';
import { acpiPlatform } from '../src/boot/acpi/platform.ts';
import { dsdtAml } from '../src/boot/acpi/dsdt.ts';
import { AddressSpace } from '../src/bus/index.ts';
import { platformConfigFromOptions } from '../src/cli/platform-options.ts';
import { MonotonicClock } from '../src/devices/clock.ts';
import { RecordingLine } from '../src/devices/interrupt-line.ts';
import { Pvpanic, PvpanicEvent } from '../src/devices/pvpanic.ts';
import { InputError } from '../src/errors.ts';
import { attachDevices } from '../src/machine/bus-devices.ts';
import { machineDevices } from '../src/machine/builder.ts';
import { GuestMemory } from '../src/memory/index.ts';
import type { VcpuStop } from '../src/vcpu/index.ts';

describe('pvpanic, the device', () => {
  const device = () => {
    let panics = 0;
    return { pvpanic: new Pvpanic(() => panics++), panics: () => panics };
  };

  it('a read says which events the host handles: PANICKED only (a guest with a crash kernel then sends nothing)', () => {
    expect(device().pvpanic.read()).toBe(PvpanicEvent.PANICKED);
  });

  it('bit 0 (PANICKED) reports a panic; CRASH_LOADED alone, or 0, does nothing', () => {
    const d = device();
    d.pvpanic.write(0, 1, 0);
    d.pvpanic.write(0, 1, PvpanicEvent.CRASH_LOADED);
    expect(d.panics()).toBe(0);
    d.pvpanic.write(0, 1, PvpanicEvent.PANICKED);
    expect(d.panics()).toBe(1);
  });
});

describe('--device pvpanic', () => {
  it('puts the device at 0x505; a write there ends the VM as a guest panic, status 6', () => {
    const config = { pit: 'kernel' as const, ...platformConfigFromOptions(['pvpanic']) };
    expect(config.pvpanic).toBe(true);
    const stops: VcpuStop[] = [];
    const pio = AddressSpace.ports();
    attachDevices(machineDevices(config, true), {
      pio, mmio: AddressSpace.memory(), memory: GuestMemory.ofArrayBuffers([{ guestAddress: 0, size: 0x1000 }]),
      requestStop: (stop) => stops.push(stop), irqLine: () => new RecordingLine(), flushPage() {},
    }, { console: { writeByte() {} }, input: null, clock: new MonotonicClock(), timers: null });
    expect(pio.read(0x505, 1)).toBe(1);
    pio.write(0x505, 1, 1);
    expect(stops).toEqual([{ cause: 'panic', status: 6, message: 'guest panicked (it said so through pvpanic)' }]);
  });

  it('is absent without the option: the machine has no port 0x505', () => {
    expect(machineDevices({ pit: 'kernel' }, true).some((d) => d.kind === 'pvpanic')).toBe(false);
    expect(platformConfigFromOptions([])).toEqual({});
  });

  it.each([
    [['pvpanic,ioport=0x506'], '--device pvpanic,ioport=0x506: pvpanic has no settings (it sits at 0x505, QEMU\'s ioport)'],
    [['pvpanic', 'pvpanic'], '--device pvpanic: given more than once (tsvmm has one pvpanic port)'],
    [['pvpanic', 'isa-debug-exit,iobase=0x504,iosize=2'], '--device isa-debug-exit,iobase=0x504,iosize=2: overlaps pvpanic\'s port 0x505'],
  ])('%j is refused in one line', (devices, message) => {
    expect(() => platformConfigFromOptions(devices)).toThrow(new InputError(message));
  });

  it('the DSDT describes it as QEMU0001 with its one port only when the machine has it', () => {
    const text = (pvpanic: boolean) => Buffer.from(dsdtAml(acpiPlatform(1, undefined, { pvpanic }))).toString('latin1');
    expect(text(false)).not.toContain('QEMU0001');
    const aml = text(true);
    expect(aml).toContain('PEVT');
    expect(aml).toContain('QEMU0001');
    // IO (Decode16, 0x505, 0x505, 1, 1): descriptor 0x47, decode 16-bit, min, max, alignment, length.
    expect(aml).toContain(Buffer.from([0x47, 0x01, 0x05, 0x05, 0x05, 0x05, 0x01, 0x01]).toString('latin1'));
  });
});
