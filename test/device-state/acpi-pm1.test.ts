// The PM1a registers' state as data (ACPI_PM1_STATE): enable, status and
// SLP_TYP survive save/restore, and two device objects over one buffer (two
// vCPU threads) are one register file.
import { describe, expect, it } from 'vitest';
import { ACPI_PM1_STATE, AcpiPm1, Pm1Enable, Pm1Status } from '../../src/devices/acpi-pm1.ts';
import { expectRestoreRefusals } from './refusals.ts';

const ENABLE = 2;

describe('AcpiPm1 state', () => {
  it('PM1_EN, PM1_STS and SLP_TYP survive save and restore into a fresh device', () => {
    const device = new AcpiPm1(() => {});
    device.event.write(ENABLE + 1, 1, Pm1Enable.RTC_EN >> 8);
    device.wake(Pm1Status.RTC_STS);
    device.control.write(1, 1, 0x0c); // SLP_TYP 3, no SLP_EN
    const saved = device.saveState();
    expect(saved.kind).toBe('acpi-pm1');
    const fresh = new AcpiPm1(() => {});
    fresh.restoreState(saved);
    expect([0, 1, 2, 3].map((o) => fresh.event.read(o, 1))).toEqual([0x00, 0x84, 0x00, 0x04]);
    expect([fresh.control.read(0, 1), fresh.control.read(1, 1)]).toEqual([0x01, 0x0c]);
    expect(fresh.rtcWakeEnabled).toBe(true);
  });

  it('two objects over one buffer are one device', () => {
    const a = new AcpiPm1(() => {});
    const b = new AcpiPm1(() => {}, a.state);
    a.wake(0);
    expect(b.event.read(1, 1)).toBe(Pm1Status.WAK_STS >> 8);
    b.event.write(1, 1, Pm1Status.WAK_STS >> 8);
    expect(a.event.read(1, 1)).toBe(0);
  });

  it('refuses another device\'s state, another version and a damaged size', () => {
    expectRestoreRefusals(ACPI_PM1_STATE, new AcpiPm1(() => {}));
  });
});
