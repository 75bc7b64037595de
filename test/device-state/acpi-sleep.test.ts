// The ACPI sleep/reset registers' state as data (ACPI_SLEEP_STATE): WAK_STS
// set by a sleep to an unsupported state survives save/restore, and two
// device objects over one buffer are one register file.
import { describe, expect, it } from 'vitest';
import { ACPI_SLEEP_STATE, AcpiSleep, AcpiSleepRegister, SleepBits, type AcpiSleepRequest } from '../../src/devices/acpi-sleep.ts';
import { expectRestoreRefusals } from './refusals.ts';

const S3 = 3;

function sleepDevice(state?: SharedArrayBuffer) {
  const requests: AcpiSleepRequest[] = [];
  const device = new AcpiSleep((what) => requests.push(what), state);
  return { device, requests };
}

describe('AcpiSleep state', () => {
  it('a fresh device reads WAK_STS clear', () => {
    expect(sleepDevice().device.read(AcpiSleepRegister.STATUS, 1)).toBe(0);
  });

  it('WAK_STS from a refused S3 survives save and restore into a fresh device, and clears there', () => {
    const { device } = sleepDevice();
    device.write(AcpiSleepRegister.CONTROL, 1, (S3 << SleepBits.SLP_TYP_SHIFT) | SleepBits.SLP_EN);
    const saved = device.saveState();
    expect(saved.kind).toBe('acpi-sleep');

    const { device: fresh, requests } = sleepDevice();
    fresh.restoreState(saved);
    for (const offset of [AcpiSleepRegister.CONTROL, AcpiSleepRegister.STATUS, AcpiSleepRegister.RESET]) {
      expect(fresh.read(offset, 1)).toBe(device.read(offset, 1));
    }
    expect(fresh.read(AcpiSleepRegister.STATUS, 1)).toBe(SleepBits.WAK_STS);
    fresh.write(AcpiSleepRegister.STATUS, 1, SleepBits.WAK_STS);
    expect(fresh.read(AcpiSleepRegister.STATUS, 1)).toBe(0);
    expect(device.read(AcpiSleepRegister.STATUS, 1)).toBe(SleepBits.WAK_STS); // the copy is its own
    expect(requests).toEqual([]);
  });

  it('two objects over one buffer are one device', () => {
    const a = sleepDevice();
    const b = sleepDevice(a.device.state);
    a.device.write(AcpiSleepRegister.CONTROL, 1, (S3 << SleepBits.SLP_TYP_SHIFT) | SleepBits.SLP_EN);
    expect(b.device.read(AcpiSleepRegister.STATUS, 1)).toBe(SleepBits.WAK_STS);
    b.device.write(AcpiSleepRegister.STATUS, 1, SleepBits.WAK_STS);
    expect(a.device.read(AcpiSleepRegister.STATUS, 1)).toBe(0);
  });

  it('refuses another device\'s state, another version and a damaged size', () => {
    expectRestoreRefusals(ACPI_SLEEP_STATE, sleepDevice().device);
  });
});
