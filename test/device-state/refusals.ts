// The three restores every stateful device must refuse, with the layout's
// messages: another device's state, another version of its own, and bytes
// of the wrong size. Each device's test calls this with its own layout.
import { expect } from 'vitest';
import type { DeviceStateLayout, SavedDeviceState, StateField, StatefulDevice } from '../../src/devices/device-state.ts';
import { InputError } from '../../src/errors.ts';

export function expectRestoreRefusals(layout: DeviceStateLayout<Record<string, StateField>>, device: StatefulDevice): void {
  const own = device.saveState();
  const otherKind = layout.kind === 'serial16550' ? 'i8042' : 'serial16550';
  const refusals: [SavedDeviceState, string][] = [
    [{ ...own, kind: otherKind }, `${otherKind} state cannot be restored into ${layout.kind} (another device)`],
    [{ ...own, version: layout.version + 1 }, `${layout.kind} state version ${layout.version + 1} cannot be restored: this tsvmm reads version ${layout.version}`],
    [{ ...own, bytes: new Uint8Array(layout.bytes + 8) }, `${layout.kind} state: ${layout.bytes + 8} bytes, expected ${layout.bytes} (damaged state)`],
  ];
  for (const [saved, message] of refusals) {
    expect(() => device.restoreState(saved)).toThrow(InputError);
    expect(() => device.restoreState(saved)).toThrow(message);
  }
  // Refused restores left the device as it was.
  expect(device.saveState().bytes).toEqual(own.bytes);
}
