// Corrupt qcow2 images (issue 10, items 1, 2 and 9): a guest write that would
// land on metadata is refused, the image is marked corrupt and then opens only
// read-only, and `img check -r` repairs it so that qemu-img agrees (and the
// other way round). The images are built by helpers/corrupt-images.ts.
import { afterAll, describe, expect, it } from 'vitest';
import { firmwarePath } from '../../bench/lib/artifacts.ts';
import { imgCheck } from '../../src/cli/img.ts';
import { InputError } from '../../src/errors.ts';
import { openDisk } from '../../src/storage/block-backend.ts';
import { imageInfo } from '../../src/storage/image-info.ts';
import { checkQcow2 } from '../../src/storage/qcow2/check.ts';
import { Qcow2CorruptionError } from '../../src/storage/qcow2/corruption.ts';
import { Qcow2Image } from '../../src/storage/qcow2/qcow2-image.ts';
import { hasKvm, tsvmm } from '../helpers/kvm.ts';
import {
  CLUSTER, copyImage, DAMAGES, headerWithoutCorruptBit, isMarkedCorrupt, makeBaseImage, markCorrupt,
  refcountOrderOutOfRange, sharedBeyondRefcounts, type DamageName, type Layout,
} from './helpers/corrupt-images.ts';
import { hasQemu, qemuImg, qemuIo, scratchDir } from './helpers/images.ts';
import { l2EntryOffset, readBytes, readU64, writeU16 } from './helpers/patch.ts';

const scratch = scratchDir();
afterAll(() => scratch.remove());
const MiB = 2 ** 20;
let serial = 0;

/** The metadata a refused write must leave alone: header (bar the corrupt bit), L1, refcount table, L2 table. */
function metadataSnapshot(path: string, layout: Layout): Uint8Array[] {
  return [
    headerWithoutCorruptBit(path),
    readBytes(path, layout.l1, 8),
    readBytes(path, layout.refcountTable, CLUSTER),
    readBytes(path, layout.l2ForCluster0, CLUSTER),
  ];
}

function damaged(name: DamageName, compat: '1.1' | '0.10' = '1.1'): { path: string; layout: Layout } {
  const path = scratch.path(`damaged-${serial++}.qcow2`);
  const layout = makeBaseImage(path, compat);
  DAMAGES[name](path, layout);
  return { path, layout };
}

/** Opens for writing with the corruption report collected instead of printed. */
function openCollecting(path: string): { image: Qcow2Image; reports: string[] } {
  const reports: string[] = [];
  return { image: new Qcow2Image(path, { onCorruption: (m) => reports.push(m) }), reports };
}

/** A guest's writes: one in place (guest cluster 0), one that allocates (32 MiB); the errors they met. */
function guestWrites(image: Qcow2Image): unknown[] {
  const errors: unknown[] = [];
  for (const offset of [0, 32 * MiB]) {
    try {
      image.write(offset, new Uint8Array(CLUSTER).fill(0xee));
    } catch (e) {
      errors.push(e);
    }
  }
  return errors;
}

const checkStatus = (path: string) => qemuImg(['check', path], { allowFailure: true }).status;

describe.skipIf(!hasQemu)('a corrupt image never has its metadata overwritten', () => {
  for (const name of Object.keys(DAMAGES) as DamageName[]) {
    it(`${name}: the write fails, the metadata stays, the image is marked corrupt and opens read-only`, () => {
      const { path, layout } = damaged(name);
      const before = metadataSnapshot(path, layout);
      const { image, reports } = openCollecting(path);
      const errors = guestWrites(image);
      expect(errors.length).toBeGreaterThan(0);
      expect(errors[0]).toBeInstanceOf(Qcow2CorruptionError);
      expect(errors.every((e) => e instanceof InputError)).toBe(true);
      // Later requests fail too, reads included, as QEMU's do once it has found corruption.
      expect(() => image.read(4 * MiB, new Uint8Array(512))).toThrow(/was found corrupt/);
      expect(() => image.close()).not.toThrow();
      expect(reports).toHaveLength(1);
      expect(reports[0]).toMatch(/corrupt qcow2 image: .*repair it with "tsvmm img check -r all"/);
      expect(reports[0]!.includes('\n')).toBe(false);

      expect(metadataSnapshot(path, layout)).toEqual(before);
      expect(isMarkedCorrupt(path)).toBe(true);
      expect(imageInfo(path)['format-specific']?.data.corrupt).toBe(true);
      expect(JSON.parse(qemuImg(['info', '--output', 'json', path]).stdout)['format-specific'].data.corrupt).toBe(true);
      expect(() => openDisk(path)).toThrow(/is marked corrupt; repair it with "tsvmm img check -r all" \(or "qemu-img check -r all"\), or open it read-only/);
      const readOnly = openDisk(path, { readOnly: true });
      const bytes = new Uint8Array(512);
      readOnly.read(4 * MiB, bytes);
      expect(bytes.every((b) => b === 0x22)).toBe(true);
      readOnly.close();
    });
  }

  it('a version 2 image has no corrupt bit: its header stays as it was, and the session refuses further requests (as QEMU)', () => {
    const { path, layout } = damaged('refcount table entry 0 zero', '0.10');
    const header = readBytes(path, 0, 72);
    const before = metadataSnapshot(path, layout);
    const { image, reports } = openCollecting(path);
    expect(guestWrites(image)[0]).toBeInstanceOf(Qcow2CorruptionError);
    expect(() => image.write(4 * MiB, new Uint8Array(512))).toThrow(/was found corrupt/);
    image.close();
    expect(reports).toHaveLength(1);
    expect(readBytes(path, 0, 72)).toEqual(header);
    expect(metadataSnapshot(path, layout)).toEqual(before);
  });

  it('an out-of-range refcount order is refused at open, in one line', () => {
    const path = scratch.path('order.qcow2');
    makeBaseImage(path);
    refcountOrderOutOfRange(path);
    expect(() => openDisk(path)).toThrow(InputError);
    expect(() => openDisk(path)).toThrow(/^[^\n]*refcount_order 7 is above 6$/);
  });

  it('a refcount that would go below zero at close marks the image corrupt instead of failing the close (item 9)', () => {
    const path = scratch.path('negative.qcow2');
    makeBaseImage(path);
    sharedBeyondRefcounts(path);
    const { image, reports } = openCollecting(path);
    image.write(0, new Uint8Array(4096).fill(0x33));  // copies the "shared" cluster; frees it at the next flush
    expect(() => image.close()).not.toThrow();
    expect(reports).toHaveLength(1);
    expect(reports[0]).toMatch(/freeing cluster \d+, whose refcount is already 0; marked corrupt/);
    expect(isMarkedCorrupt(path)).toBe(true);
    // Nothing was lost: the copy holds the write and the rest of the old cluster.
    const readOnly = openDisk(path, { readOnly: true });
    const bytes = new Uint8Array(8192);
    readOnly.read(0, bytes);
    readOnly.close();
    expect(bytes.subarray(0, 4096).every((b) => b === 0x33)).toBe(true);
    // The old cluster lay past the end of the file: it read as zeros, and was copied so.
    expect(bytes.subarray(4096).every((b) => b === 0)).toBe(true);
  });

  it('the same found by a guest flush fails the flush (the device answers IOERR), and every request after it', () => {
    const path = scratch.path('negative-flush.qcow2');
    makeBaseImage(path);
    sharedBeyondRefcounts(path);
    const { image, reports } = openCollecting(path);
    image.write(0, new Uint8Array(4096).fill(0x33));
    expect(() => image.flush()).toThrow(Qcow2CorruptionError);
    expect(() => image.write(4096, new Uint8Array(512))).toThrow(InputError);
    image.close();
    expect(reports).toHaveLength(1);
  });
});

describe.skipIf(!hasQemu)('img check -r against qemu-img check -r, on the same damaged images', () => {
  const damages: DamageName[] = Object.keys(DAMAGES) as DamageName[];
  for (const name of damages) {
    it(`${name}, after a guest write marked it corrupt: either tool repairs it, the other finds it clean`, () => {
      const { path } = damaged(name);
      const { image } = openCollecting(path);
      guestWrites(image);
      image.close();
      const ours = copyImage(path, scratch.path(`ours-${serial++}.qcow2`));
      const theirs = copyImage(path, scratch.path(`theirs-${serial++}.qcow2`));

      const repaired = imgCheck(ours, { repair: 'all' });
      expect(repaired.status, repaired.stderr).toBe(0);
      expect(checkStatus(ours)).toBe(0);
      expect(isMarkedCorrupt(ours)).toBe(false);

      qemuImg(['check', '-r', 'all', theirs], { allowFailure: true });
      expect(checkStatus(theirs)).toBe(0);
      const report = checkQcow2(theirs);
      expect(report.errors).toEqual([]);
      expect(report.leaks).toEqual([]);

      // The repaired image is usable again, and stays consistent when written.
      const disk = openDisk(ours);
      disk.write(32 * MiB, new Uint8Array(CLUSTER).fill(0x44));
      disk.write(0, new Uint8Array(CLUSTER).fill(0x55));
      const bytes = new Uint8Array(512);
      disk.read(32 * MiB, bytes);
      expect(bytes.every((b) => b === 0x44)).toBe(true);
      disk.close();
      expect(checkStatus(ours)).toBe(0);
    });
  }

  it('the refcount damage alone (no guest write yet): both repair it', () => {
    for (const name of ['refcount table entry 0 zero', 'refcount table entry pointing at itself', 'metadata refcounts zero'] as const) {
      const { path } = damaged(name);
      expect(imgCheck(path, {}).status).toBe(2);
      const theirs = copyImage(path, scratch.path(`theirs-${serial++}.qcow2`));
      expect(imgCheck(path, { repair: 'all' }).status).toBe(0);
      expect(checkStatus(path)).toBe(0);
      qemuImg(['check', '-r', 'all', theirs], { allowFailure: true });
      expect(imgCheck(theirs, {}).status).toBe(0);
    }
  });

  it('-r leaks: the same output and exit status as qemu-img, and both agree afterwards', () => {
    const path = scratch.path('leaky.qcow2');
    const layout = makeBaseImage(path);
    // Discarded clusters keep their place in the file with refcount 0: count one of them again.
    const leak = Number(readU64(path, l2EntryOffset(path, (4 * MiB) / CLUSTER, CLUSTER)) & 0xfffffffffe00n) / CLUSTER;
    qemuIo(path, ['discard 4M 1M']);
    const run = (args: string[]) => qemuImg(['check', ...args], { allowFailure: true });
    expect(new DataView(readBytes(path, layout.refcountBlock0 + leak * 2, 2).buffer).getUint16(0)).toBe(0);
    writeU16(path, layout.refcountBlock0 + leak * 2, 1);
    const theirs = copyImage(path, scratch.path('leaky-theirs.qcow2'));
    expect(imgCheck(path, {}).status).toBe(3);

    const ours = imgCheck(path, { repair: 'leaks' });
    const qemu = run(['-r', 'leaks', theirs]);
    expect(ours.status).toBe(qemu.status);
    expect(ours.status).toBe(0);
    expect(ours.stdout).toBe(qemu.stdout);
    expect(ours.stderr).toBe(qemu.stderr);
    expect(checkStatus(path)).toBe(0);
    expect(imgCheck(theirs, {}).status).toBe(0);
  });

  it('-r with a bad mode is a usage error', () => {
    expect(() => imgCheck(scratch.path('x.qcow2'), { repair: 'some' })).toThrow(/-r some: use leaks or all/);
  });
});

describe.skipIf(!hasQemu || !hasKvm)('tsvmm run with an image marked corrupt', () => {
  it('refuses it in one line naming the repair, exit 2', () => {
    const path = scratch.path('marked.qcow2');
    makeBaseImage(path);
    markCorrupt(path);
    const r = tsvmm(['run', '--flat', firmwarePath('virtio-blk'), '--irqchip', '--disk', path]);
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^tsvmm: .*marked\.qcow2: is marked corrupt; repair it with "tsvmm img check -r all"/);
    // Read-only, it runs.
    const ro = tsvmm(['run', '--flat', firmwarePath('virtio-blk'), '--irqchip', '--disk', `${path},readonly=on`]);
    expect(ro.stderr).toBe('');
  });
});
