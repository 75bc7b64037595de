// The virtio I/O thread, run for real: a driver in this thread (playing the
// guest and the vCPU thread) shares guest RAM and the device's state with it,
// and reaches it only through eventfds, as KVM and the vCPU thread do. Host
// input for the virtio console goes the machine's way: into the input ring,
// then a wakeup of the thread, which hands it to every device that takes host
// input. virtio-net on a stream socket (passt's) shows the thread watching a
// device's socket for writing while the device holds output back.
import { mkdtempSync, openSync, closeSync, readFileSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BlkRequest, VirtioBlk } from '../src/devices/virtio/blk.ts';
import { ConsoleQueue } from '../src/devices/virtio/console.ts';
import { VirtioSharedState } from '../src/devices/virtio/shared-state.ts';
import { NET_HEADER_SIZE, NetQueue } from '../src/devices/virtio/net.ts';
import { closeFd, createEventFd, createStreamSocketPair, ReadableWaiter, signalEventFd } from '../src/kvm/index.ts';
import { HostRam } from '../src/memory/host-ram.ts';
import { DiskDirtyLog } from '../src/storage/dirty-chunks.ts';
import type { VirtioDeviceConfig } from '../src/machine/config.ts';
import { indexesWithinKind, openVirtioDevice } from '../src/machine/virtio-devices.ts';
import { VirtioIoThread } from '../src/machine/virtio-io-thread.ts';
import { StreamBackend } from '../src/devices/virtio/net-stream.ts';
import { closeVirtioWiring, type VirtioWiring } from '../src/machine/virtio-wiring.ts';
import { planVirtioDevices } from '../src/machine/virtio-plan.ts';
import { VirtioTestDriver } from './helpers/virtio-driver.ts';

/** Waits for another thread to make `condition` true: polls every 5 ms, gives up after 10 s. */
async function until(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error(`the virtio I/O thread never got to: ${what}`);
}

/** Devices planned as wireVirtio plans them (mmio, irqfd), without a VM: the thread then never needs one. */
function wireDevices(configs: VirtioDeviceConfig[]): VirtioWiring {
  const indexes = indexesWithinKind(configs);
  const opened = configs.map((config, i) => openVirtioDevice(config, indexes[i]!, { console: { write: () => {}, read: () => null } }));
  const disks = opened.flatMap((device) => device instanceof VirtioBlk ? [{ size: device.diskSize, dirtyLog: DiskDirtyLog.create(device.diskSize) }] : []);
  for (const device of opened) device.close?.();
  const devices = planVirtioDevices(configs.map((config, i) => ({ config, index: indexes[i]!, info: opened[i]!.info })), { defaultTransport: 'mmio', createEventFd, useIrqfd: true });
  return { devices, controlFd: createEventFd(), pciBridgeState: null, disks };
}

const wireOne = (config: VirtioDeviceConfig): VirtioWiring => wireDevices([config]);

/** A driver for planned device `index` of `wiring`, notifying as the vCPU thread does; its rings and buffers from `allocFrom` up. */
function driverOf(wiring: VirtioWiring, index: number, memory: HostRam['memory'], allocFrom: number): VirtioTestDriver {
  const planned = wiring.devices[index]!;
  return new VirtioTestDriver({
    info: planned.info,
    state: new VirtioSharedState(planned.state, planned.info.queueMaxSizes.length),
    hooks: {
      notify: (queue) => signalEventFd(planned.notifyFds[queue]!),
      statusChanged: () => signalEventFd(wiring.controlFd),
    },
  }, { memory, allocFrom });
}

describe('the virtio I/O thread', () => {
  it('carries the virtio console both ways: guest output to the console fd, host input into a receive buffer the guest posted', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsvmm-io-thread-'));
    const consolePath = join(dir, 'console');
    const consoleFd = openSync(consolePath, 'w');
    const ram = HostRam.allocate([{ guestAddress: 0, size: 1 << 20 }]);
    const wiring = wireOne({ kind: 'console' });
    const planned = wiring.devices[0]!;
    let thread: VirtioIoThread | null = null;
    try {
      thread = await VirtioIoThread.start({ ram: ram.descriptors, vmFd: -1, wiring, consoleFd });
      const driver = new VirtioTestDriver({
        info: planned.info,
        state: new VirtioSharedState(planned.state, planned.info.queueMaxSizes.length),
        // What the vCPU thread does on a notify exit and on a status write.
        hooks: {
          notify: (queue) => signalEventFd(planned.notifyFds[queue]!),
          statusChanged: () => signalEventFd(wiring.controlFd),
        },
      }, { memory: ram.memory });

      // A receive buffer posted before DRIVER_OK, which the device takes when it activates and then holds while no input waits.
      expect(driver.negotiate()).toBe(true);
      const [receiveq, transmitq] = [driver.setupQueue(ConsoleQueue.RECEIVE), driver.setupQueue(ConsoleQueue.TRANSMIT)];
      const receive = driver.writable(64, 0xee);
      const receiveHead = receiveq.post([receive]);
      driver.driverOk();

      // Guest output. Once it comes back used, the device is active and has looked at its receive queue.
      const output = new TextEncoder().encode('hello from the guest\n');
      transmitq.submit([driver.readable(output)]);
      await until(() => transmitq.usedIndex() === 1, 'return the transmit buffer');
      expect(receiveq.usedIndex()).toBe(0);

      // Host input: no notification follows, only the wakeup the machine sends after filling the input ring.
      const input = new TextEncoder().encode('typed on the host\n');
      expect(thread.consoleInput.offer(input)).toBe(input.length);
      thread.inputArrived();
      await until(() => receiveq.usedIndex() === 1, 'deliver the host input');
      expect(receiveq.takeUsed()).toEqual([{ id: receiveHead, len: input.length }]);
      expect(driver.bytes(receive, input.length)).toEqual(input);
      expect(driver.bytes(receive)[input.length]).toBe(0xee);

      const reports = await thread.stop();
      expect(reports).toEqual([expect.objectContaining({ name: 'console0', errors: 0, bytesIn: input.length, bytesOut: output.length })]);
      await thread.terminate();
      thread = null;
      expect(readFileSync(consolePath, 'utf8')).toBe('hello from the guest\n');
    } finally {
      await thread?.terminate();
      closeVirtioWiring(wiring);
      closeSync(consoleFd);
    }
  });

  it('a block migration\'s side: the disk marks the chunks the guest writes while logging, and read-disk reads them between requests', async () => {
    const MiB = 1 << 20;
    const dir = mkdtempSync(join(tmpdir(), 'tsvmm-io-thread-'));
    const image = join(dir, 'disk.raw');
    const content = Buffer.alloc(4 * MiB);
    content.fill(0x42, 2 * MiB, 2 * MiB + 4096);
    writeFileSync(image, content);
    const ram = HostRam.allocate([{ guestAddress: 0, size: 1 << 20 }]);
    const wiring = wireOne({ kind: 'blk', path: image, format: 'raw' });
    const log = new DiskDirtyLog(wiring.disks[0]!.dirtyLog);
    let thread: VirtioIoThread | null = null;
    try {
      thread = await VirtioIoThread.start({ ram: ram.descriptors, vmFd: -1, wiring, consoleFd: -1 });
      const driver = driverOf(wiring, 0, ram.memory, 0x1000);
      expect(driver.negotiate()).toBe(true);
      const queue = driver.setupQueue(0);
      driver.driverOk();
      const writeSector = async (sector: number, byte: number, done: number) => {
        const header = new Uint8Array(16);
        new DataView(header.buffer).setUint32(0, BlkRequest.OUT, true);
        new DataView(header.buffer).setUint32(8, sector, true);
        queue.submit([driver.readable(header), driver.readable(new Uint8Array(512).fill(byte)), driver.writable(1, 0xff)]);
        await until(() => queue.usedIndex() === done, `complete write ${done}`);
      };

      await writeSector(0, 0x11, 1);
      log.start();
      await writeSector(2048 + 7, 0x22, 2); // in chunk 1
      await writeSector(4 * 2048 - 1, 0x33, 3); // the last sector: chunk 3
      expect(log.harvest()).toEqual([1, 3]);
      expect(log.harvest()).toEqual([]);

      const chunk1 = (await thread.readDisk(0, MiB, MiB))!;
      expect([...chunk1.subarray(7 * 512, 7 * 512 + 2)]).toEqual([0x22, 0x22]);
      expect((await thread.readDisk(0, 2 * MiB, MiB))![4095]).toBe(0x42);
      expect((await thread.readDisk(0, 0, 512))![0]).toBe(0x11);
      // All zeros: no bytes come back.
      expect(await thread.readDisk(0, 2 * MiB + 4096, 4096)).toBeNull();
      await expect(thread.readDisk(1, 0, 512)).rejects.toThrow(/no disk 1 \(the machine has 1\)/);
      await expect(thread.readDisk(0, 4 * MiB - 512, 1024)).rejects.toThrow(/outside the disk/);

      log.stop();
      await writeSector(2048, 0x44, 4);
      expect(log.harvest()).toEqual([]);
      await thread.stop();
    } finally {
      await thread?.terminate();
      closeVirtioWiring(wiring);
    }
  });

  it('a pause holds at once: a notification that arrived with it is left for after resume, not served behind the pause\'s reply', async () => {
    const MiB = 1 << 20;
    const dir = mkdtempSync(join(tmpdir(), 'tsvmm-io-thread-'));
    const images = [join(dir, 'a.raw'), join(dir, 'b.raw')];
    for (const image of images) writeFileSync(image, Buffer.alloc(32 * MiB));
    const ram = HostRam.allocate([{ guestAddress: 0, size: 32 * MiB }]);
    const wiring = wireDevices(images.map((path) => ({ kind: 'blk', path, format: 'raw' })));
    let thread: VirtioIoThread | null = null;
    try {
      thread = await VirtioIoThread.start({ ram: ram.descriptors, vmFd: -1, wiring, consoleFd: -1 });
      const queues = [0, 1].map((index) => {
        // The second disk's rings and buffers above the first one's 24 MiB write.
        const driver = driverOf(wiring, index, ram.memory, index === 0 ? 0x1000 : 30 * MiB);
        expect(driver.negotiate()).toBe(true);
        const queue = driver.setupQueue(0);
        driver.driverOk();
        return { driver, queue };
      });
      const write = (disk: number, bytes: number) => {
        const { driver, queue } = queues[disk]!;
        const header = new Uint8Array(16);
        new DataView(header.buffer).setUint32(0, BlkRequest.OUT, true);
        queue.submit([driver.readable(header), driver.readable(new Uint8Array(bytes).fill(0x5a)), driver.writable(1, 0xff)]);
      };
      // A long write to the first disk keeps the thread busy while the second disk's
      // notification and the pause arrive: its next poll finds both.
      write(0, 24 * MiB);
      write(1, 512);
      await thread.pause();
      // Served now, the second disk's request would complete behind the pause's reply: give it the time to.
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(queues[1]!.queue.usedIndex()).toBe(0);
      await thread.resume();
      await until(() => queues[1]!.queue.usedIndex() === 1, 'serve the second disk\'s write after resume');
      expect(queues[0]!.queue.usedIndex()).toBe(1);
      await thread.stop();
    } finally {
      await thread?.terminate();
      closeVirtioWiring(wiring);
    }
  });

  it('carries virtio-net over a stream socket: a peer that reads late still gets every frame, in order; a frame from it lands in a posted buffer', async () => {
    const { local, remote } = createStreamSocketPair();
    const ram = HostRam.allocate([{ guestAddress: 0, size: 4 << 20 }]);
    const wiring = wireOne({ kind: 'net', user: { hostForwards: [] }, streamFd: local });
    const planned = wiring.devices[0]!;
    let thread: VirtioIoThread | null = null;
    try {
      thread = await VirtioIoThread.start({ ram: ram.descriptors, vmFd: -1, wiring, consoleFd: -1 });
      const driver = new VirtioTestDriver({
        info: planned.info,
        state: new VirtioSharedState(planned.state, planned.info.queueMaxSizes.length),
        hooks: {
          notify: (queue) => signalEventFd(planned.notifyFds[queue]!),
          statusChanged: () => signalEventFd(wiring.controlFd),
        },
      }, { memory: ram.memory });
      expect(driver.negotiate()).toBe(true);
      const [receiveq, transmitq] = [driver.setupQueue(NetQueue.RECEIVE), driver.setupQueue(NetQueue.TRANSMIT)];
      driver.driverOk();

      // 16 frames of 60000 bytes: more than a socketpair holds, so the device must wait for the peer to read.
      const frames = Array.from({ length: 16 }, (_, i) => Uint8Array.from({ length: 60_000 }, (_, j) => (i * 7 + j) & 0xff));
      for (const frame of frames) transmitq.submit([driver.readable(Uint8Array.from([...new Uint8Array(NET_HEADER_SIZE), ...frame]))]);
      const expected = Buffer.concat(frames.flatMap((frame) => {
        const length = Buffer.alloc(4);
        length.writeUInt32BE(frame.length);
        return [length, frame];
      }));
      const received = Buffer.alloc(expected.length);
      let at = 0;
      const waiter = new ReadableWaiter();
      await until(() => {
        while (at < expected.length && waiter.wait([remote], 0).length > 0) at += readSync(remote, received, at, expected.length - at, null);
        return at === expected.length;
      }, 'send every frame to the peer');
      expect(received.equals(expected)).toBe(true);
      await until(() => transmitq.usedIndex() === frames.length, 'return every transmit buffer');

      const buffer = driver.writable(NET_HEADER_SIZE + 1514);
      const head = receiveq.submit([buffer]);
      writeSync(remote, Uint8Array.of(0, 0, 0, 60, ...new Uint8Array(60).fill(0x5a)));
      await until(() => receiveq.usedIndex() === 1, 'deliver the peer\'s frame');
      expect(receiveq.takeUsed()).toEqual([{ id: head, len: NET_HEADER_SIZE + 60 }]);
      expect([...driver.bytes(buffer, NET_HEADER_SIZE + 60).subarray(NET_HEADER_SIZE)]).toEqual(new Array(60).fill(0x5a));

      // The thread stops (a reset) with a frame from the peer read in part: it
      // reads the rest, which the peer sends while it waits, and drops it,
      // so the next device on the socket (the machine after the reset) reads
      // the frame after it whole.
      receiveq.submit([driver.writable(NET_HEADER_SIZE + 1514)]);
      const cut = Uint8Array.of(0, 0, 0, 100, ...new Uint8Array(100).fill(0x33));
      writeSync(remote, cut.subarray(0, 40));
      await new Promise((resolve) => setTimeout(resolve, 50));
      const stopping = thread.stop();
      await new Promise((resolve) => setTimeout(resolve, 50));
      writeSync(remote, Uint8Array.of(...cut.subarray(40), 0, 0, 0, 20, ...new Uint8Array(20).fill(0x44)));
      const reports = await stopping;
      expect(reports).toEqual([expect.objectContaining({ name: 'net0', errors: 0, txFrames: frames.length, rxFrames: 1 })]);
      const next = new Uint8Array(NET_HEADER_SIZE + 1514);
      expect(new StreamBackend(local).receive([next], next.length)).toBe(NET_HEADER_SIZE + 20);
      expect([...next.subarray(NET_HEADER_SIZE, NET_HEADER_SIZE + 20)]).toEqual(new Array(20).fill(0x44));
      await thread.terminate();
      thread = null;
    } finally {
      await thread?.terminate();
      closeVirtioWiring(wiring);
      closeFd(local);
      closeFd(remote);
    }
  });
});
