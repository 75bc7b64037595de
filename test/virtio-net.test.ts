// virtio-net (virtio 1.2, 5.1) through each transport (virtio-mmio and
// virtio-pci), over a real TAP interface in a network namespace of the test's
// own: the device sends an ARP request from guest memory, the namespace's
// kernel answers, and the reply lands in a posted receive buffer.
import { openSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { closeFd, ReadableWaiter } from '../src/kvm/index.ts';
import { NET_HEADER_SIZE, NetFeature, NetQueue, VIRTIO_NET_S_LINK_UP, VirtioNet } from '../src/devices/virtio/net.ts';
import { DeviceType, Feature, featureBit } from '../src/devices/virtio/spec.ts';
import { TRANSPORTS, VirtioTestDriver, type DriverBuffer, type TransportKind } from './helpers/virtio-driver.ts';
import { ARP_FRAME_SIZE, ARP_REPLY, arpRequest, parseArp } from './helpers/arp-frames.ts';
import { netnsUnavailable, TestNetns, type AddressedTap } from './helpers/netns.ts';

const MAC = Uint8Array.of(0x52, 0x54, 0x00, 0x12, 0x34, 0x56);
/** A receive buffer as Linux posts it without MRG_RXBUF: header and a full Ethernet frame. */
const RX_BUFFER = NET_HEADER_SIZE + 1514;

const fds: number[] = [];
afterEach(() => {
  for (const fd of fds.splice(0)) closeFd(fd);
});

function setupOver(transport: TransportKind, tapFd: number) {
  const device = new VirtioNet({ name: 'net0', tapFd, mac: MAC });
  const driver = new VirtioTestDriver(device, { transport }).start();
  return { device, driver, rx: driver.queue(NetQueue.RECEIVE), tx: driver.queue(NetQueue.TRANSMIT) };
}

/** Lets the device take frames from the TAP, as the I/O thread's poll loop does, until `done` or a timeout. */
function pump(device: VirtioNet, done: () => boolean, timeoutMs = 5000): void {
  const waiter = new ReadableWaiter();
  const deadline = Date.now() + timeoutMs;
  while (!done() && Date.now() < deadline && device.wantsPoll()) {
    for (const fd of waiter.wait(device.pollFds, 100)) device.onReadable(fd);
  }
}

/** /dev/null as a stand-in TAP for the transmit checks that need no answer: it takes every write. */
function devNull(): number {
  const fd = openSync('/dev/null', 'r+');
  fds.push(fd);
  return fd;
}

function reasons(driver: VirtioTestDriver): string {
  return [...driver.errorReasons.keys()].join('\n');
}

describe.each(TRANSPORTS)('virtio-net over virtio-%s', (transport) => {
  const setup = (tapFd: number) => setupOver(transport, tapFd);

  it('is a network device (ID 1) offering MAC and STATUS, with the MAC and LINK_UP in its configuration', () => {
    const fd = devNull();
    const device = new VirtioNet({ name: 'net0', tapFd: fd, mac: MAC });
    const driver = new VirtioTestDriver(device, { transport });
    expect(driver.deviceType()).toBe(DeviceType.NET);
    expect(driver.offeredFeatures()).toBe(
      featureBit(NetFeature.MAC) | featureBit(NetFeature.STATUS)
        | featureBit(Feature.VERSION_1) | featureBit(Feature.RING_INDIRECT_DESC) | featureBit(Feature.RING_EVENT_IDX),
    );
    // struct virtio_net_config: mac[6], then le16 status.
    expect([0, 1, 2, 3, 4, 5].map((i) => driver.readConfig(i, 1))).toEqual([...MAC]);
    expect(driver.readConfig(6, 2)).toBe(VIRTIO_NET_S_LINK_UP);
    expect(device.pollFds).toEqual([fd]);
  });

  it('has receiveq (0) and transmitq (1) and no control queue', () => {
    const driver = new VirtioTestDriver(new VirtioNet({ name: 'net0', tapFd: devNull(), mac: MAC }), { transport });
    const maxSizes = [0, 1, 2].map((q) => driver.queueMaxSize(q));
    expect(maxSizes[NetQueue.RECEIVE]).toBeGreaterThan(0);
    expect(maxSizes[NetQueue.TRANSMIT]).toBeGreaterThan(0);
    expect(maxSizes[2]).toBe(0);
  });

  it('refuses a MAC address that is not 6 bytes', () => {
    expect(() => new VirtioNet({ name: 'net0', tapFd: devNull(), mac: Uint8Array.of(1, 2, 3) })).toThrow(/6 bytes, not 3/);
  });

  describe('transmitq: a hostile driver loses its frame, not the queue', () => {
    const header = () => new Uint8Array(NET_HEADER_SIZE);
    const cases: [string, (d: VirtioTestDriver) => DriverBuffer[], RegExp][] = [
      ['a device-writable buffer in a transmit chain', (d) => [d.readable(header()), d.writable(64)], /64 device-writable bytes/],
      ['a chain shorter than the virtio-net header', (d) => [d.readable(new Uint8Array(8))], /8 bytes, shorter than the header/],
      ['a buffer outside guest RAM', (d) => [d.readable(header()), { address: 2 ** 40, length: 60 }], /outside guest RAM/],
      ['a frame over 64 KiB', (d) => [d.readable(header()), d.readable(new Uint8Array(70_000))], /a frame of 70000 bytes/],
    ];
    for (const [what, chain, reason] of cases) {
      it(what, () => {
        const { driver, tx, device } = setup(devNull());
        const head = tx.submit(chain(driver));
        expect(tx.takeUsed()).toEqual([{ id: head, len: 0 }]);
        expect(reasons(driver)).toMatch(reason);
        expect(device.counts.txFrames).toBe(0);
        const good = tx.submit([driver.readable(header()), driver.readable(new Uint8Array(60))]);
        expect(tx.takeUsed()).toEqual([{ id: good, len: 0 }]);
        expect(device.counts).toMatchObject({ txFrames: 1, txBytes: 60 });
      });
    }
  });

  describe.skipIf(netnsUnavailable !== null)('over a TAP interface', () => {
    // A namespace per test: its TAP and address go with it.
    let ns: TestNetns;
    beforeEach(() => {
      ns = TestNetns.create();
    });
    afterEach(() => {
      for (const fd of fds.splice(0)) closeFd(fd);
      ns.remove();
    });
    const downTap = () => {
      const tap = ns.openTap();
      fds.push(tap.fd);
      return tap;
    };
    const addressedTap = (): AddressedTap => {
      const tap = ns.openAddressedTap();
      fds.push(tap.fd);
      return tap;
    };

    it('watches the TAP only while the guest has a receive buffer posted', () => {
      const tap = downTap();
      const device = new VirtioNet({ name: 'net0', tapFd: tap.fd, mac: MAC });
      const driver = new VirtioTestDriver(device, { transport });
      expect(device.wantsPoll()).toBe(false);
      driver.start();
      expect(device.wantsPoll()).toBe(false);
      driver.queue(NetQueue.RECEIVE).submit([driver.writable(RX_BUFFER)]);
      // Nothing to read (EAGAIN): the buffer waits for a frame.
      expect(device.wantsPoll()).toBe(true);
      expect(driver.queue(NetQueue.RECEIVE).takeUsed()).toEqual([]);
      driver.reset();
      expect(device.wantsPoll()).toBe(false);
    });

    it('a frame to a TAP that is down is dropped and counted (EIO)', () => {
      const { driver, tx, device } = setup(downTap().fd);
      const head = tx.submit([driver.readable(new Uint8Array(NET_HEADER_SIZE + 60))]);
      expect(tx.takeUsed()).toEqual([{ id: head, len: 0 }]);
      expect(device.counts.txErrors).toBe(1);
      expect(reasons(driver)).toMatch(/writing to the TAP device: EIO/);
    });

    describe('receiveq: a hostile driver gets its buffer back unused', () => {
      const cases: [string, (d: VirtioTestDriver) => DriverBuffer[], RegExp][] = [
        ['a device-readable buffer', (d) => [d.readable(new Uint8Array(RX_BUFFER))], /device-readable/],
        ['a readable buffer before writable ones', (d) => [d.readable(new Uint8Array(4)), d.writable(RX_BUFFER)], /4 device-readable bytes/],
        ['a buffer too short for the header', (d) => [d.writable(NET_HEADER_SIZE - 1)], /11 bytes, shorter than the header/],
        ['a buffer outside guest RAM', (d) => [{ address: d.memory.end, length: RX_BUFFER, write: true }], /outside guest RAM/],
      ];
      for (const [what, chain, reason] of cases) {
        it(what, () => {
          const { driver, rx, device } = setup(downTap().fd);
          const head = rx.submit(chain(driver));
          expect(rx.takeUsed()).toEqual([{ id: head, len: 0 }]);
          expect(reasons(driver)).toMatch(reason);
          expect(device.wantsPoll()).toBe(false);
          // The next good buffer is taken and waits for a frame.
          rx.submit([driver.writable(RX_BUFFER)]);
          expect(device.wantsPoll()).toBe(true);
        });
      }
    });

    it('sends an ARP request from guest memory and receives the namespace\'s reply into a posted buffer', () => {
      const tap = addressedTap();
      const { device, driver, rx, tx } = setup(tap.fd);

      // Receive buffers in the layouts a driver may use: one descriptor, header apart from the data, an indirect table.
      const posted = new Map<number, DriverBuffer[]>();
      const postReceive = (buffers: DriverBuffer[], indirect = false) => posted.set(rx.post(buffers, { indirect }), buffers);
      postReceive([driver.writable(RX_BUFFER, 0xcc)]);
      postReceive([driver.writable(NET_HEADER_SIZE, 0xcc), driver.writable(RX_BUFFER - NET_HEADER_SIZE, 0xcc)]);
      postReceive([driver.writable(NET_HEADER_SIZE, 0xcc), driver.writable(RX_BUFFER - NET_HEADER_SIZE, 0xcc)], true);
      postReceive([driver.writable(RX_BUFFER, 0xcc)], true);
      rx.notify();
      expect(device.wantsPoll()).toBe(true);

      // The request: header and frame in separate descriptors, gathered into one writev.
      const request = arpRequest(MAC, tap.guestIp, tap.hostIp);
      const sent = tx.submit([driver.readable(new Uint8Array(NET_HEADER_SIZE)), driver.readable(request.subarray(0, 14)), driver.readable(request.subarray(14))]);
      expect(tx.takeUsed()).toEqual([{ id: sent, len: 0 }]);
      expect(device.counts).toMatchObject({ txFrames: 1, txBytes: ARP_FRAME_SIZE });

      const interruptsBefore = driver.interrupts;
      const received: { len: number; bytes: Uint8Array }[] = [];
      let reply: ReturnType<typeof parseArp> = null;
      pump(device, () => {
        for (const used of rx.takeUsed()) {
          const buffers = posted.get(used.id)!;
          const bytes = Uint8Array.from(buffers.flatMap((b) => [...driver.bytes(b)])).subarray(0, used.len);
          received.push({ len: used.len, bytes });
          const arp = parseArp(bytes.subarray(NET_HEADER_SIZE));
          if (arp?.operation === ARP_REPLY) reply = arp;
        }
        return reply !== null;
      });

      expect(reply).toEqual({
        destination: [...MAC], operation: ARP_REPLY, senderMac: expect.any(Array), senderIp: tap.hostIp, targetMac: [...MAC], targetIp: tap.guestIp,
      });
      const frame = received.find((r) => parseArp(r.bytes.subarray(NET_HEADER_SIZE))?.operation === ARP_REPLY)!;
      // Used length: the header and the 42-byte reply. Header: no offloads, num_buffers 1.
      expect(frame.len).toBe(NET_HEADER_SIZE + ARP_FRAME_SIZE);
      const header = new DataView(frame.bytes.buffer, frame.bytes.byteOffset, NET_HEADER_SIZE);
      expect({ flags: header.getUint8(0), gsoType: header.getUint8(1), numBuffers: header.getUint16(10, true) }).toEqual({ flags: 0, gsoType: 0, numBuffers: 1 });
      expect(driver.interrupts).toBeGreaterThan(interruptsBefore);
      expect(device.counts.rxFrames).toBe(received.length);
      expect(driver.errors).toBe(0);
    });

    it('drops and counts a frame longer than the receive buffer; the buffer waits for the next frame', () => {
      const tap = addressedTap();
      const { device, driver, rx, tx } = setup(tap.fd);
      const small = driver.writable(NET_HEADER_SIZE + 20);
      rx.submit([small]);
      tx.submit([driver.readable(new Uint8Array(NET_HEADER_SIZE)), driver.readable(arpRequest(MAC, tap.guestIp, tap.hostIp))]);
      pump(device, () => device.counts.rxTruncated > 0);
      expect(device.counts.rxTruncated).toBeGreaterThan(0);
      expect(reasons(driver)).toMatch(/a frame longer than its receive buffer, dropped/);
      expect(rx.takeUsed()).toEqual([]);
      expect(device.wantsPoll()).toBe(true);
    });
  });

  it('a corrupted receive ring found while reading the TAP is counted, not thrown, and the TAP is no longer watched', () => {
    const { device, driver, rx } = setup(devNull());
    rx.setAvailableIndex(rx.size + 3);
    expect(() => device.onReadable(device.pollFds[0]!)).not.toThrow();
    expect(reasons(driver)).toMatch(/jumped by/);
    expect(device.wantsPoll()).toBe(false);
  });
});
