// virtio-console (virtio 1.2, 5.3) with one port and no MULTIPORT, through
// each transport (virtio-mmio and virtio-pci): receiveq0 brings host input, transmitq0 takes
// the guest's output.
import { describe, expect, it } from 'vitest';
import { CONSOLE_CONFIG_SIZE, ConsoleQueue, VirtioConsole, type ConsoleHostIo } from '../src/devices/virtio/console.ts';
import { DeviceType, Feature, featureBit } from '../src/devices/virtio/spec.ts';
import { TRANSPORTS, VirtioTestDriver, type TransportKind } from './helpers/virtio-driver.ts';

const text = (s: string) => new TextEncoder().encode(s);
const string = (b: Uint8Array) => new TextDecoder().decode(b);

/** The host side: what the guest wrote, and input waiting for the guest. */
class HostIo implements ConsoleHostIo {
  output: number[] = [];
  input: number[] = [];
  /** The `max` of each read() call. */
  asked: number[] = [];
  write(bytes: Uint8Array): void {
    this.output.push(...bytes);
  }
  read(max: number): Uint8Array | null {
    this.asked.push(max);
    if (this.input.length === 0) return null;
    return Uint8Array.from(this.input.splice(0, max));
  }
  type(s: string): void {
    this.input.push(...text(s));
  }
  get written(): string {
    return string(Uint8Array.from(this.output));
  }
}

function setupOver(transport: TransportKind, start = true) {
  const io = new HostIo();
  const device = new VirtioConsole({ name: 'console0', io });
  const driver = new VirtioTestDriver(device, { transport });
  if (start) driver.start();
  return { io, device, driver };
}

describe.each(TRANSPORTS)('virtio-console over virtio-%s', (transport) => {
  const setup = (start?: boolean) => setupOver(transport, start);

  it('is a console (ID 3) with receiveq0 and transmitq0, no device features, and a 12-byte configuration of zeros', () => {
    const { driver } = setup(false);
    expect(driver.deviceType()).toBe(DeviceType.CONSOLE);
    expect(driver.offeredFeatures()).toBe(
      featureBit(Feature.VERSION_1) | featureBit(Feature.RING_INDIRECT_DESC) | featureBit(Feature.RING_EVENT_IDX),
    );
    const maxSizes = [0, 1, 2].map((q) => driver.queueMaxSize(q));
    expect(maxSizes[ConsoleQueue.RECEIVE]).toBeGreaterThan(0);
    expect(maxSizes[ConsoleQueue.TRANSMIT]).toBeGreaterThan(0);
    expect(maxSizes[2]).toBe(0);
    // cols, rows (u16), max_nr_ports, emerg_wr (u32)
    expect(CONSOLE_CONFIG_SIZE).toBe(12);
    expect([driver.readConfig(0, 2), driver.readConfig(2, 2), driver.readConfig(4, 4), driver.readConfig(8, 4)]).toEqual([0, 0, 0, 0]);
  });

  describe('transmitq0', () => {
    it('hands the bytes of each buffer to the host, in order; the used length is 0', () => {
      const { io, driver } = setup();
      const tx = driver.queue(ConsoleQueue.TRANSMIT);
      const first = tx.submit([driver.readable(text('hello, '))]);
      const second = tx.submit([driver.readable(text('wor')), driver.readable(text('ld\n'))], { indirect: true });
      expect(io.written).toBe('hello, world\n');
      expect(tx.takeUsed()).toEqual([{ id: first, len: 0 }, { id: second, len: 0 }]);
      expect(driver.interrupts).toBeGreaterThan(0);
      expect(driver.report()).toMatchObject({ bytesOut: 13, errors: 0 });
    });

    it('refuses a transmit buffer the device could write, writing none of it to the host', () => {
      const { io, driver } = setup();
      const tx = driver.queue(ConsoleQueue.TRANSMIT);
      const head = tx.submit([driver.readable(text('secret')), driver.writable(4)]);
      expect(tx.takeUsed()).toEqual([{ id: head, len: 0 }]);
      expect(io.written).toBe('');
      expect([...driver.errorReasons.keys()].join()).toMatch(/4 device-writable bytes/);
    });

    it('refuses a buffer outside guest RAM and goes on with the next', () => {
      const { io, driver } = setup();
      const tx = driver.queue(ConsoleQueue.TRANSMIT);
      tx.submit([{ address: driver.memory.end + 0x1000, length: 16 }]);
      tx.submit([driver.readable(text('ok'))]);
      expect(tx.takeUsed().map((u) => u.len)).toEqual([0, 0]);
      expect(io.written).toBe('ok');
      expect(driver.errors).toBe(1);
      expect([...driver.errorReasons.keys()].join()).toMatch(/outside guest RAM/);
    });
  });

  describe('receiveq0', () => {
    it('fills a posted buffer with host input; the used length is the bytes delivered', () => {
      const { io, device, driver } = setup();
      const rx = driver.queue(ConsoleQueue.RECEIVE);
      const buffer = driver.writable(64, 0xee);
      const head = rx.submit([buffer]);
      expect(rx.takeUsed()).toEqual([]);
      io.type('ls\r');
      device.receiveHostInput();
      expect(rx.takeUsed()).toEqual([{ id: head, len: 3 }]);
      expect(string(driver.bytes(buffer, 3))).toBe('ls\r');
      expect(driver.bytes(buffer)[3]).toBe(0xee);
      // The host is asked for no more than the buffer holds.
      expect(Math.max(...io.asked)).toBe(64);
    });

    it('spreads input over several buffers, and keeps what does not fit until the guest posts more', () => {
      const { io, device, driver } = setup();
      const rx = driver.queue(ConsoleQueue.RECEIVE);
      const a = driver.writable(4);
      const b = driver.writable(2);
      rx.post([a]);
      rx.post([b]);
      rx.notify();
      io.type('abcdefghij');
      device.receiveHostInput();
      expect(rx.takeUsed().map((u) => u.len)).toEqual([4, 2]);
      expect(string(driver.bytes(a)) + string(driver.bytes(b))).toBe('abcdef');
      expect(string(Uint8Array.from(io.input))).toBe('ghij');
      // The guest posts another buffer: the rest arrives without more host input.
      const c = driver.writable(16);
      rx.submit([c]);
      expect(rx.takeUsed()).toEqual([{ id: expect.any(Number), len: 4 }]);
      expect(string(driver.bytes(c, 4))).toBe('ghij');
    });

    it('delivers input that came before the guest had posted any buffer', () => {
      const { io, device, driver } = setup();
      io.type('early');
      device.receiveHostInput();
      const rx = driver.queue(ConsoleQueue.RECEIVE);
      const buffer = driver.writable(32);
      rx.submit([buffer]);
      expect(rx.takeUsed()).toEqual([{ id: expect.any(Number), len: 5 }]);
      expect(string(driver.bytes(buffer, 5))).toBe('early');
    });

    it('returns a receive buffer with device-readable parts unused', () => {
      const { io, device, driver } = setup();
      const rx = driver.queue(ConsoleQueue.RECEIVE);
      const bad = rx.submit([driver.readable([1, 2]), driver.writable(8)]);
      const good = driver.writable(8);
      const goodHead = rx.submit([good]);
      io.type('x');
      device.receiveHostInput();
      expect(rx.takeUsed()).toEqual([{ id: bad, len: 0 }, { id: goodHead, len: 1 }]);
      expect([...driver.errorReasons.keys()].join()).toMatch(/2 device-readable bytes/);
    });

    it('ignores host input until the driver is ready, and after a reset', () => {
      const { io, device, driver } = setup(false);
      io.type('x');
      expect(() => device.receiveHostInput()).not.toThrow();
      driver.start();
      driver.reset();
      expect(() => device.receiveHostInput()).not.toThrow();
      expect(io.input).toEqual([...text('x')]);
    });

    it('a corrupted receive ring found while delivering host input is counted, not thrown; transmit goes on', () => {
      const { io, device, driver } = setup();
      const rx = driver.queue(ConsoleQueue.RECEIVE);
      rx.setAvailableIndex(rx.size + 5);
      io.type('x');
      expect(() => device.receiveHostInput()).not.toThrow();
      expect([...driver.errorReasons.keys()].join()).toMatch(/jumped by/);
      driver.queue(ConsoleQueue.TRANSMIT).submit([driver.readable(text('still here'))]);
      expect(io.written).toBe('still here');
    });
  });
});
