// BlockBackend.blockStatus (issue 10, item 12): what a range of the disk
// holds, answered at a cost that follows the allocated data, not the virtual
// size: a 1 TiB empty qcow2 is answered without reading a table.
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { openDisk, type BlockBackend, type BlockStatus } from '../../src/storage/block-backend.ts';
import { HostFile } from '../../src/storage/host-file.ts';
import { createQcow2 } from '../../src/storage/qcow2/create.ts';
import { createRaw } from '../../src/storage/raw.ts';
import { hasQemu, qemuImg, qemuIo, randomInt, readAll, scratchDir, seededRandom } from './helpers/images.ts';

const scratch = scratchDir();
afterAll(() => scratch.remove());
afterEach(() => vi.restoreAllMocks());
const KiB = 1024;
const MiB = 2 ** 20;
const GiB = 2 ** 30;
const TiB = 2 ** 40;

/** Every extent of the disk, in order, and how many calls it took. */
function extents(disk: BlockBackend): { extents: BlockStatus[]; calls: number } {
  const found: BlockStatus[] = [];
  let calls = 0;
  for (let offset = 0; offset < disk.size; calls++) {
    if (calls > 10_000) throw new Error('blockStatus does not advance');
    const status = disk.blockStatus(offset, disk.size - offset);
    expect(status.length).toBeGreaterThan(0);
    found.push(status);
    offset += status.length;
  }
  return { extents: found, calls };
}

/** Adjacent extents of one kind joined: what a copy sees. */
function merged(list: BlockStatus[]): BlockStatus[] {
  const out: BlockStatus[] = [];
  for (const e of list) {
    const last = out[out.length - 1];
    if (last && last.kind === e.kind) last.length += e.length;
    else out.push({ ...e });
  }
  return out;
}

/** Counts the file reads (pread calls; readExactAt goes through readAt) made while `body` runs. */
function countReads(body: () => void): number {
  const readAt = vi.spyOn(HostFile.prototype, 'readAt');
  body();
  const count = readAt.mock.calls.length;
  readAt.mockRestore();
  return count;
}

describe('qcow2 blockStatus', () => {
  it('answers a 1 TiB empty image in one call, reading no table', () => {
    const path = scratch.path('empty-1t.qcow2');
    createQcow2(path, { size: TiB });
    const disk = openDisk(path, { readOnly: true });
    let status: BlockStatus | undefined;
    expect(countReads(() => { status = disk.blockStatus(0, TiB); })).toBe(0);
    expect(status).toEqual({ kind: 'zero', length: TiB });
    expect(disk.blockStatus(TiB - 512, 512)).toEqual({ kind: 'zero', length: 512 });
    disk.close();
  });

  it('walks a sparse 1 TiB image in a call per extent, reading each L2 table in use once', () => {
    const path = scratch.path('sparse-1t.qcow2');
    createQcow2(path, { size: TiB });
    const writer = openDisk(path);
    writer.write(0, new Uint8Array(64 * KiB).fill(1));
    writer.write(512 * GiB, new Uint8Array(128 * KiB).fill(2));
    writer.write(TiB - 64 * KiB, new Uint8Array(64 * KiB).fill(3));
    writer.close();
    const disk = openDisk(path, { readOnly: true });
    let walk: { extents: BlockStatus[]; calls: number } = { extents: [], calls: 0 };
    const reads = countReads(() => { walk = extents(disk); });
    expect(merged(walk.extents)).toEqual([
      { kind: 'data', length: 64 * KiB },
      { kind: 'zero', length: 512 * GiB - 64 * KiB },
      { kind: 'data', length: 128 * KiB },
      { kind: 'zero', length: TiB - 512 * GiB - 128 * KiB - 64 * KiB },
      { kind: 'data', length: 64 * KiB },
    ]);
    expect(walk.calls).toBeLessThanOrEqual(7);
    expect(reads).toBe(3);  // the three L2 tables in use, once each
    disk.close();
  });

  it('stops at `length`, and inside a cluster', () => {
    const path = scratch.path('small.qcow2');
    createQcow2(path, { size: 16 * MiB });
    const disk = openDisk(path);
    disk.write(MiB, new Uint8Array(64 * KiB).fill(1));
    expect(disk.blockStatus(MiB + 512, 1024)).toEqual({ kind: 'data', length: 1024 });
    expect(disk.blockStatus(MiB + 512, MiB)).toEqual({ kind: 'data', length: 64 * KiB - 512 });
    expect(disk.blockStatus(0, MiB + 4096)).toEqual({ kind: 'zero', length: MiB });
    expect(() => disk.blockStatus(16 * MiB - 512, 1024)).toThrow(/outside the disk/);
    disk.close();
  });

  it('agrees with the bytes: every "zero" extent reads as zeros, on random writes', () => {
    const random = seededRandom(12);
    const path = scratch.path('random.qcow2');
    createQcow2(path, { size: 32 * MiB, clusterSize: 4096 });
    const disk = openDisk(path);
    for (let i = 0; i < 200; i++) {
      const length = (1 + randomInt(random, 32)) * 512;
      const offset = randomInt(random, (32 * MiB - length) / 512) * 512;
      disk.write(offset, new Uint8Array(length).fill(random() < 0.2 ? 0 : 7));
    }
    const bytes = readAll(disk);
    let offset = 0;
    for (const e of extents(disk).extents) {
      if (e.kind === 'zero') expect(bytes.subarray(offset, offset + e.length).every((b) => b === 0)).toBe(true);
      offset += e.length;
    }
    expect(offset).toBe(disk.size);
    disk.close();
  });
});

describe.skipIf(!hasQemu)('qcow2 blockStatus with zero clusters and backing files', () => {
  it('zero clusters read as zero; the backing file answers for what the overlay lacks', () => {
    const base = scratch.path('base.qcow2');
    qemuImg(['create', '-q', '-f', 'qcow2', base, '8M']);
    qemuIo(base, ['write -P 1 0 128k', 'write -z 1M 64k']);
    const overlay = scratch.path('overlay.qcow2');
    qemuImg(['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', overlay, '16M']);
    qemuIo(overlay, ['write -P 2 2M 64k', 'write -z 0 64k']);
    const disk = openDisk(overlay, { readOnly: true });
    expect(merged(extents(disk).extents)).toEqual([
      { kind: 'zero', length: 64 * KiB },            // the overlay's zero cluster over the base's data
      { kind: 'data', length: 64 * KiB },            // the base's data
      { kind: 'zero', length: 2 * MiB - 128 * KiB },
      { kind: 'data', length: 64 * KiB },            // the overlay's data
      { kind: 'zero', length: 14 * MiB - 64 * KiB }, // past the base's end: zeros
    ]);
    disk.close();
  });
});

describe('raw blockStatus', () => {
  it('is all data (Node cannot ask for SEEK_DATA/SEEK_HOLE)', () => {
    const path = scratch.path('disk.img');
    createRaw(path, 4 * MiB);
    const disk = openDisk(path, { format: 'raw', readOnly: true });
    expect(disk.blockStatus(512, 4 * MiB - 512)).toEqual({ kind: 'data', length: 4 * MiB - 512 });
    expect(() => disk.blockStatus(0, 4 * MiB + 512)).toThrow(/outside the disk/);
    disk.close();
  });
});
