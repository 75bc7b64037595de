// The Generic Event Device's state as data (ACPI_GED_STATE): a power-button
// press the guest has not read yet survives save/restore, is not pulsed
// again by the restore, and two objects over one buffer are one device.
import { describe, expect, it } from 'vitest';
import { ACPI_GED_STATE, AcpiGed, GedEvent } from '../../src/devices/acpi-ged.ts';
import { RecordingLine } from '../../src/devices/interrupt-line.ts';
import { expectRestoreRefusals } from './refusals.ts';

describe('AcpiGed state', () => {
  it('an unread press survives save and restore into a fresh device; the restore does not pulse', () => {
    const device = new AcpiGed(new RecordingLine());
    device.pressPowerButton();
    const saved = device.saveState();
    expect(saved.kind).toBe('acpi-ged');

    const line = new RecordingLine();
    const fresh = new AcpiGed(line);
    fresh.restoreState(saved);
    expect(line.levels).toEqual([]);
    expect(fresh.read(0, 4)).toBe(GedEvent.POWER_BUTTON);
    expect(fresh.read(0, 4)).toBe(0); // read once, as on the original
    expect(device.read(0, 4)).toBe(GedEvent.POWER_BUTTON);
  });

  it('two objects over one buffer are one device: pressed on one, read (and cleared) on the other', () => {
    const host = new AcpiGed(new RecordingLine());
    const vcpu = new AcpiGed(new RecordingLine(), host.state);
    host.pressPowerButton();
    expect(vcpu.read(0, 1)).toBe(GedEvent.POWER_BUTTON);
    expect(host.read(0, 4)).toBe(0);
  });

  it('refuses another device\'s state, another version and a damaged size', () => {
    expectRestoreRefusals(ACPI_GED_STATE, new AcpiGed(new RecordingLine()));
  });
});
