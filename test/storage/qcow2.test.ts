// The qcow2 backend on its own: images tsvmm creates, written and read back
// against a shadow copy, backing chains, zero and compressed clusters, and
// every kind of damaged image it must refuse with one clear line.
import { afterAll, describe, expect, it } from 'vitest';
import { copyFileSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { InputError } from '../../src/errors.ts';
import { openDisk, type BlockBackend } from '../../src/storage/block-backend.ts';
import { HostFile } from '../../src/storage/host-file.ts';
import { checkExitStatus, checkQcow2 } from '../../src/storage/qcow2/check.ts';
import { createQcow2 } from '../../src/storage/qcow2/create.ts';
import { readHeader } from '../../src/storage/qcow2/header.ts';
import { Qcow2Image } from '../../src/storage/qcow2/qcow2-image.ts';
import { createRaw } from '../../src/storage/raw.ts';
import { expectSame, filled, hasQemu, readAll, pattern, qemuImg, randomInt, scratchDir, seededRandom } from './helpers/images.ts';
import { l2EntryOffset, readU64, refcountOffset, writeBytes, writeU16, writeU32, writeU64 } from './helpers/patch.ts';

const scratch = scratchDir();
afterAll(() => scratch.remove());
const MiB = 2 ** 20;

function expectClean(path: string): void {
  const report = checkQcow2(path);
  expect(report.errors).toEqual([]);
  expect(report.leaks).toEqual([]);
}

/** Random writes (mostly whole sectors, some at odd bytes) applied to the disk and to a shadow copy. */
function randomWrites(disk: BlockBackend, shadow: Uint8Array, count: number, seed: number, maxLength: number): void {
  const random = seededRandom(seed);
  for (let i = 0; i < count; i++) {
    const odd = random() < 0.2;
    const length = odd ? 1 + randomInt(random, maxLength) : 512 * (1 + randomInt(random, maxLength / 512));
    const offset = odd ? randomInt(random, disk.size - length) : 512 * randomInt(random, (disk.size - length) / 512 + 1);
    const data = pattern(Math.ceil(length / 4) * 4, seed * 100_000 + i).subarray(0, length);
    disk.write(offset, data);
    shadow.set(data, offset);
  }
}

describe('qcow2 images tsvmm creates', () => {
  it('have the header they were asked for and read as zeros', () => {
    const path = scratch.path('new.qcow2');
    createQcow2(path, { size: 3 * MiB, clusterSize: 4096 });
    const file = HostFile.open(path, true);
    const header = readHeader(file);
    file.close();
    expect(header).toMatchObject({ version: 3, clusterBits: 12, size: 3 * MiB, refcountOrder: 4, l1Size: 2, snapshotCount: 0 });
    expect(header.backingFile).toBeUndefined();
    const disk = openDisk(path);
    expect(disk).toBeInstanceOf(Qcow2Image);
    expect(disk.description).toBe(`${path} (qcow2)`);
    expectSame(readAll(disk), new Uint8Array(3 * MiB));
    disk.close();
    expectClean(path);
  });

  for (const [clusterSize, version] of [[512, 3], [4096, 3], [65536, 3], [65536, 2]] as const) {
    it(`take random writes like a shadow buffer (${clusterSize}-byte clusters, version ${version}), also after reopening`, () => {
      const path = scratch.path(`random-${clusterSize}-v${version}.qcow2`);
      const size = 4 * MiB;
      createQcow2(path, { size, clusterSize, version });
      const shadow = new Uint8Array(size);
      const disk = openDisk(path);
      randomWrites(disk, shadow, 300, clusterSize + version, 3 * clusterSize);
      expectSame(readAll(disk), shadow);
      disk.flush();
      randomWrites(disk, shadow, 100, clusterSize + version + 1, 3 * clusterSize);
      disk.close();
      const again = openDisk(path, { readOnly: true });
      expectSame(readAll(again), shadow);
      again.close();
      expectClean(path);
    });
  }

  it('move the refcount table when it fills up', () => {
    // 512-byte clusters: one table cluster of 64 blocks covers 8 MiB of file.
    const path = scratch.path('grows.qcow2');
    createQcow2(path, { size: 24 * MiB, clusterSize: 512 });
    const tableBefore = readU64(path, 48);
    const disk = openDisk(path);
    const data = pattern(MiB, 7);
    for (let offset = 0; offset < 20 * MiB; offset += MiB) disk.write(offset, data);
    disk.close();
    expect(readU64(path, 48)).not.toBe(tableBefore);
    const again = openDisk(path, { readOnly: true });
    const back = new Uint8Array(MiB);
    for (let offset = 0; offset < 20 * MiB; offset += MiB) {
      again.read(offset, back);
      expectSame(back, data);
    }
    again.close();
    expectClean(path);
  });
});

describe('qcow2 backing files', () => {
  it('a chain of three, with relative names, reads through to the bottom and copies partial clusters from below', () => {
    const size = 2 * MiB;
    const base = scratch.path('chain-base.qcow2');
    const mid = scratch.path('chain-mid.qcow2');
    const top = scratch.path('chain-top.qcow2');
    createQcow2(base, { size: MiB, clusterSize: 4096 });  // smaller than the rest: zeros beyond it
    createQcow2(mid, { size, clusterSize: 65536, backingFile: 'chain-base.qcow2', backingFormat: 'qcow2' });
    createQcow2(top, { size, clusterSize: 16384, backingFile: 'chain-mid.qcow2' });  // format probed
    const shadow = new Uint8Array(size);
    const layers: [string, number][] = [[base, 1], [mid, 2], [top, 3]];
    for (const [path, seed] of layers) {
      const disk = openDisk(path);
      randomWrites(disk, shadow, 60, seed, 40_000);
      disk.close();
    }
    const baseBytes = readFileSync(base);
    const midBytes = readFileSync(mid);
    const disk = openDisk(top);
    expect((disk as Qcow2Image).backing?.description).toBe(`${mid} (qcow2)`);
    expectSame(readAll(disk), shadow);
    // Small writes into clusters the top has never had: the rest comes from below.
    for (const offset of [100, 70_000, 1_000_000, MiB + 5000]) {
      const data = filled(700, 0xc3);
      disk.write(offset, data);
      shadow.set(data, offset);
    }
    expectSame(readAll(disk), shadow);
    disk.close();
    expect(readFileSync(base).equals(baseBytes) && readFileSync(mid).equals(midBytes)).toBe(true);
    for (const path of [base, mid, top]) expectClean(path);
    const again = openDisk(top, { readOnly: true });
    expectSame(readAll(again), shadow);
    again.close();
  });

  it('a raw backing file', () => {
    const base = scratch.path('raw-base.img');
    const top = scratch.path('raw-top.qcow2');
    writeFileSync(base, pattern(MiB, 9));
    createQcow2(top, { size: MiB, clusterSize: 65536, backingFile: 'raw-base.img', backingFormat: 'raw' });
    const disk = openDisk(top);
    disk.write(65536 + 512, filled(512, 1));
    const expected = pattern(MiB, 9);
    expected.set(filled(512, 1), 65536 + 512);
    expectSame(readAll(disk), expected);
    disk.close();
    expectClean(top);
  });

  it('a missing backing file or a loop is an error at open', () => {
    const orphan = scratch.path('orphan.qcow2');
    createQcow2(orphan, { size: MiB, backingFile: 'gone.qcow2', backingFormat: 'qcow2' });
    expect(() => openDisk(orphan)).toThrow(/orphan\.qcow2: backing file: .*gone\.qcow2: cannot open: ENOENT/);
    const a = scratch.path('loop-a.qcow2');
    const b = scratch.path('loop-b.qcow2');
    createQcow2(a, { size: MiB, backingFile: 'loop-b.qcow2', backingFormat: 'qcow2' });
    createQcow2(b, { size: MiB, backingFile: 'loop-a.qcow2', backingFormat: 'qcow2' });
    expect(() => openDisk(a)).toThrow(/the backing chain loops back to this image/);
  });
});

describe('qcow2 zero clusters', () => {
  it('read as zeros, not as the backing file, and are allocated when written', () => {
    const clusterSize = 4096;
    const base = scratch.path('zero-base.img');
    const path = scratch.path('zero.qcow2');
    writeFileSync(base, filled(64 * 1024, 0x11));
    createQcow2(path, { size: 64 * 1024, clusterSize, backingFile: 'zero-base.img', backingFormat: 'raw' });
    let disk = openDisk(path);
    disk.write(0, filled(4 * clusterSize, 0x22));  // clusters 0-3: the L2 table exists now
    disk.close();
    // Cluster 1: zero flag over its own host cluster (preallocated); cluster 5: zero flag, no host cluster.
    const entry1 = l2EntryOffset(path, 1, clusterSize);
    writeU64(path, entry1, readU64(path, entry1) | 1n);
    writeU64(path, l2EntryOffset(path, 5, clusterSize), 1n);

    disk = openDisk(path);
    const expected = filled(64 * 1024, 0x11);
    expected.fill(0x22, 0, 4 * clusterSize);
    expected.fill(0, clusterSize, 2 * clusterSize);
    expected.fill(0, 5 * clusterSize, 6 * clusterSize);
    expectSame(readAll(disk), expected);
    disk.write(clusterSize + 512, filled(512, 0x33));
    disk.write(5 * clusterSize + 1024, filled(512, 0x44));
    expected.fill(0x33, clusterSize + 512, clusterSize + 1024);
    expected.fill(0x44, 5 * clusterSize + 1024, 5 * clusterSize + 1536);
    expectSame(readAll(disk), expected);
    disk.close();
    expect(readU64(path, entry1) & 1n).toBe(0n);  // the preallocated cluster is used: no zero flag
    expectClean(path);
  });
});

describe.skipIf(!hasQemu)('qcow2 compressed clusters (from qemu-img convert -c)', () => {
  it('read back as the data that was compressed; a write copies the cluster to a new one', () => {
    const raw = scratch.path('compress.raw');
    const path = scratch.path('compressed.qcow2');
    const data = new Uint8Array(2 * MiB);
    for (let offset = 0; offset < data.length; offset += 4096) data.fill((offset / 4096) % 7, offset, offset + 3000);
    data.set(pattern(65536, 3), MiB);  // incompressible: stored uncompressed
    writeFileSync(raw, data);
    qemuImg(['convert', '-c', '-O', 'qcow2', '-o', 'cluster_size=16384', raw, path]);
    const disk = openDisk(path);
    expectSame(readAll(disk), data);
    const small = new Uint8Array(100);
    disk.read(20_000, small);  // inside a compressed cluster
    expectSame(small, data.subarray(20_000, 20_100));
    disk.write(16384 + 8000, filled(1000, 0xab));
    data.fill(0xab, 16384 + 8000, 16384 + 9000);
    expectSame(readAll(disk), data);
    disk.close();
    expectClean(path);
    expect(qemuImg(['compare', path, raw], { allowFailure: true }).status).toBe(1);  // differs from the source...
    writeFileSync(raw, data);
    expect(qemuImg(['compare', path, raw]).stdout).toMatch(/identical/);  // ...exactly by the write
  });
});

describe('damaged and unsupported qcow2 images', () => {
  const make = (name: string) => {
    const path = scratch.path(name);
    createQcow2(path, { size: MiB, clusterSize: 65536 });
    return path;
  };
  const openError = (path: string, options: { readOnly?: boolean; format?: 'qcow2' } = {}): string => {
    try {
      openDisk(path, options).close();
    } catch (e) {
      expect(e).toBeInstanceOf(InputError);
      const message = (e as Error).message;
      expect(message.startsWith(path)).toBe(true);
      expect(message).not.toContain('\n');
      return message;
    }
    throw new Error(`${path} opened`);
  };

  it('a bad magic, version or cluster size', () => {
    const magic = make('magic.qcow2');
    writeU32(magic, 0, 0x514649fa);
    expect(openError(magic, { format: 'qcow2' })).toMatch(/not a qcow2 image \(bad magic\)/);
    const version = make('version.qcow2');
    writeU32(version, 4, 1);
    expect(openError(version)).toMatch(/qcow2 version 1 is not supported/);
    const bits = make('bits.qcow2');
    writeU32(bits, 20, 30);
    expect(openError(bits)).toMatch(/cluster_bits 30 is outside 9-21/);
  });

  it('a truncated file', () => {
    const tiny = make('tiny.qcow2');
    truncateSync(tiny, 100);
    expect(openError(tiny)).toMatch(/truncated qcow2 header/);
    const noL1 = make('no-l1.qcow2');
    truncateSync(noL1, 3 * 65536);
    expect(openError(noL1)).toMatch(/the L1 table lies past the end of the file \(truncated image\?\)/);
    const noTable = make('no-table.qcow2');
    writeU64(noTable, 48, BigInt(100 * 65536));
    expect(openError(noTable)).toMatch(/the refcount table lies past the end of the file/);
  });

  it('an L2 table cut off by truncation is reported when it is read', () => {
    const path = make('cut-l2.qcow2');
    const disk = openDisk(path);
    disk.write(0, filled(512, 1));
    disk.close();
    const l2Table = l2EntryOffset(path, 0, 65536);  // entry 0: the table's first byte
    truncateSync(path, l2Table + 100);
    const damaged = openDisk(path, { readOnly: true });
    expect(() => damaged.read(0, new Uint8Array(512))).toThrow(/L2 table at offset \d+ lies past the end of the file/);
    damaged.close();
  });

  it('inconsistent tables', () => {
    const l1 = make('l1.qcow2');
    writeU32(l1, 36, 0);
    expect(openError(l1)).toMatch(/the L1 table \(0 entries\) is too small for the virtual size 1048576/);
    const unaligned = make('unaligned.qcow2');
    const disk = openDisk(unaligned);
    disk.write(0, filled(512, 1));
    disk.close();
    const entry = l2EntryOffset(unaligned, 0, 65536);
    writeU64(unaligned, entry, readU64(unaligned, entry) + 4096n);
    const opened = openDisk(unaligned);
    expect(() => opened.read(0, new Uint8Array(512))).toThrow(/corrupt qcow2 image: guest cluster 0 maps to 0x[0-9a-f]+, not a cluster after the header/);
    opened.close();
  });

  it('features tsvmm does not support', () => {
    const unknown = make('unknown-feature.qcow2');
    writeU64(unknown, 72, 1n << 5n);
    expect(openError(unknown)).toMatch(/uses the qcow2 feature "incompatible feature bit 5", which tsvmm does not support/);
    const extended = make('extended-l2.qcow2');
    writeU64(extended, 72, 1n << 4n);
    expect(openError(extended)).toMatch(/"extended L2 entries"/);
    const external = make('external.qcow2');
    writeU64(external, 72, 1n << 2n);
    expect(openError(external)).toMatch(/"external data file"/);
    const zstd = make('zstd.qcow2');
    writeU64(zstd, 72, 1n << 3n);
    writeBytes(zstd, 104, new Uint8Array([1]));
    expect(openError(zstd)).toMatch(/uses zstd compression; tsvmm reads only zlib-compressed clusters/);
    const encrypted = make('encrypted.qcow2');
    writeU32(encrypted, 32, 2);
    expect(openError(encrypted)).toMatch(/encrypted qcow2 images \(LUKS\) are not supported/);
    const order = make('order.qcow2');
    writeU32(order, 96, 7);
    expect(openError(order)).toMatch(/refcount_order 7 is above 6/);
  });

  it('a dirty or corrupt-marked image opens read-only, not for writing', () => {
    for (const [bit, words] of [[0n, /dirty bit/], [1n, /marked corrupt/]] as const) {
      const path = make(`flag-${bit}.qcow2`);
      writeU64(path, 72, 1n << bit);
      expect(openError(path)).toMatch(words);
      openDisk(path, { readOnly: true }).close();
    }
  });

  it('read-only images refuse writes', () => {
    const disk = openDisk(make('readonly.qcow2'), { readOnly: true });
    expect(() => disk.write(0, filled(512, 1))).toThrow(/is read-only/);
    disk.close();
  });
});

describe('tsvmm\'s qcow2 check', () => {
  it('finds leaked clusters (status 3) and clusters referenced more than counted (status 2)', () => {
    const path = scratch.path('check.qcow2');
    createQcow2(path, { size: MiB, clusterSize: 65536 });
    const disk = openDisk(path);
    disk.write(0, filled(65536 * 2, 5));
    disk.close();
    expect(checkExitStatus(checkQcow2(path))).toBe(0);
    const leaky = scratch.path('leaky.qcow2');
    copyFileSync(path, leaky);
    // A cluster at the end of the file that is counted but referenced by nothing.
    const spare = statSync(leaky).size / 65536;
    truncateSync(leaky, (spare + 1) * 65536);
    writeU16(leaky, refcountOffset(leaky, spare), 1);
    let report = checkQcow2(leaky);
    expect(report.leaks).toEqual([`Leaked cluster ${spare} refcount=1 reference=0`]);
    expect(report.errors).toEqual([]);
    expect(checkExitStatus(report)).toBe(3);
    const dataCluster = Number(readU64(leaky, l2EntryOffset(leaky, 0, 65536)) & 0xfffffffffe00n) / 65536;
    writeU16(leaky, refcountOffset(leaky, dataCluster), 0);
    report = checkQcow2(leaky);
    expect(report.errors).toContain(`ERROR cluster ${dataCluster} refcount=0 reference=1`);
    expect(checkExitStatus(report)).toBe(2);
  });
});

describe('raw images as disks', () => {
  it('are probed as raw when they do not start with the qcow2 magic', () => {
    const path = scratch.path('probe.img');
    createRaw(path, MiB);
    const disk = openDisk(path);
    expect(disk.description).toBe(`${path} (raw)`);
    disk.close();
  });
});
