// virtio-net (virtio 1.2, 5.1) through each transport (virtio-mmio and
// virtio-pci), over a real TAP interface in a network namespace of the test's
// own: the device sends an ARP request from guest memory, the namespace's
// kernel answers, and the reply lands in a posted receive buffer.
import { spawnSync } from 'node:child_process';
import { openSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { closeFd, ReadableWaiter } from '../src/kvm/index.ts';
import { NET_HEADER_SIZE, NetFeature, NetQueue, VIRTIO_NET_S_LINK_UP, VirtioNet } from '../src/devices/virtio/net.ts';
import { DeviceType, Feature, featureBit, Status } from '../src/devices/virtio/spec.ts';
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

    describe('malformed frames and headers: dropped and counted, never thrown, and the next good frame goes through', () => {
      /** struct virtio_net_hdr_v1 with the given fields (little-endian), the rest 0. */
      const netHeader = (fields: { flags?: number; gsoType?: number; hdrLen?: number; gsoSize?: number; csumStart?: number; csumOffset?: number; numBuffers?: number } = {}) => {
        const bytes = new Uint8Array(NET_HEADER_SIZE);
        const view = new DataView(bytes.buffer);
        view.setUint8(0, fields.flags ?? 0);
        view.setUint8(1, fields.gsoType ?? 0);
        view.setUint16(2, fields.hdrLen ?? 0, true);
        view.setUint16(4, fields.gsoSize ?? 0, true);
        view.setUint16(6, fields.csumStart ?? 0, true);
        view.setUint16(8, fields.csumOffset ?? 0, true);
        view.setUint16(10, fields.numBuffers ?? 0, true);
        return bytes;
      };
      const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;

      /** The guest sends an ARP request and gets the namespace's reply: the device works. */
      function expectArpExchange(context: ReturnType<typeof setup>, tap: AddressedTap, header = netHeader()): void {
        const { device, driver, rx, tx } = context;
        const buffer = driver.writable(RX_BUFFER, 0xff);
        const head = rx.submit([buffer]);
        const framesBefore = device.counts.txFrames;
        tx.submit([driver.readable(header), driver.readable(arpRequest(MAC, tap.guestIp, tap.hostIp))]);
        expect(device.counts.txFrames).toBe(framesBefore + 1);
        let used: { id: number; len: number } | undefined;
        pump(device, () => (used = rx.takeUsed().find((u) => u.id === head)) !== undefined);
        expect(used?.len).toBe(NET_HEADER_SIZE + ARP_FRAME_SIZE);
        const bytes = driver.bytes(buffer, used!.len);
        expect(parseArp(bytes.subarray(NET_HEADER_SIZE))).toMatchObject({ operation: ARP_REPLY, senderIp: tap.hostIp, targetIp: tap.guestIp });
        // The device's header: no offloads, and num_buffers 1 whatever the buffer held before (0xffff here).
        expect([...bytes.subarray(0, NET_HEADER_SIZE)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
      }

      const transmitCases: [string, (d: VirtioTestDriver) => DriverBuffer[], RegExp][] = [
        ['a header shorter than 12 bytes', (d) => [d.readable(new Uint8Array(10))], /10 bytes, shorter than the header/],
        ['a header and no frame (a zero-length frame)', (d) => [d.readable(netHeader())], /writing to the TAP device: EINVAL/],
        ['a frame longer than 64 KiB plus its Ethernet header', (d) => [d.readable(netHeader()), d.readable(new Uint8Array(65536 + 14 + 1))], /a frame of 65551 bytes/],
        ['gso_type garbage', (d) => [d.readable(netHeader({ gsoType: 0x55, gsoSize: 1000, hdrLen: 54 })), d.readable(new Uint8Array(60))], /writing to the TAP device: EINVAL/],
        ['NEEDS_CSUM with the checksum past the frame', (d) => [d.readable(netHeader({ flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, csumStart: 4000, csumOffset: 16 })), d.readable(new Uint8Array(60))], /writing to the TAP device: EINVAL/],
        ['a transmit chain the device can only write', (d) => [d.writable(NET_HEADER_SIZE + 60)], /72 device-writable bytes/],
      ];
      for (const [what, chain, reason] of transmitCases) {
        it(`transmit: ${what}`, () => {
          const tap = addressedTap();
          const context = setup(tap.fd);
          const { driver, tx, device } = context;
          const head = tx.submit(chain(driver));
          expect(tx.takeUsed()).toEqual([{ id: head, len: 0 }]);
          expect(reasons(driver)).toMatch(reason);
          expect(driver.errors).toBe(1);
          expect(device.counts.txFrames).toBe(0);
          expect(driver.status & Status.DEVICE_NEEDS_RESET).toBe(0);
          expectArpExchange(context, tap);
        });
      }

      it('transmit: a frame of 65536 bytes, over the largest IP packet, is the TAP\'s to take or refuse', () => {
        const tap = addressedTap();
        const context = setup(tap.fd);
        const { driver, tx, device } = context;
        const head = tx.submit([driver.readable(netHeader()), driver.readable(new Uint8Array(65536).fill(0xee))]);
        expect(tx.takeUsed()).toEqual([{ id: head, len: 0 }]);
        expect(device.counts.txFrames + device.counts.txErrors).toBe(1);
        expectArpExchange(context, tap);
      });

      it('transmit: num_buffers nonsense in the guest\'s header is ignored', () => {
        const tap = addressedTap();
        expectArpExchange(setup(tap.fd), tap, netHeader({ numBuffers: 0xffff }));
      });

      it('receive: a frame from the TAP larger than the guest\'s buffer is dropped without writing past the buffer; the buffer takes the next frame', () => {
        const tap = addressedTap();
        const context = setup(tap.fd);
        const { device, driver, rx } = context;
        const small = driver.writable(NET_HEADER_SIZE + 200, 0xff);
        const guard = driver.writable(4096, 0xa5);
        const head = rx.submit([small]);
        // A 1442-byte frame from the namespace's kernel: a UDP datagram to the guest's address, its MAC given so no ARP is needed.
        ns.ip('neigh', 'replace', tap.guestIp.join('.'), 'lladdr', [...MAC].map((b) => b.toString(16).padStart(2, '0')).join(':'), 'dev', tap.name);
        const [file, args] = ns.wrap([process.execPath, '-e', `
          const s = require('node:dgram').createSocket('udp4');
          s.send(Buffer.alloc(1400, 0x42), 9, '${tap.guestIp.join('.')}', (e) => { if (e) throw e; s.close(); });`]);
        expect(spawnSync(file, args, { encoding: 'utf8', timeout: 30_000 }).status).toBe(0);
        pump(device, () => device.counts.rxTruncated > 0);
        expect(device.counts.rxTruncated).toBe(1);
        expect(reasons(driver)).toMatch(/a frame longer than its receive buffer, dropped/);
        expect(rx.takeUsed()).toEqual([]);
        expect([...new Set(driver.bytes(guard))]).toEqual([0xa5]);
        // The same buffer, still held, takes the ARP reply that follows.
        const { tx } = context;
        tx.submit([driver.readable(netHeader()), driver.readable(arpRequest(MAC, tap.guestIp, tap.hostIp))]);
        pump(device, () => device.counts.rxFrames > 0);
        expect(rx.takeUsed()).toEqual([{ id: head, len: NET_HEADER_SIZE + ARP_FRAME_SIZE }]);
        expect(parseArp(driver.bytes(small).subarray(NET_HEADER_SIZE))).toMatchObject({ operation: ARP_REPLY });
        expect(driver.status & Status.DEVICE_NEEDS_RESET).toBe(0);
      });
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
