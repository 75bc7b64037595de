// virtio-net's state as data, through each transport. The device holds the
// next receive buffer while it waits for a frame: a saved state gives it back
// to the ring and the restored device takes it again. A FIFO stands in for
// the TAP (no network is involved): what the device transmits into it comes
// back as the next received frame, one frame at a time.
import { spawnSync } from 'node:child_process';
import { constants, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { closeFd } from '../../src/kvm/index.ts';
import { NET_HEADER_SIZE, NetQueue, VirtioNet } from '../../src/devices/virtio/net.ts';
import { VirtioRng } from '../../src/devices/virtio/rng.ts';
import { InputError } from '../../src/errors.ts';
import { TRANSPORTS, VirtioTestDriver, type TransportKind, type UsedElement } from '../helpers/virtio-driver.ts';
import { readAllRegisters } from '../helpers/virtio-registers.ts';

const MAC = Uint8Array.of(0x52, 0x54, 0x00, 0x12, 0x34, 0x56);
const RX_BUFFER = NET_HEADER_SIZE + 1514;

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

/** A FIFO opened read-write and non-blocking: a loopback "TAP". */
function loopbackFifo(): number {
  const dir = mkdtempSync(join(tmpdir(), 'tsvmm-net-state-'));
  const path = join(dir, 'tap');
  const made = spawnSync('mkfifo', [path]);
  if (made.status !== 0) throw new Error(`mkfifo: ${made.stderr.toString()}`);
  const fd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
  cleanups.push(() => {
    closeFd(fd);
    rmSync(dir, { recursive: true });
  });
  return fd;
}

/** A transmit chain: the 12-byte virtio-net header, then a 60-byte frame filled with `fill`. */
const frame = (fill: number) => Uint8Array.from({ length: NET_HEADER_SIZE + 60 }, (_, i) => (i < NET_HEADER_SIZE ? 0 : fill));

function run(transport: TransportKind, save: boolean) {
  const fd = loopbackFifo();
  let device = new VirtioNet({ name: 'net0', tapFd: fd, mac: MAC });
  let driver = new VirtioTestDriver(device, { transport }).start();
  const rx = driver.queue(NetQueue.RECEIVE);
  const tx = driver.queue(NetQueue.TRANSMIT);
  const buffers = [driver.writable(RX_BUFFER), driver.writable(RX_BUFFER)];
  for (const buffer of buffers) rx.post([buffer]);
  rx.notify();
  tx.submit([driver.readable(frame(0xa1))]);
  device.onReadable(fd);
  // The first frame is in the first buffer; the device holds the second, waiting.
  expect(device.heldBuffers(NetQueue.RECEIVE)).toBe(1);
  tx.post([driver.readable(frame(0xb2))]);
  const used: UsedElement[] = [...rx.takeUsed(), ...tx.takeUsed()];

  const before = readAllRegisters(driver);
  let after = before;
  if (save) {
    const saved = driver.saveState();
    device = new VirtioNet({ name: 'net0', tapFd: fd, mac: MAC });
    driver = driver.restoredOnto(device, saved);
    after = readAllRegisters(driver);
  }
  tx.notify();
  device.onReadable(fd);
  used.push(...rx.takeUsed(), ...tx.takeUsed());
  return { used, received: buffers.map((b) => driver.bytes(b, NET_HEADER_SIZE + 60)), memory: driver.memory.read(0, 4 << 20), before, after, driver };
}

describe.each(TRANSPORTS)('virtio-net state over virtio-%s', (transport) => {
  it('a frame made available before the save is sent after it, into the receive buffer the device held', () => {
    const unsaved = run(transport, false);
    const restored = run(transport, true);
    expect(unsaved.used).toHaveLength(4);
    expect(restored.used).toEqual(unsaved.used);
    expect(restored.received[0]!.subarray(NET_HEADER_SIZE)).toEqual(new Uint8Array(60).fill(0xa1));
    expect(restored.received[1]!.subarray(NET_HEADER_SIZE)).toEqual(new Uint8Array(60).fill(0xb2));
    expect(Buffer.compare(restored.memory, unsaved.memory)).toBe(0);
  });

  it('every register reads alike before the save and after the restore', () => {
    const { before, after } = run(transport, true);
    expect(after).toEqual(before);
  });

  it('refuses a virtio-net state in a virtio-rng, and a virtio-rng state in a virtio-net', () => {
    const { driver: net } = run(transport, false);
    const rng = new VirtioTestDriver(new VirtioRng({ name: 'rng0' }), { transport }).start();
    expect(() => rng.runner.restoreState(net.saveState().device)).toThrow(InputError);
    expect(() => net.runner.restoreState(rng.saveState().device)).toThrow('virtio-rng state cannot be restored into virtio-net (another device)');
  });
});
