// virtio-rng's state as data, through each transport: requests made
// available before a save are served after the restore, none twice.
import { describe, expect, it } from 'vitest';
import { VirtioRng } from '../../src/devices/virtio/rng.ts';
import { InputError } from '../../src/errors.ts';
import { TRANSPORTS, VirtioTestDriver, type TransportKind } from '../helpers/virtio-driver.ts';
import { readAllRegisters } from '../helpers/virtio-registers.ts';

function run(transport: TransportKind, save: boolean) {
  let driver = new VirtioTestDriver(new VirtioRng({ name: 'rng0' }), { transport }).start();
  const queue = driver.queue(0);
  const devices = [driver.device as VirtioRng];
  queue.submit([driver.writable(32)]);
  queue.submit([driver.writable(64)]);
  const used = queue.takeUsed();
  for (const length of [8, 16, 128]) queue.post([driver.writable(length)]);
  const before = readAllRegisters(driver);
  let after = before;
  if (save) {
    const saved = driver.saveState();
    devices.push(new VirtioRng({ name: 'rng0' }));
    driver = driver.restoredOnto(devices[1]!, saved);
    after = readAllRegisters(driver);
  }
  queue.notify();
  used.push(...queue.takeUsed());
  return { used, requests: devices.reduce((sum, d) => sum + d.counts.requests, 0), before, after, driver };
}

describe.each(TRANSPORTS)('virtio-rng state over virtio-%s', (transport) => {
  it('requests made available before the save are filled after the restore, each once', () => {
    const unsaved = run(transport, false);
    const restored = run(transport, true);
    expect(unsaved.used.map((u) => u.len)).toEqual([32, 64, 8, 16, 128]);
    expect(restored.used).toEqual(unsaved.used);
    expect(restored.requests).toBe(5);
    expect(restored.after).toEqual(restored.before);
  });

  it('refuses a state of another version or size', () => {
    const { driver } = run(transport, false);
    const saved = driver.saveState().device;
    expect(() => driver.runner.restoreState({ ...saved, version: 0 })).toThrow(InputError);
    expect(() => driver.runner.restoreState({ ...saved, version: 0 })).toThrow(/virtio-rng state version 0 cannot be restored/);
    expect(() => driver.runner.restoreState({ ...saved, bytes: new Uint8Array(saved.bytes.length + 8) })).toThrow(/damaged state/);
  });
});
