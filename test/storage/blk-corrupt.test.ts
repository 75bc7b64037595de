// A guest's requests on an image found corrupt while in use (issue 10, items 1
// and 9): virtio-blk answers VIRTIO_BLK_S_IOERR, the device goes on serving,
// and closing it at the end of the VM does not throw into the I/O thread.
import { afterAll, describe, expect, it } from 'vitest';
import { BlkRequest, BlkStatus, VirtioBlk } from '../../src/devices/virtio/blk.ts';
import { Qcow2Image } from '../../src/storage/qcow2/qcow2-image.ts';
import { blkRequestHeader } from '../helpers/memory-disk.ts';
import { VirtioTestDriver } from '../helpers/virtio-driver.ts';
import { DAMAGES, isMarkedCorrupt, makeBaseImage, sharedBeyondRefcounts } from './helpers/corrupt-images.ts';
import { hasQemu, scratchDir } from './helpers/images.ts';

const scratch = scratchDir();
afterAll(() => scratch.remove());

function device(path: string) {
  const reports: string[] = [];
  const blk = new VirtioBlk(new Qcow2Image(path, { onCorruption: (m) => reports.push(m) }), { name: 'blk0', serial: 'corrupt' });
  const driver = new VirtioTestDriver(blk).start();
  const queue = driver.queue(0);
  const request = (type: number, sector: number, data: ReturnType<typeof driver.readable>[]) => {
    const status = driver.writable(1, 0xff);
    queue.submit([driver.readable(blkRequestHeader(type, sector)), ...data, status]);
    queue.takeUsed();
    return driver.bytes(status)[0];
  };
  return { blk, driver, request, reports };
}

describe.skipIf(!hasQemu)('virtio-blk on a corrupt qcow2 image', () => {
  it('a write onto metadata is IOERR, so is every request after it, and the device closes cleanly', () => {
    const path = scratch.path('onto-l1.qcow2');
    DAMAGES['L2 entry pointing at the L1 table'](path, makeBaseImage(path));
    const { blk, driver, request, reports } = device(path);
    expect(request(BlkRequest.OUT, 0, [driver.readable(new Uint8Array(4096).fill(0xee))])).toBe(BlkStatus.IOERR);
    expect(request(BlkRequest.IN, 8192, [driver.writable(512)])).toBe(BlkStatus.IOERR);
    expect(request(BlkRequest.FLUSH, 0, [])).toBe(BlkStatus.IOERR);
    expect(() => blk.close()).not.toThrow();
    expect(reports).toHaveLength(1);
    expect(blk.report()).toMatchObject({ ioErrors: 3 });
    expect(isMarkedCorrupt(path)).toBe(true);
  });

  it('a refcount found to go below zero: the guest flush is IOERR, and the close at the end of the VM does not throw', () => {
    for (const flushFirst of [true, false]) {
      const path = scratch.path(`negative-${flushFirst}.qcow2`);
      makeBaseImage(path);
      sharedBeyondRefcounts(path);
      const { blk, driver, request, reports } = device(path);
      expect(request(BlkRequest.OUT, 0, [driver.readable(new Uint8Array(4096).fill(0x33))])).toBe(BlkStatus.OK);
      if (flushFirst) expect(request(BlkRequest.FLUSH, 0, [])).toBe(BlkStatus.IOERR);
      expect(() => blk.close()).not.toThrow();
      expect(reports).toHaveLength(1);
      expect(reports[0]).toMatch(/freeing cluster 4295032833, whose refcount is already 0/);
      expect(isMarkedCorrupt(path)).toBe(true);
    }
  });
});
