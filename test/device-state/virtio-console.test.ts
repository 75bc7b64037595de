// virtio-console's state as data, through each transport. The console holds
// a receive buffer it took while no input was waiting: a saved state gives
// it back to the ring, and the restored device takes it again, so host input
// typed after the restore lands in the same buffer as without the save.
import { describe, expect, it } from 'vitest';
import { ConsoleQueue, VirtioConsole, type ConsoleHostIo } from '../../src/devices/virtio/console.ts';
import { VirtioBlk } from '../../src/devices/virtio/blk.ts';
import { InputError } from '../../src/errors.ts';
import { Status } from '../../src/devices/virtio/spec.ts';
import { MemoryDisk } from '../helpers/memory-disk.ts';
import { TRANSPORTS, VirtioTestDriver, type TransportKind, type UsedElement } from '../helpers/virtio-driver.ts';
import { readAllRegisters } from '../helpers/virtio-registers.ts';

const text = (s: string) => new TextEncoder().encode(s);

/** The host side: the guest's output, and input waiting for the guest. */
class HostIo implements ConsoleHostIo {
  output = '';
  input: number[] = [];
  write(bytes: Uint8Array): void {
    this.output += new TextDecoder().decode(bytes);
  }
  read(max: number): Uint8Array | null {
    return this.input.length === 0 ? null : Uint8Array.from(this.input.splice(0, max));
  }
}

function run(transport: TransportKind, save: boolean) {
  const io = new HostIo();
  let driver = new VirtioTestDriver(new VirtioConsole({ name: 'console0', io }), { transport }).start();
  const rx = driver.queue(ConsoleQueue.RECEIVE);
  const tx = driver.queue(ConsoleQueue.TRANSMIT);
  // Two receive buffers: the device takes the first and holds it, no input waiting.
  const buffers = [driver.writable(16), driver.writable(16)];
  for (const buffer of buffers) rx.post([buffer]);
  rx.notify();
  expect((driver.device as VirtioConsole).heldBuffers(ConsoleQueue.RECEIVE)).toBe(1);
  tx.submit([driver.readable(text('hello '))]);
  tx.post([driver.readable(text('world'))]);
  const used: UsedElement[] = [...tx.takeUsed()];

  const before = readAllRegisters(driver);
  let registersAfter = before;
  if (save) {
    const saved = driver.saveState();
    driver = driver.restoredOnto(new VirtioConsole({ name: 'console0', io }), saved);
    registersAfter = readAllRegisters(driver);
  }
  tx.notify();
  io.input.push(...text('typed'));
  driver.device.receiveHostInput!();
  used.push(...tx.takeUsed(), ...rx.takeUsed());
  return { used, output: io.output, received: buffers.map((b) => driver.bytes(b)), memory: driver.memory.read(0, 4 << 20), before, registersAfter };
}

describe.each(TRANSPORTS)('virtio-console state over virtio-%s', (transport) => {
  it('output made available before the save is written after it; the held receive buffer gets the input typed after the restore', () => {
    const unsaved = run(transport, false);
    const restored = run(transport, true);
    expect(unsaved.output).toBe('hello world');
    expect(restored.output).toBe('hello world');
    expect(restored.received[0]!.subarray(0, 5)).toEqual(text('typed'));
    expect(restored.used).toEqual(unsaved.used);
    expect(Buffer.compare(restored.memory, unsaved.memory)).toBe(0);
  });

  it('every register reads alike before the save and after the restore', () => {
    const { before, registersAfter } = run(transport, true);
    expect(registersAfter).toEqual(before);
  });

  it('a receive ring the driver corrupted stays broken across the save, and the device still asks for a reset', () => {
    const io = new HostIo();
    const driver = new VirtioTestDriver(new VirtioConsole({ name: 'console0', io }), { transport }).start();
    const rx = driver.queue(ConsoleQueue.RECEIVE);
    rx.setAvailableIndex(rx.size + 5);
    io.input.push(...text('x'));
    driver.device.receiveHostInput!();
    expect(driver.status & Status.DEVICE_NEEDS_RESET).toBe(Status.DEVICE_NEEDS_RESET);

    const errors = driver.errors;
    const restored = driver.restoredOnto(new VirtioConsole({ name: 'console0', io }), driver.saveState());
    expect(restored.status & Status.DEVICE_NEEDS_RESET).toBe(Status.DEVICE_NEEDS_RESET);
    // The broken ring is left alone, at the restore and after (reading it again would find the jump again and count it); transmit goes on.
    expect(restored.errors).toBe(errors);
    restored.device.receiveHostInput!();
    rx.notify();
    expect(restored.errors).toBe(errors);
    restored.queue(ConsoleQueue.TRANSMIT).submit([restored.readable(text('still here'))]);
    expect(io.output).toBe('still here');
  });

  it('refuses a virtio-blk state', () => {
    const blk = new VirtioTestDriver(new VirtioBlk(MemoryDisk.filled(8), { name: 'blk0', serial: 's' }), { transport }).start();
    const console = new VirtioTestDriver(new VirtioConsole({ name: 'console0', io: new HostIo() }), { transport });
    expect(() => console.runner.restoreState(blk.saveState().device)).toThrow(InputError);
    expect(() => console.runner.restoreState(blk.saveState().device)).toThrow('virtio-blk state cannot be restored into virtio-console (another device)');
  });
});
