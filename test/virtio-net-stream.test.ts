// virtio-net over a stream socket (net-stream.ts), passt's protocol: each
// frame after its length, 32 bits big-endian, no virtio-net header. The test
// holds the other end of a socketpair and plays passt: frames both ways, a
// frame split across reads, one longer than the guest's buffer, a length no
// frame has, the peer going away, and a peer that stops reading.
import { readSync, writeSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { closeFd, createStreamSocketPair, ReadableWaiter } from '../src/kvm/index.ts';
import { NET_HEADER_SIZE, NetQueue, VirtioNet } from '../src/devices/virtio/net.ts';
import { MAX_STREAM_FRAME, StreamBackend } from '../src/devices/virtio/net-stream.ts';
import { VirtioTestDriver, type DriverBuffer } from './helpers/virtio-driver.ts';

const MAC = Uint8Array.of(0x52, 0x54, 0x00, 0x12, 0x34, 0x56);
const RX_BUFFER = NET_HEADER_SIZE + 1514;

const fds: number[] = [];
afterEach(() => {
  for (const fd of fds.splice(0)) closeFd(fd);
});

/** An Ethernet frame of `length` bytes whose bytes count up from `seed`. */
function frame(length: number, seed = 0): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (seed + i) & 0xff);
}

function lengthPrefixed(...frames: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(frames.reduce((sum, f) => sum + 4 + f.length, 0));
  let at = 0;
  for (const f of frames) {
    new DataView(out.buffer).setUint32(at, f.length, false);
    out.set(f, at + 4);
    at += 4 + f.length;
  }
  return out;
}

function setup(queueSize = 16) {
  const { local, remote } = createStreamSocketPair();
  fds.push(local, remote);
  const device = new VirtioNet({ name: 'net0', backend: new StreamBackend(local, 'the test peer'), mac: MAC });
  const driver = new VirtioTestDriver(device, { transport: 'mmio', queueSize }).start();
  return { device, driver, peer: remote, rx: driver.queue(NetQueue.RECEIVE), tx: driver.queue(NetQueue.TRANSMIT) };
}

/** Runs the device's side of the I/O thread's poll loop once (readable, then writable), waiting at most `timeoutMs`. */
function pollOnce(device: VirtioNet, timeoutMs = 1000): void {
  const reads = device.wantsPoll() ? device.pollFds : [];
  const writes = device.wantsWritable() ? device.pollFds : [];
  if (!reads.length && !writes.length) return;
  const ready = new ReadableWaiter().waitReady(reads, writes, timeoutMs);
  for (const fd of ready.readable) device.onReadable(fd);
  for (const fd of ready.writable) device.onWritable(fd);
}

/** Everything the peer can read within `timeoutMs` of quiet. */
function peerReads(peer: number, timeoutMs = 200): Uint8Array {
  const chunks: Uint8Array[] = [];
  const waiter = new ReadableWaiter();
  for (;;) {
    if (waiter.wait([peer], timeoutMs).length === 0) break;
    const buffer = new Uint8Array(1 << 16);
    const count = readSync(peer, buffer);
    if (count === 0) break;
    chunks.push(buffer.subarray(0, count));
  }
  return Uint8Array.from(chunks.flatMap((c) => [...c]));
}

function bytesOf(driver: VirtioTestDriver, buffer: DriverBuffer, length: number): Uint8Array {
  return driver.bytes(buffer).subarray(0, length);
}

function reasons(driver: VirtioTestDriver): string {
  return [...driver.errorReasons.keys()].join('\n');
}

describe('virtio-net over a length-prefixed stream (passt)', () => {
  it('sends each guest frame as its length (big-endian) and the frame, without the virtio-net header', () => {
    const { driver, tx, peer, device } = setup();
    const first = frame(60, 1);
    const second = frame(1514, 7);
    // A header split across descriptors, and one sharing a descriptor with the frame.
    tx.submit([driver.readable(new Uint8Array(5)), driver.readable(new Uint8Array(7)), driver.readable(first)]);
    tx.submit([driver.readable(Uint8Array.from([...new Uint8Array(NET_HEADER_SIZE), ...second]))]);
    expect(tx.takeUsed().map((u) => u.len)).toEqual([0, 0]);
    expect(peerReads(peer)).toEqual(lengthPrefixed(first, second));
    expect(device.counts).toMatchObject({ txFrames: 2, txBytes: 60 + 1514, txErrors: 0 });
  });

  it('refuses a guest frame shorter than an Ethernet header: it would put the stream out of step', () => {
    const { driver, tx, peer, device } = setup();
    tx.submit([driver.readable(new Uint8Array(NET_HEADER_SIZE + 10))]);
    expect(reasons(driver)).toMatch(/a frame of 10 bytes, shorter than an Ethernet header/);
    expect(device.counts).toMatchObject({ txFrames: 0, txErrors: 1 });
    const next = frame(60);
    tx.submit([driver.readable(Uint8Array.from([...new Uint8Array(NET_HEADER_SIZE), ...next]))]);
    expect(peerReads(peer)).toEqual(lengthPrefixed(next));
  });

  it('delivers frames from the peer into receive buffers, after a zeroed header with num_buffers 1', () => {
    const { driver, rx, peer, device } = setup();
    const buffers = [driver.writable(RX_BUFFER, 0xcc), driver.writable(RX_BUFFER, 0xcc)];
    const heads = buffers.map((b) => rx.submit([b]));
    const frames = [frame(42, 3), frame(1514, 9)];
    writeSync(peer, lengthPrefixed(...frames));
    pollOnce(device);
    const used = rx.takeUsed();
    expect(used).toEqual(heads.map((id, i) => ({ id, len: NET_HEADER_SIZE + frames[i]!.length })));
    used.forEach((u, i) => {
      const bytes = bytesOf(driver, buffers[i]!, u.len);
      expect([...bytes.subarray(0, NET_HEADER_SIZE)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
      expect(bytes.subarray(NET_HEADER_SIZE)).toEqual(frames[i]);
    });
    expect(device.counts).toMatchObject({ rxFrames: 2, rxBytes: 42 + 1514 });
    expect(driver.errors).toBe(0);
  });

  it('puts together a frame the stream splits anywhere, the length included', () => {
    const { driver, rx, peer, device } = setup();
    const buffer = driver.writable(RX_BUFFER);
    const head = rx.submit([buffer]);
    const payload = frame(300, 5);
    const stream = lengthPrefixed(payload);
    for (const [start, end] of [[0, 2], [2, 3], [3, 100], [100, stream.length - 1]] as const) {
      writeSync(peer, stream.subarray(start, end));
      pollOnce(device);
      expect(rx.takeUsed()).toEqual([]);
      expect(device.wantsPoll()).toBe(true);
    }
    writeSync(peer, stream.subarray(stream.length - 1));
    pollOnce(device);
    expect(rx.takeUsed()).toEqual([{ id: head, len: NET_HEADER_SIZE + payload.length }]);
    expect(bytesOf(driver, buffer, NET_HEADER_SIZE + payload.length).subarray(NET_HEADER_SIZE)).toEqual(payload);
  });

  it('drops and counts a frame longer than the receive buffer; the buffer takes the next frame', () => {
    const { driver, rx, peer, device } = setup();
    const buffer = driver.writable(NET_HEADER_SIZE + 100);
    const head = rx.submit([buffer]);
    const next = frame(60, 2);
    writeSync(peer, lengthPrefixed(frame(101), next));
    pollOnce(device);
    expect(device.counts.rxTruncated).toBe(1);
    expect(reasons(driver)).toMatch(/a frame longer than its receive buffer, dropped/);
    expect(rx.takeUsed()).toEqual([{ id: head, len: NET_HEADER_SIZE + 60 }]);
    expect(bytesOf(driver, buffer, NET_HEADER_SIZE + 60).subarray(NET_HEADER_SIZE)).toEqual(next);
  });

  describe('a stream out of step stops the backend, reported once; the device stops watching it', () => {
    const cases: [string, (peer: number) => void, RegExp][] = [
      ['a length shorter than an Ethernet header', (peer) => writeSync(peer, Uint8Array.of(0, 0, 0, 3, 1, 2, 3)), /the test peer sent a frame length of 3 bytes/],
      ['a length over 64 KiB', (peer) => writeSync(peer, Uint8Array.of(0xff, 0xff, 0xff, 0xff)), new RegExp(`a frame length of 4294967295 bytes \\(14 to ${MAX_STREAM_FRAME}\\)`)],
      ['the peer closing the connection', (peer) => { closeFd(fds.splice(fds.indexOf(peer), 1)[0]!); }, /the test peer closed the connection/],
    ];
    for (const [what, act, reason] of cases) {
      it(what, () => {
        const { driver, rx, tx, peer, device } = setup();
        rx.submit([driver.writable(RX_BUFFER)]);
        act(peer);
        pollOnce(device);
        expect(reasons(driver)).toMatch(reason);
        expect(driver.errors).toBe(1);
        expect(device.wantsPoll()).toBe(false);
        expect(rx.takeUsed()).toEqual([]);
        // What the guest sends now is lost and counted, without a message per frame.
        const sent = tx.submit([driver.readable(new Uint8Array(NET_HEADER_SIZE + 60))]);
        expect(tx.takeUsed()).toEqual([{ id: sent, len: 0 }]);
        expect(device.counts.txErrors).toBe(1);
        expect(driver.errors).toBe(1);
      });
    }
  });

  it('a peer that stops reading backs up the transmit ring; every frame arrives, in order, once it reads again', () => {
    const { driver, tx, peer, device } = setup(128);
    const frames = Array.from({ length: 64 }, (_, i) => frame(16_000, i));
    const heads = frames.map((f) => tx.submit([driver.readable(new Uint8Array(NET_HEADER_SIZE)), driver.readable(f)]));
    const doneEarly = tx.takeUsed().length;
    // A socketpair buffers a few hundred KiB at most: 1 MiB of frames cannot all go.
    expect(doneEarly).toBeLessThan(frames.length);
    expect(device.wantsWritable()).toBe(true);

    const expected = lengthPrefixed(...frames);
    const received = new Uint8Array(expected.length);
    let at = 0;
    const chunk = new Uint8Array(1 << 16);
    const waiter = new ReadableWaiter();
    let done = doneEarly;
    for (let rounds = 0; at < expected.length && rounds < 10_000; rounds++) {
      if (waiter.wait([peer], 1000).length === 0) break;
      const count = readSync(peer, chunk);
      received.set(chunk.subarray(0, count), at);
      at += count;
      pollOnce(device, 0);
      done += tx.takeUsed().length;
    }
    expect(at).toBe(expected.length);
    // Buffer.equals: toEqual walks a megabyte element by element.
    expect(Buffer.from(received).equals(expected)).toBe(true);
    expect(done).toBe(heads.length);
    expect(device.wantsWritable()).toBe(false);
    expect(device.counts).toMatchObject({ txFrames: frames.length, txErrors: 0 });
  });

  describe('a device that goes away leaves the stream between frames (close: the next device, after a reset, starts in step)', () => {
    /** A second device on the same socket, as the machine after a reset wires it. */
    function nextDevice(local: number) {
      const device = new VirtioNet({ name: 'net0', backend: new StreamBackend(local, 'the test peer'), mac: MAC });
      const driver = new VirtioTestDriver(device, { transport: 'mmio' }).start();
      return { device, driver, rx: driver.queue(NetQueue.RECEIVE), tx: driver.queue(NetQueue.TRANSMIT) };
    }

    it('reads the rest of a half-read frame and drops it; the next device gets the next frame whole', () => {
      const { driver, rx, peer, device } = setup();
      rx.submit([driver.writable(RX_BUFFER)]);
      const dropped = lengthPrefixed(frame(600, 3));
      writeSync(peer, dropped.subarray(0, 300));
      pollOnce(device);
      expect(rx.takeUsed()).toEqual([]);
      const next = frame(80, 9);
      writeSync(peer, Uint8Array.from([...dropped.subarray(300), ...lengthPrefixed(next)]));
      device.close();
      expect(reasons(driver)).toBe('');

      const after = nextDevice(fds[fds.length - 2]!);
      const buffer = after.driver.writable(RX_BUFFER);
      const head = after.rx.submit([buffer]);
      pollOnce(after.device);
      expect(after.rx.takeUsed()).toEqual([{ id: head, len: NET_HEADER_SIZE + 80 }]);
      expect(bytesOf(after.driver, buffer, NET_HEADER_SIZE + 80).subarray(NET_HEADER_SIZE)).toEqual(next);
    });

    it('finishes a half-sent frame once the peer reads; the next device\'s frames follow it in step', () => {
      const { driver, tx, peer, device } = setup(128);
      const frames = Array.from({ length: 64 }, (_, i) => frame(16_000, i));
      for (const f of frames) tx.submit([driver.readable(new Uint8Array(NET_HEADER_SIZE)), driver.readable(f)]);
      expect(device.wantsWritable()).toBe(true);
      // The peer reads a little: room for what is held back, not for the frames still in the ring.
      const taken = readSync(peer, new Uint8Array(32_768));
      device.close();
      expect(device.wantsWritable()).toBe(false);
      const sentWhole = tx.takeUsed().length;

      const after = nextDevice(fds[fds.length - 2]!);
      const last = frame(70, 5);
      after.tx.submit([after.driver.readable(new Uint8Array(NET_HEADER_SIZE)), after.driver.readable(last)]);
      const rest = peerReads(peer);
      const expected = lengthPrefixed(...frames.slice(0, sentWhole), last);
      expect(taken + rest.length).toBe(expected.length);
      expect(Buffer.from(rest).equals(expected.subarray(taken))).toBe(true);
    });

    it('a peer that never finishes its frame is a failure after a second\'s wait, counted as the device\'s error', () => {
      const { driver, rx, peer, device } = setup();
      rx.submit([driver.writable(RX_BUFFER)]);
      writeSync(peer, lengthPrefixed(frame(600)).subarray(0, 100));
      pollOnce(device);
      device.close();
      expect(reasons(driver)).toBe('net0: the test peer left the stream mid-frame for 1000 ms as the device stopped');
    });
  });
});
