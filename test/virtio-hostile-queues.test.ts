// A hostile driver against every virtio device (blk, net, rng, console) over
// both transports (virtio-mmio and virtio-pci): malformed chains fail only
// their request, corrupted or impossible rings put the device in
// DEVICE_NEEDS_RESET until the driver resets it, and nothing is thrown into
// the thread that serves the device. After each attack a well-formed request
// is served, so the device is known to keep working.
import { closeSync, openSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { BlkRequest, VirtioBlk } from '../src/devices/virtio/blk.ts';
import { ConsoleQueue, VirtioConsole, type ConsoleHostIo } from '../src/devices/virtio/console.ts';
import type { VirtioDevice } from '../src/devices/virtio/device.ts';
import { NET_HEADER_SIZE, NetQueue, VirtioNet } from '../src/devices/virtio/net.ts';
import { VirtioRng } from '../src/devices/virtio/rng.ts';
import { DescriptorFlag, InterruptCause, Status } from '../src/devices/virtio/spec.ts';
import { MemoryDisk } from './helpers/memory-disk.ts';
import { TRANSPORTS, VirtioTestDriver, type DriverBuffer, type DriverQueue, type TransportKind } from './helpers/virtio-driver.ts';

const { NEXT, WRITE, INDIRECT } = DescriptorFlag;
const QUEUE_SIZE = 8;

/** /dev/null stands in for the TAP: it takes every frame and never has one to read. */
const devNull = openSync('/dev/null', 'r+');
afterAll(() => closeSync(devNull));

const hostIo: ConsoleHostIo = { write: () => {}, read: () => null };

interface DeviceUnderAttack {
  name: string;
  make(): VirtioDevice;
  /** The queue the driver sends requests on. */
  queue: number;
  /** A well-formed request and the used length it must come back with. */
  goodRequest(driver: VirtioTestDriver): { buffers: DriverBuffer[]; usedLength: number };
}

const blkHeader = () => {
  const header = new Uint8Array(16);
  new DataView(header.buffer).setUint32(0, BlkRequest.IN, true);
  return header;
};

const DEVICES: DeviceUnderAttack[] = [
  {
    name: 'virtio-blk',
    make: () => new VirtioBlk(MemoryDisk.filled(64, (i) => i), { name: 'blk0', serial: 'hostile' }),
    queue: 0,
    goodRequest: (d) => ({ buffers: [d.readable(blkHeader()), d.writable(512), d.writable(1, 0xff)], usedLength: 513 }),
  },
  {
    name: 'virtio-net',
    make: () => new VirtioNet({ name: 'net0', tapFd: devNull, mac: Uint8Array.of(0x52, 0x54, 0, 0, 0, 1) }),
    queue: NetQueue.TRANSMIT,
    goodRequest: (d) => ({ buffers: [d.readable(new Uint8Array(NET_HEADER_SIZE + 60))], usedLength: 0 }),
  },
  {
    name: 'virtio-rng',
    make: () => new VirtioRng({ name: 'rng0' }),
    queue: 0,
    goodRequest: (d) => ({ buffers: [d.writable(64)], usedLength: 64 }),
  },
  {
    name: 'virtio-console',
    make: () => new VirtioConsole({ name: 'console0', io: hostIo }),
    queue: ConsoleQueue.TRANSMIT,
    goodRequest: (d) => ({ buffers: [d.readable(new TextEncoder().encode('ok\n'))], usedLength: 0 }),
  },
];

/** A chain the driver writes by hand into the queue's descriptors (`d(i, ...)` writes descriptor `i` of the chain). */
type ChainBuilder = (
  d: (i: number, address: number, length: number, flags?: number, next?: number) => void,
  driver: VirtioTestDriver,
  indices: number[],
) => void;

const BAD_CHAINS: [string, ChainBuilder, RegExp][] = [
  ['a descriptor outside guest RAM', (d, driver) => d(0, driver.memory.end - 8, 64), /outside guest RAM/],
  ['a descriptor at a 64-bit address', (d) => d(0, 2 ** 52, 64), /outside guest RAM/],
  ['a zero-length descriptor', (d, driver) => d(0, driver.alloc(64), 0), /length 0/],
  ['a chain that loops', (d, driver, [a, b]) => {
    const buffer = driver.alloc(64);
    d(0, buffer, 16, NEXT, b);
    d(1, buffer, 16, NEXT, a);
  }, /loops/],
  ['a chain that names a descriptor past the table', (d, driver) => d(0, driver.alloc(64), 16, NEXT, QUEUE_SIZE), /past the table/],
  ['a readable buffer after a writable one', (d, driver, [, b]) => {
    d(0, driver.alloc(64), 16, WRITE | NEXT, b);
    d(1, driver.alloc(64), 16);
  }, /readable buffer after a writable/],
  ['an indirect table longer than the queue', (d, driver) => d(0, driver.alloc(16 * (QUEUE_SIZE + 1)), 16 * (QUEUE_SIZE + 1), INDIRECT), /more than the queue size/],
  ['an indirect table outside guest RAM', (d, driver) => d(0, driver.memory.end - 16, 32, INDIRECT), /outside guest RAM/],
];

/** Queue setups the device must refuse when the driver sets DRIVER_OK. */
const BAD_QUEUES: [string, (driver: VirtioTestDriver) => { size: number; descriptors: number; available: number; used: number }, RegExp][] = [
  ['a queue size that is not a power of 2', (d) => ({ size: 6, descriptors: d.alloc(96), available: d.alloc(32), used: d.alloc(64, 4) }), /power of 2/],
  ['a queue size above the device\'s maximum', (d) => ({ size: 32768, descriptors: d.alloc(16 * 32768), available: d.alloc(6 + 2 * 32768), used: d.alloc(6 + 8 * 32768, 4) }), /queue size 32768 is above the maximum/],
  ['a descriptor table outside guest RAM', (d) => ({ size: QUEUE_SIZE, descriptors: d.memory.end - 64, available: d.alloc(32), used: d.alloc(128, 4) }), /descriptor table .* outside guest RAM/],
  ['an available ring past 4 GiB', (d) => ({ size: QUEUE_SIZE, descriptors: d.alloc(128), available: 2 ** 40, used: d.alloc(128, 4) }), /available ring .* outside guest RAM/],
  ['a used ring that runs off the end of RAM', (d) => ({ size: QUEUE_SIZE, descriptors: d.alloc(128), available: d.alloc(32), used: d.memory.end - 8 }), /used ring .* outside guest RAM/],
  ['a misaligned used ring', (d) => ({ size: QUEUE_SIZE, descriptors: d.alloc(128), available: d.alloc(32), used: d.alloc(128, 4) + 2 }), /used ring .* not 4-byte aligned/],
];

function setup(device: DeviceUnderAttack, transport: TransportKind): VirtioTestDriver {
  return new VirtioTestDriver(device.make(), { transport, queueSize: QUEUE_SIZE, memory: 2 << 20 }).start();
}

/** Sends the device's well-formed request on `queue` and checks it comes back served. */
function expectServed(driver: VirtioTestDriver, device: DeviceUnderAttack, queue: DriverQueue = driver.queue(device.queue)): void {
  const { buffers, usedLength } = device.goodRequest(driver);
  const head = queue.submit(buffers);
  expect(queue.takeUsed()).toEqual([{ id: head, len: usedLength }]);
  expect(driver.status & Status.DEVICE_NEEDS_RESET).toBe(0);
}

function reasons(driver: VirtioTestDriver): string {
  return [...driver.errorReasons.keys()].join('\n');
}

/** The device asked for a reset (2.1.2): NEEDS_RESET and a configuration interrupt; a reset and a new handshake bring it back. */
function expectNeedsResetThenRecovers(driver: VirtioTestDriver, device: DeviceUnderAttack): void {
  expect(driver.status & Status.DEVICE_NEEDS_RESET).toBe(Status.DEVICE_NEEDS_RESET);
  expect(driver.interruptStatus() & InterruptCause.CONFIG_CHANGE).toBe(InterruptCause.CONFIG_CHANGE);
  driver.reset();
  expect(driver.status).toBe(0);
  driver.start();
  expectServed(driver, device);
}

describe.each(TRANSPORTS)('hostile queues over virtio-%s', (transport) => {
  describe.each(DEVICES)('$name', (device) => {
    describe('a malformed chain fails its request, and the queue goes on', () => {
      it.each(BAD_CHAINS)('%s', (_what, build, reason) => {
        const driver = setup(device, transport);
        const queue = driver.queue(device.queue);
        const indices = queue.reserve(2);
        build((i, address, length, flags = 0, next = 0) => queue.descriptor(indices[i]!, address, length, flags, next), driver, indices);
        queue.offer(indices[0]!);
        queue.notify();
        expect(queue.takeUsed()).toEqual([{ id: indices[0], len: 0 }]);
        expect(reasons(driver)).toMatch(reason);
        expect(driver.errors).toBe(1);
        expectServed(driver, device);
      });
    });

    describe('a corrupted or impossible ring puts the device in NEEDS_RESET', () => {
      it('an available index that jumps by more than the queue size', () => {
        const driver = setup(device, transport);
        const queue = driver.queue(device.queue);
        queue.setAvailableIndex(QUEUE_SIZE + 1);
        const usedBefore = queue.usedIndex();
        queue.notify();
        expect(reasons(driver)).toMatch(/jumped by 9, more than the queue size 8/);
        expect(queue.usedIndex()).toBe(usedBefore);
        expectNeedsResetThenRecovers(driver, device);
      });

      it('an available ring entry that names a descriptor past the table', () => {
        const driver = setup(device, transport);
        const queue = driver.queue(device.queue);
        queue.offer(QUEUE_SIZE + 3);
        queue.notify();
        expect(reasons(driver)).toMatch(/names descriptor 11 of 8/);
        expectNeedsResetThenRecovers(driver, device);
      });

      it.each(BAD_QUEUES)('enabling a queue with %s', (_what, layout, reason) => {
        const driver = new VirtioTestDriver(device.make(), { transport, queueSize: QUEUE_SIZE, memory: 2 << 20 });
        expect(driver.negotiate()).toBe(true);
        for (let q = 0; q < driver.device.info.queueMaxSizes.length; q++) {
          if (q === device.queue) driver.programQueue(q, layout(driver));
          else driver.setupQueue(q);
        }
        driver.driverOk();
        // Notifying the refused queue is harmless: it has no ring to read.
        driver.notify(device.queue);
        expect(reasons(driver)).toMatch(reason);
        expectNeedsResetThenRecovers(driver, device);
      });
    });

    it('a notification for a queue that is not enabled, or that does not exist, does nothing', () => {
      const driver = new VirtioTestDriver(device.make(), { transport, queueSize: QUEUE_SIZE, memory: 2 << 20 });
      expect(driver.negotiate()).toBe(true);
      const queueCount = driver.device.info.queueMaxSizes.length;
      for (let q = 0; q < queueCount; q++) if (q !== device.queue) driver.setupQueue(q);
      driver.driverOk();
      driver.notify(device.queue);
      driver.notify(queueCount);
      driver.notify(0xffff);
      expect(driver.queueReady(device.queue)).toBe(false);
      expect(driver.errors).toBe(0);
      expect(driver.status & Status.DEVICE_NEEDS_RESET).toBe(0);
      // Enabled now, the queue is served from the next reset on.
      driver.reset();
      driver.start();
      expectServed(driver, device);
    });

    it('a reset with requests in flight: the device lets go of the old rings', () => {
      const driver = setup(device, transport);
      const queues = driver.device.info.queueMaxSizes.map((_, q) => driver.queue(q));
      // Requests posted on every queue (receive queues hold them waiting for input), one not yet notified.
      for (const queue of queues) {
        queue.submit([driver.writable(64)]);
        queue.post([driver.writable(64)]);
      }
      const usedIndexes = queues.map((q) => q.usedIndex());
      driver.reset();
      expect(driver.status).toBe(0);
      // The old rings now hold garbage the driver reuses; notifications for them change nothing.
      for (const queue of queues) {
        driver.memory.fill(queue.descriptors, 16 * queue.size, 0xff);
        queue.setAvailableIndex(0xffff);
        driver.notify(queue.index);
      }
      expect(queues.map((q) => q.usedIndex())).toEqual(usedIndexes);
      expect(driver.status).toBe(0);
      if (driver.device.wantsPoll) expect(driver.device.wantsPoll()).toBe(false);
      driver.start();
      expectServed(driver, device);
    });
  });
});
