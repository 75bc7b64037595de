// The virtio I/O thread, run for real: a driver in this thread (playing the
// guest and the vCPU thread) shares guest RAM and the device's state with it,
// and reaches it only through eventfds, as KVM and the vCPU thread do. Host
// input for the virtio console goes the machine's way: into the input ring,
// then a wakeup of the thread, which hands it to every device that takes host
// input. virtio-net on a stream socket (passt's) shows the thread watching a
// device's socket for writing while the device holds output back.
import { mkdtempSync, openSync, closeSync, readFileSync, readSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConsoleQueue } from '../src/devices/virtio/console.ts';
import { VirtioSharedState } from '../src/devices/virtio/shared-state.ts';
import { NET_HEADER_SIZE, NetQueue } from '../src/devices/virtio/net.ts';
import { closeFd, createEventFd, createStreamSocketPair, ReadableWaiter, signalEventFd } from '../src/kvm/index.ts';
import { HostRam } from '../src/memory/host-ram.ts';
import type { VirtioDeviceConfig } from '../src/machine/config.ts';
import { openVirtioDevice } from '../src/machine/virtio-devices.ts';
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

/** One device planned as wireVirtio plans it (mmio, irqfd), without a VM: the thread then never needs one. */
function wireOne(config: VirtioDeviceConfig): VirtioWiring {
  const info = openVirtioDevice(config, 0, { console: { write: () => {}, read: () => null } }).info;
  const devices = planVirtioDevices([{ config, index: 0, info }], { defaultTransport: 'mmio', createEventFd, useIrqfd: true });
  return { devices, controlFd: createEventFd(), pciBridgeState: null };
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
