// virtio-rng (virtio 1.2, 5.4) through each transport (virtio-mmio and
// virtio-pci) and a split virtqueue laid out by the test driver.
import { describe, expect, it } from 'vitest';
import { GuestMemory } from '../src/memory/index.ts';
import { RNG_MAX_REQUEST_BYTES, VirtioRng } from '../src/devices/virtio/rng.ts';
import { DeviceType, Feature, featureBit, InterruptCause } from '../src/devices/virtio/spec.ts';
import { TRANSPORTS, VirtioTestDriver } from './helpers/virtio-driver.ts';


/** True when the bytes look random: not all one value, and not what was there before. */
function looksRandom(bytes: Uint8Array, fill: number): boolean {
  return new Set(bytes).size > 1 && bytes.some((b) => b !== fill);
}

describe.each(TRANSPORTS)('virtio-rng over virtio-%s', (transport) => {
  const rng = (options: ConstructorParameters<typeof VirtioTestDriver>[1] = {}): VirtioTestDriver =>
    new VirtioTestDriver(new VirtioRng({ name: 'rng0' }), { transport, ...options }).start();

  it('is an entropy device (ID 4) with one queue, no device features and no configuration', () => {
    const driver = new VirtioTestDriver(new VirtioRng({ name: 'rng0' }), { transport });
    expect(driver.deviceType()).toBe(DeviceType.ENTROPY);
    expect(driver.offeredFeatures()).toBe(
      featureBit(Feature.VERSION_1) | featureBit(Feature.RING_INDIRECT_DESC) | featureBit(Feature.RING_EVENT_IDX),
    );
    expect(driver.queueMaxSize(0)).toBeGreaterThan(0);
    expect(driver.queueMaxSize(1)).toBe(0);
    expect(driver.readConfig(0, 4)).toBe(0);
  });

  it('fills a device-writable buffer with random bytes; the used length is the bytes written', () => {
    const driver = rng();
    const requestq = driver.queue(0);
    const first = driver.writable(256);
    const second = driver.writable(256);
    const head = requestq.submit([first]);
    expect(requestq.takeUsed()).toEqual([{ id: head, len: 256 }]);
    // takeUsed moved used_event on (EVENT_IDX), so the next buffer interrupts again.
    const secondHead = requestq.submit([second]);
    expect(requestq.takeUsed()).toEqual([{ id: secondHead, len: 256 }]);
    expect(looksRandom(driver.bytes(first), 0)).toBe(true);
    expect(driver.bytes(first)).not.toEqual(driver.bytes(second));
    expect(driver.interrupts).toBe(2);
    expect(driver.interruptStatus() & InterruptCause.USED_BUFFER).toBeTruthy();
    expect(driver.errors).toBe(0);
  });

  it('fills every buffer of a chain, direct or through an indirect table', () => {
    for (const indirect of [false, true]) {
      const driver = rng();
      const buffers = [driver.writable(7, 0x55), driver.writable(4096, 0x55), driver.writable(1, 0x55)];
      driver.queue(0).submit(buffers, { indirect });
      expect(driver.queue(0).takeUsed()).toEqual([{ id: 0, len: 7 + 4096 + 1 }]);
      expect(looksRandom(driver.bytes(buffers[1]!), 0x55)).toBe(true);
      expect(driver.report().bytes).toBe(4104);
    }
  });

  it('writes into guest memory across host chunks (a buffer spanning two RAM ranges)', () => {
    const memory = GuestMemory.ofArrayBuffers([{ guestAddress: 0, size: 1 << 20 }, { guestAddress: 1 << 20, size: 1 << 20 }]);
    const driver = rng({ memory });
    const buffer = { address: (1 << 20) - 64, length: 128, write: true };
    driver.queue(0).submit([buffer]);
    expect(driver.queue(0).takeUsed()).toEqual([{ id: 0, len: 128 }]);
    expect(looksRandom(driver.bytes(buffer, 64), 0)).toBe(true);
    expect(looksRandom(memory.read(1 << 20, 64), 0)).toBe(true);
  });

  it(`gives at most ${RNG_MAX_REQUEST_BYTES / 1024} KiB per request and leaves the rest of the buffer alone`, () => {
    const driver = rng();
    const big = driver.writable(RNG_MAX_REQUEST_BYTES + 4096, 0xaa);
    driver.queue(0).submit([big]);
    expect(driver.queue(0).takeUsed()).toEqual([{ id: 0, len: RNG_MAX_REQUEST_BYTES }]);
    const bytes = driver.bytes(big);
    expect(looksRandom(bytes.subarray(RNG_MAX_REQUEST_BYTES - 4096, RNG_MAX_REQUEST_BYTES), 0xaa)).toBe(true);
    expect(bytes.subarray(RNG_MAX_REQUEST_BYTES).every((b) => b === 0xaa)).toBe(true);
  });

  it('serves buffers the driver posted before DRIVER_OK once it sets DRIVER_OK', () => {
    const driver = new VirtioTestDriver(new VirtioRng({ name: 'rng0' }), { transport });
    driver.negotiate();
    const [requestq] = driver.setupQueues();
    requestq!.post([driver.writable(32)]);
    expect(requestq!.takeUsed()).toEqual([]);
    driver.driverOk();
    expect(requestq!.takeUsed()).toEqual([{ id: 0, len: 32 }]);
  });

  describe('a hostile driver gets its request back unused, and the queue goes on', () => {
    const cases: [string, (d: VirtioTestDriver) => number, RegExp][] = [
      ['a device-readable buffer only', (d) => d.queue(0).submit([d.readable([1, 2, 3, 4])]), /4 device-readable bytes/],
      ['a readable buffer before a writable one', (d) => d.queue(0).submit([d.readable([1]), d.writable(16, 0x77)]), /device-readable/],
      ['a buffer outside guest RAM', (d) => d.queue(0).submit([{ address: 0xdead_0000, length: 64, write: true }]), /outside guest RAM/],
      ['a buffer that runs off the end of RAM', (d) => d.queue(0).submit([{ address: d.memory.end - 8, length: 64, write: true }]), /outside guest RAM/],
      ['a chain that loops', (d) => {
        const q = d.queue(0);
        const [a, b] = q.reserve(2) as [number, number];
        const buffer = d.writable(16);
        q.descriptor(a, buffer.address, 16, 2 | 1, b);
        q.descriptor(b, buffer.address, 16, 2 | 1, a);
        q.offer(a);
        q.notify();
        return a;
      }, /loops/],
    ];
    for (const [what, post, reason] of cases) {
      it(what, () => {
        const driver = rng();
        const head = post(driver);
        expect(driver.queue(0).takeUsed()).toEqual([{ id: head, len: 0 }]);
        expect(driver.errors).toBe(1);
        expect([...driver.errorReasons.keys()].join()).toMatch(reason);
        // Nothing was written where the device was not allowed to write.
        expect(driver.report().bytes).toBe(0);
        const good = driver.writable(8);
        driver.queue(0).submit([good]);
        expect(driver.queue(0).takeUsed()).toEqual([{ id: expect.any(Number), len: 8 }]);
      });
    }
  });

  it('stops using its queue when the driver resets the device', () => {
    const driver = rng();
    const requestq = driver.queue(0);
    requestq.post([driver.writable(8, 0x11)]);
    driver.reset();
    expect(driver.status).toBe(0);
    driver.notify(0);
    expect(requestq.usedIndex()).toBe(0);
  });
});
