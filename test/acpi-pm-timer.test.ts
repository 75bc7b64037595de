// The ACPI PM timer: 3.579545 MHz from the machine's clock, 24 bits, where the FADT says.
import { describe, expect, it } from 'vitest';
import { buildFadt, FadtField } from '../src/boot/acpi/tables.ts';
import { acpiPlatform } from '../src/boot/acpi/index.ts';
import { AcpiPmTimer } from '../src/devices/acpi-pm-timer.ts';
import { ManualClock } from '../src/devices/clock.ts';
import { PortLayout } from '../src/layout.ts';
import { machineDevices } from '../src/machine/builder.ts';

describe('ACPI PM timer', () => {
  it('counts 3,579,545 ticks a second and wraps at 24 bits', () => {
    const clock = new ManualClock();
    const timer = new AcpiPmTimer(clock);
    expect(timer.read(0, 4)).toBe(0);
    clock.setNs(1_000); // 1 µs: 3.58 ticks
    expect(timer.read(0, 4)).toBe(3);
    clock.setNs(1e9);
    expect(timer.read(0, 4)).toBe(3_579_545);
    clock.setNs(5e9); // 17,897,725 ticks, past 2^24
    expect(timer.read(0, 4)).toBe(17_897_725 - 0x100_0000);
    expect(timer.read(0, 1)).toBe((17_897_725 - 0x100_0000) & 0xff);
    expect(timer.read(1, 2)).toBe(((17_897_725 - 0x100_0000) >> 8) & 0xffff);
  });

  it('is on a kernel guest\'s machine at 0x608, and the FADT points there (PM_TMR_BLK, PM_TMR_LEN 4, X_PM_TMR_BLK)', () => {
    expect(machineDevices({ pit: 'kernel' }, true)).toContainEqual({ kind: 'acpi-pm-timer', port: 0x608 });
    expect(machineDevices({ pit: 'kernel' }, false).some((d) => d.kind === 'acpi-pm-timer')).toBe(false);
    const fadt = Buffer.from(buildFadt(acpiPlatform(1), 0x1000, 0x2000));
    expect(fadt.readUInt32LE(FadtField.PM_TMR_BLK)).toBe(PortLayout.ACPI_PM_TIMER);
    expect(fadt.readUInt8(FadtField.PM_TMR_LEN)).toBe(4);
    expect([...fadt.subarray(FadtField.X_PM_TMR_BLK, FadtField.X_PM_TMR_BLK + 4)]).toEqual([1, 32, 0, 3]);
    expect(Number(fadt.readBigUInt64LE(FadtField.X_PM_TMR_BLK + 4))).toBe(0x608);
  });
});
