// virtio-blk (virtio 1.2, 5.2) through each transport (virtio-mmio and
// virtio-pci) and a split virtqueue laid out by the test driver, over an
// in-memory disk.
import { describe, expect, it } from 'vitest';
import { BlkFeature, BlkRequest, BlkStatus, VirtioBlk, ID_BYTES } from '../src/devices/virtio/blk.ts';
import { DeviceType, featureBit, InterruptCause, Status } from '../src/devices/virtio/spec.ts';
import { blkRequestHeader, MemoryDisk } from './helpers/memory-disk.ts';
import { TRANSPORTS, VirtioTestDriver, type DriverBuffer, type TransportKind } from './helpers/virtio-driver.ts';

const SECTORS = 64;

const newDisk = (options: { readOnly?: boolean } = {}) => MemoryDisk.filled(SECTORS, (i) => i * 7, options);

function setupOver(transport: TransportKind, disk = newDisk()) {
  const driver = new VirtioTestDriver(new VirtioBlk(disk, { name: 'blk0', serial: 'tsvmm-serial-0123456789' }), { transport }).start();
  const queue = driver.queue(0);
  /** Sends one request; returns the used length and the status byte. */
  const request = (buffers: DriverBuffer[], status = driver.writable(1, 0xff)) => {
    const head = queue.submit([...buffers, status]);
    const used = queue.takeUsed();
    expect(used.map((u) => u.id)).toEqual([head]);
    return { len: used[0]!.len, status: driver.bytes(status)[0] };
  };
  return { driver, disk, queue, request };
}

describe.each(TRANSPORTS)('virtio-blk over virtio-%s', (transport) => {
  const setup = (disk?: MemoryDisk) => setupOver(transport, disk);

  it('is a block device (ID 2) with one queue; its configuration starts with the capacity in sectors', () => {
    const { driver } = setup();
    expect(driver.deviceType()).toBe(DeviceType.BLOCK);
    expect(driver.readConfig(0, 4)).toBe(SECTORS);
    expect(driver.readConfig(4, 4)).toBe(0);
    expect(driver.readConfig(20, 4)).toBe(512); // blk_size
    const features = driver.offeredFeatures();
    expect(features & featureBit(BlkFeature.FLUSH)).toBeTruthy();
    expect(features & featureBit(BlkFeature.RO)).toBeFalsy();
  });

  it('reads sectors into the device-writable buffers and reports data + status as the used length', () => {
    const { driver, disk, request } = setup();
    const data = driver.writable(1024);
    expect(request([driver.readable(blkRequestHeader(BlkRequest.IN, 3)), data])).toEqual({ len: 1025, status: BlkStatus.OK });
    expect(driver.bytes(data)).toEqual(disk.bytes.subarray(3 * 512, 5 * 512));
    expect(driver.interruptStatus() & InterruptCause.USED_BUFFER).toBeTruthy();
  });

  it('writes sectors from the buffers after the header, split over several descriptors', () => {
    const { driver, disk, request } = setup();
    const first = new Uint8Array(512).fill(0xa5);
    const second = new Uint8Array(512).fill(0x5a);
    expect(request([driver.readable(blkRequestHeader(BlkRequest.OUT, 10)), driver.readable(first), driver.readable(second)]))
      .toEqual({ len: 1, status: BlkStatus.OK });
    expect(disk.bytes.subarray(10 * 512, 11 * 512)).toEqual(first);
    expect(disk.bytes.subarray(11 * 512, 12 * 512)).toEqual(second);
  });

  it('flushes the disk on VIRTIO_BLK_T_FLUSH', () => {
    const { driver, disk, request } = setup();
    expect(request([driver.readable(blkRequestHeader(BlkRequest.FLUSH, 0))])).toEqual({ len: 1, status: BlkStatus.OK });
    expect(disk.flushes).toBe(1);
  });

  it('answers GET_ID into an ID buffer split over descriptors', () => {
    const { driver, queue } = setup();
    const first = driver.writable(8);
    const second = driver.writable(12);
    const head = queue.submit([driver.readable(blkRequestHeader(BlkRequest.GET_ID, 0)), first, second, driver.writable(1, 0xff)]);
    expect(queue.takeUsed()).toEqual([{ id: head, len: ID_BYTES + 1 }]);
    expect(new TextDecoder().decode(Buffer.concat([driver.bytes(first), driver.bytes(second)]))).toBe('tsvmm-serial-0123456');
  });

  it('answers GET_ID with the serial, cut to 20 bytes', () => {
    const { driver, request } = setup();
    const id = driver.writable(ID_BYTES);
    expect(request([driver.readable(blkRequestHeader(BlkRequest.GET_ID, 0)), id])).toEqual({ len: ID_BYTES + 1, status: BlkStatus.OK });
    expect(new TextDecoder().decode(driver.bytes(id))).toBe('tsvmm-serial-0123456');
  });

  it('a read-only disk offers VIRTIO_BLK_F_RO and fails writes with IOERR, leaving the disk alone', () => {
    const disk = newDisk({ readOnly: true });
    const before = disk.bytes.slice();
    const { driver, request } = setup(disk);
    expect(driver.offeredFeatures() & featureBit(BlkFeature.RO)).toBeTruthy();
    expect(request([driver.readable(blkRequestHeader(BlkRequest.OUT, 0)), driver.readable(new Uint8Array(512))]))
      .toEqual({ len: 1, status: BlkStatus.IOERR });
    expect(disk.bytes).toEqual(before);
  });

  it.each([
    ['past the end of the disk', blkRequestHeader(BlkRequest.IN, SECTORS - 1), 1024],
    ['at a sector past 2^53 bytes', blkRequestHeader(BlkRequest.IN, 2 ** 52), 512],
    ['of a length that is not whole sectors', blkRequestHeader(BlkRequest.IN, 0), 100],
  ])('a read %s fails with IOERR and nothing read', (_what, requestHeader, length) => {
    const { driver, request } = setup();
    expect(request([driver.readable(requestHeader), driver.writable(length, 0xee)])).toEqual({ len: 1, status: BlkStatus.IOERR });
  });

  it('an unknown request type is UNSUPP', () => {
    const { driver, request } = setup();
    expect(request([driver.readable(blkRequestHeader(99, 0)), driver.writable(512)])).toEqual({ len: 1, status: BlkStatus.UNSUPP });
  });

  it('a failing host disk is the guest\'s IOERR, counted, not an exception', () => {
    const disk = newDisk();
    disk.failReads = true;
    const { driver, request } = setup(disk);
    expect(request([driver.readable(blkRequestHeader(BlkRequest.IN, 0)), driver.writable(512)])).toEqual({ len: 1, status: BlkStatus.IOERR });
    expect([...driver.errorReasons.keys()].join()).toMatch(/host disk on fire/);
  });

  it('a malformed request (no status byte, short header) completes with nothing written and is counted', () => {
    const { driver, queue } = setup();
    const noStatus = queue.submit([driver.readable(blkRequestHeader(BlkRequest.IN, 0))]);
    const shortHeader = queue.submit([driver.readable(new Uint8Array(8)), driver.writable(1)]);
    expect(queue.takeUsed()).toEqual([{ id: noStatus, len: 0 }, { id: shortHeader, len: 0 }]);
    expect(driver.errors).toBe(2);
  });

  it('a driver that corrupts the available ring breaks the queue: DEVICE_NEEDS_RESET and a configuration interrupt; a reset brings it back', () => {
    const { driver, queue } = setup();
    queue.setAvailableIndex(queue.size + 5);
    queue.notify();
    expect(driver.status & Status.DEVICE_NEEDS_RESET).toBeTruthy();
    expect(driver.interruptStatus() & InterruptCause.CONFIG_CHANGE).toBeTruthy();
    expect([...driver.errorReasons.keys()].join()).toMatch(/jumped by/);
    driver.reset();
    expect(driver.status).toBe(0);
    driver.start();
    const fresh = driver.queue(0);
    const data = driver.writable(512);
    const head = fresh.submit([driver.readable(blkRequestHeader(BlkRequest.IN, 0)), data, driver.writable(1, 0xff)]);
    expect(fresh.takeUsed()).toEqual([{ id: head, len: 513 }]);
  });
});
