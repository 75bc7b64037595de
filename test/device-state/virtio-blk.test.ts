// virtio-blk's state as data, through each transport: a queue with requests
// in flight is saved, restored into fresh device, transport and runner
// objects over the same guest memory and disk, and carries on exactly as the
// device would have without the save.
import { describe, expect, it } from 'vitest';
import { InputError } from '../../src/errors.ts';
import { PciCommand, PciConfig } from '../../src/devices/pci/index.ts';
import { BlkRequest, BlkStatus, VirtioBlk } from '../../src/devices/virtio/blk.ts';
import { VirtioRng } from '../../src/devices/virtio/rng.ts';
import { InterruptCause, Status } from '../../src/devices/virtio/spec.ts';
import { blkRequestHeader, MemoryDisk } from '../helpers/memory-disk.ts';
import { TRANSPORTS, VirtioTestDriver, type TransportKind, type UsedElement } from '../helpers/virtio-driver.ts';
import { readAllRegisters } from '../helpers/virtio-registers.ts';

const SECTORS = 64;
const OPTIONS = { name: 'blk0', serial: 'tsvmm-serial-0123456789' };

interface Outcome {
  used: UsedElement[];
  /** Requests the device (both objects, with a save) carried out. */
  requests: number;
  memory: Uint8Array;
  disk: Uint8Array;
  status: number;
}

/**
 * Two requests complete; four more are made available without a notification
 * (a read of what the first wrote, GET_ID, a write and a read of it); then,
 * with `save`, the device is saved and restored into fresh objects; then the
 * driver notifies and takes what came back.
 */
function run(transport: TransportKind, save: boolean): Outcome {
  const disk = MemoryDisk.filled(SECTORS, (i) => i * 7);
  let driver = new VirtioTestDriver(new VirtioBlk(disk, OPTIONS), { transport }).start();
  const queue = driver.queue(0);
  const status = () => driver.writable(1, 0xff);
  const used: UsedElement[] = [];

  const written = driver.readable(new Uint8Array(512).fill(0xa5));
  queue.submit([driver.readable(blkRequestHeader(BlkRequest.OUT, 5)), written, status()]);
  queue.submit([driver.readable(blkRequestHeader(BlkRequest.IN, 2)), driver.writable(1024), status()]);
  used.push(...queue.takeUsed());
  expect(used).toHaveLength(2);
  // The driver owns a completed request's buffers again and reuses them: a
  // device that did that write a second time would put these bytes on disk.
  driver.memory.fill(written.address, written.length, 0x11);

  queue.post([driver.readable(blkRequestHeader(BlkRequest.IN, 5)), driver.writable(512), status()]);
  queue.post([driver.readable(blkRequestHeader(BlkRequest.GET_ID, 0)), driver.writable(20), status()], { indirect: true });
  queue.post([driver.readable(blkRequestHeader(BlkRequest.OUT, 9)), driver.readable(new Uint8Array(1024).fill(0x3c)), status()]);
  queue.post([driver.readable(blkRequestHeader(BlkRequest.IN, 9)), driver.writable(1024), status()]);

  const devices = [driver.device as VirtioBlk];
  if (save) {
    const saved = driver.saveState();
    devices.push(new VirtioBlk(disk, OPTIONS));
    driver = driver.restoredOnto(devices[1]!, saved);
  }
  queue.notify();
  used.push(...queue.takeUsed());
  const requests = devices.reduce((sum, { counts }) => sum + counts.reads + counts.writes + counts.getIds, 0);
  return { used, requests, memory: driver.memory.read(0, 4 << 20), disk: disk.bytes.slice(), status: driver.status };
}

describe.each(TRANSPORTS)('virtio-blk state over virtio-%s', (transport) => {
  it('requests made available before the save complete after the restore, exactly as without the save', () => {
    const unsaved = run(transport, false);
    const restored = run(transport, true);
    expect(unsaved.used).toHaveLength(6);
    expect(unsaved.used.map((u) => u.len)).toEqual([1, 1025, 513, 21, 1, 1025]);
    expect(restored.used).toEqual(unsaved.used);
    expect(unsaved.requests).toBe(6);
    expect(restored.requests).toBe(6);
    expect(restored.status).toBe(unsaved.status);
    // Same data buffers, status bytes, rings and event indexes; same disk.
    expect(Buffer.compare(restored.memory, unsaved.memory)).toBe(0);
    expect(Buffer.compare(restored.disk, unsaved.disk)).toBe(0);
  });

  it('every register reads alike before the save and after the restore', () => {
    const disk = MemoryDisk.filled(SECTORS);
    const driver = new VirtioTestDriver(new VirtioBlk(disk, OPTIONS), { transport }).start();
    const queue = driver.queue(0);
    queue.submit([driver.readable(blkRequestHeader(BlkRequest.IN, 1)), driver.writable(512), driver.writable(1)]);
    queue.post([driver.readable(blkRequestHeader(BlkRequest.IN, 2)), driver.writable(512), driver.writable(1)]);
    // A driver mid-way: feature selector on the high word, an interrupt not yet acknowledged.
    driver.transport.state.deviceFeatureSelect = 1;
    if (driver.pci) {
      // What firmware or Linux programs: the BAR, Memory Space and Bus Master, and Interrupt Line.
      driver.pci.writeConfig(PciConfig.BAR0, 4, 0xe000_0000);
      driver.pci.writeConfig(PciConfig.COMMAND, 2, PciCommand.MEMORY | PciCommand.BUS_MASTER);
      driver.pci.writeConfig(PciConfig.INTERRUPT_LINE, 1, 11);
      expect(driver.pci.bar.mapped).toBe(0xe000_0000);
    }
    expect(driver.transport.state.interruptStatus).toBe(InterruptCause.USED_BUFFER);
    const before = readAllRegisters(driver);
    expect(before['ISR']).toBe(InterruptCause.USED_BUFFER);

    const restored = driver.restoredOnto(new VirtioBlk(disk, OPTIONS), driver.saveState());
    expect(readAllRegisters(restored)).toEqual(before);
    expect(restored.status & Status.DRIVER_OK).toBe(Status.DRIVER_OK);
  });

  it('a save taken right after the driver reset the device restores a reset device', () => {
    const disk = MemoryDisk.filled(SECTORS);
    const driver = new VirtioTestDriver(new VirtioBlk(disk, OPTIONS), { transport }).start();
    driver.reset();
    const restored = driver.restoredOnto(new VirtioBlk(disk, OPTIONS), driver.saveState());
    expect(restored.status).toBe(0);
    expect(restored.queueReady(0)).toBe(false);
    // And it comes up again with a new handshake.
    restored.start();
    const status = restored.writable(1, 0xff);
    restored.queue(0).submit([restored.readable(blkRequestHeader(BlkRequest.FLUSH, 0)), status]);
    expect(restored.bytes(status)[0]).toBe(BlkStatus.OK);
  });

  it('refuses the state of another device, another version, or of the wrong size, and changes nothing', () => {
    const disk = MemoryDisk.filled(SECTORS);
    const blk = new VirtioTestDriver(new VirtioBlk(disk, OPTIONS), { transport }).start();
    const saved = blk.saveState();
    const rng = new VirtioTestDriver(new VirtioRng({ name: 'rng0' }), { transport });
    const rngBefore = readAllRegisters(rng);
    expect(() => rng.runner.restoreState(saved.device)).toThrow(InputError);
    expect(() => rng.runner.restoreState(saved.device)).toThrow('virtio-blk state cannot be restored into virtio-rng (another device)');
    expect(readAllRegisters(rng)).toEqual(rngBefore);

    const other = new VirtioTestDriver(new VirtioBlk(disk, OPTIONS), { transport });
    expect(() => other.runner.restoreState({ ...saved.device, version: 99 })).toThrow(/virtio-blk state version 99 cannot be restored/);
    expect(() => other.runner.restoreState({ ...saved.device, bytes: saved.device.bytes.subarray(8) })).toThrow(/damaged state/);
    expect(other.status).toBe(0);
  });
});
