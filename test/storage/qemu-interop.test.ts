// tsvmm's qcow2 against QEMU's: images qemu-img and qemu-io write read back
// byte for byte through tsvmm, and images tsvmm writes pass `qemu-img check`
// and `qemu-img compare`. Skipped, with the reason printed, without qemu-utils.
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { openDisk, type BlockBackend } from '../../src/storage/block-backend.ts';
import { checkExitStatus, checkQcow2 } from '../../src/storage/qcow2/check.ts';
import { expectSame, filled, hasQemu, readAll, pattern, qemuImg, qemuIo, randomInt, scratchDir, seededRandom } from './helpers/images.ts';
import { l2EntryOffset, readU64, writeU64 } from './helpers/patch.ts';

const scratch = scratchDir();
afterAll(() => scratch.remove());
const MiB = 2 ** 20;

/** qemu-io writes of a pattern byte; the same bytes go into `shadow`. */
function qemuWrites(path: string, shadow: Uint8Array, writes: [offset: number, length: number, byte: number][], extra: string[] = []): void {
  qemuIo(path, [...writes.map(([offset, length, byte]) => `write -P 0x${byte.toString(16)} ${offset} ${length}`), ...extra]);
  for (const [offset, length, byte] of writes) shadow.fill(byte, offset, offset + length);
}

/** qemu-img check and qemu-img compare against the expected bytes. */
function expectQemuAgrees(path: string, expected: Uint8Array): void {
  const check = qemuImg(['check', path], { allowFailure: true });
  expect(check.stdout + check.stderr).toMatch(/No errors were found on the image/);
  expect(check.status).toBe(0);
  const raw = `${path}.expected.raw`;
  writeFileSync(raw, expected);
  expect(qemuImg(['compare', '-f', 'qcow2', '-F', 'raw', path, raw], { allowFailure: true }).stdout).toMatch(/Images are identical/);
}

function randomWrites(disk: BlockBackend, shadow: Uint8Array, count: number, seed: number, maxLength: number): void {
  const random = seededRandom(seed);
  for (let i = 0; i < count; i++) {
    const length = 512 * (1 + randomInt(random, maxLength / 512));
    const offset = 512 * randomInt(random, (disk.size - length) / 512 + 1);
    const data = pattern(length, seed * 1000 + i);
    disk.write(offset, data);
    shadow.set(data, offset);
  }
}

describe.skipIf(!hasQemu)('qcow2 images QEMU wrote, read by tsvmm', () => {
  for (const clusterSize of [4096, 65536, 2 * MiB]) {
    it(`${clusterSize}-byte clusters: data, zero and compressed clusters written by qemu-io read back byte-identical`, () => {
      const path = scratch.path(`qemu-${clusterSize}.qcow2`);
      const size = 16 * MiB;
      qemuImg(['create', '-f', 'qcow2', '-o', `cluster_size=${clusterSize}`, path, `${size}`]);
      const expected = new Uint8Array(size);
      qemuWrites(path, expected, [
        [0, 512, 0x11],
        [clusterSize - 512, 1024, 0x22],           // across a cluster boundary
        [3 * MiB + 4096, 3 * clusterSize, 0x33],
        [12 * MiB, MiB, 0x44],
        [size - 4096, 4096, 0x55],
      ]);
      // Zero clusters over data (write -z), and one compressed cluster (write -c, only into unallocated space).
      const zeroAt = 12 * MiB;
      qemuIo(path, [`write -z ${zeroAt} ${Math.max(clusterSize, 64 * 1024)}`, `write -c -P 0x66 ${10 * MiB} ${clusterSize}`]);
      expected.fill(0, zeroAt, zeroAt + Math.max(clusterSize, 64 * 1024));
      expected.fill(0x66, 10 * MiB, 10 * MiB + clusterSize);
      const disk = openDisk(path, { readOnly: true });
      expectSame(readAll(disk), expected);
      disk.close();
    });
  }

  it('version 2 images and every refcount width', () => {
    for (const options of ['compat=0.10', 'refcount_bits=1', 'refcount_bits=8', 'refcount_bits=64']) {
      const path = scratch.path(`qemu-${options.replace('=', '-')}.qcow2`);
      qemuImg(['create', '-f', 'qcow2', '-o', `${options},cluster_size=4096`, path, '4M']);
      const expected = new Uint8Array(4 * MiB);
      qemuWrites(path, expected, [[4096, 10_000, 0x71], [MiB, 200_000, 0x72]]);
      const disk = openDisk(path);
      expectSame(readAll(disk), expected);
      randomWrites(disk, expected, 100, 3, 20_000);
      expectSame(readAll(disk), expected);
      disk.close();
      expectQemuAgrees(path, expected);
    }
  });

  it('a backing chain made with qemu-img create -b ... -F qcow2', () => {
    const base = scratch.path('q-base.qcow2');
    const mid = scratch.path('q-mid.qcow2');
    const top = scratch.path('q-top.qcow2');
    const expected = new Uint8Array(8 * MiB);
    qemuImg(['create', '-f', 'qcow2', base, '8M']);
    qemuWrites(base, expected, [[0, 8 * MiB, 0x01]]);
    qemuImg(['create', '-f', 'qcow2', '-o', 'cluster_size=4096', '-b', 'q-base.qcow2', '-F', 'qcow2', mid]);
    qemuWrites(mid, expected, [[1000 * 512, 300_000, 0x02], [5 * MiB, 4096, 0x03]]);
    qemuImg(['create', '-f', 'qcow2', '-b', 'q-mid.qcow2', '-F', 'qcow2', top]);
    qemuWrites(top, expected, [[512, 512, 0x04], [5 * MiB + 1024, 1024, 0x05]]);
    const disk = openDisk(top);
    expectSame(readAll(disk), expected);
    // tsvmm's partial writes copy the rest of each cluster up from the chain.
    randomWrites(disk, expected, 40, 11, 8192);
    expectSame(readAll(disk), expected);
    disk.close();
    expectQemuAgrees(top, expected);
  });
});

describe.skipIf(!hasQemu)('qcow2 images tsvmm wrote, checked by qemu-img', () => {
  for (const clusterSize of [4096, 65536, 2 * MiB]) {
    it(`${clusterSize}-byte clusters: random writes pass qemu-img check and compare`, () => {
      const path = scratch.path(`ours-${clusterSize}.qcow2`);
      const size = 16 * MiB;
      qemuImg(['create', '-f', 'qcow2', '-o', `cluster_size=${clusterSize}`, path, `${size}`]);
      const expected = new Uint8Array(size);
      const disk = openDisk(path);
      randomWrites(disk, expected, 200, clusterSize, Math.min(3 * clusterSize, 256 * 1024));
      disk.close();
      expectQemuAgrees(path, expected);
    });
  }

  it('writes over zero and compressed clusters QEMU made', () => {
    const path = scratch.path('ours-over-qemu.qcow2');
    qemuImg(['create', '-f', 'qcow2', path, '4M']);
    const expected = new Uint8Array(4 * MiB);
    qemuWrites(path, expected, [[0, MiB, 0x0f], [2 * MiB, 2 * MiB, 0x0f]]);
    qemuIo(path, ['write -z 0 128k', 'write -z -u 256k 64k', 'write -c -P 0x5c 1M 64k', 'write -c -P 0x5d 1088k 64k']);
    expected.fill(0, 0, 128 * 1024).fill(0, 256 * 1024, 320 * 1024).fill(0x5c, MiB, MiB + 65536).fill(0x5d, MiB + 65536, MiB + 131072);
    const disk = openDisk(path);
    for (const offset of [1000, 70_000, 256 * 1024 + 512, MiB + 100, MiB + 65536 + 60_000]) {
      disk.write(offset, filled(3000, 0xe7));
      expected.fill(0xe7, offset, offset + 3000);
    }
    expectSame(readAll(disk), expected);
    disk.close();
    expectQemuAgrees(path, expected);
  });

  it('writes to an image with internal snapshots copy shared clusters and leave the snapshots alone', () => {
    const path = scratch.path('snapshots.qcow2');
    qemuImg(['create', '-f', 'qcow2', path, '4M']);
    const expected = new Uint8Array(4 * MiB);
    qemuWrites(path, expected, [[0, 2 * MiB, 0x31]]);
    qemuImg(['snapshot', '-c', 'first', path]);
    const first = expected.slice();
    qemuWrites(path, expected, [[MiB, 2 * MiB, 0x32]]);
    qemuImg(['snapshot', '-c', 'second', path]);
    const second = expected.slice();
    const disk = openDisk(path);
    randomWrites(disk, expected, 50, 21, 100_000);
    disk.close();
    expectQemuAgrees(path, expected);
    for (const [name, bytes] of [['first', first], ['second', second]] as const) {
      const raw = scratch.path(`snapshot-${name}.raw`);
      qemuImg(['convert', '-l', `snapshot.name=${name}`, '-O', 'raw', path, raw]);
      expectSame(new Uint8Array(readFileSync(raw)), bytes);
    }
  });
});

describe.skipIf(!hasQemu)('tsvmm\'s check agrees with qemu-img check', () => {
  it('on clean, leaking and corrupt images', () => {
    const path = scratch.path('agree.qcow2');
    qemuImg(['create', '-f', 'qcow2', '-o', 'cluster_size=4096', path, '4M']);
    qemuIo(path, ['write -P 1 0 100k', 'write -c -P 2 1M 4k']);
    qemuImg(['snapshot', '-c', 'snap', path]);
    qemuIo(path, ['write -P 3 8k 8k']);
    const compare = () => {
      const ours = checkQcow2(path);
      const theirs = qemuImg(['check', path], { allowFailure: true });
      expect(checkExitStatus(ours)).toBe(theirs.status);
      for (const line of [...ours.errors, ...ours.leaks]) expect(theirs.stderr + theirs.stdout).toContain(line);
      return ours;
    };
    expect(checkExitStatus(compare())).toBe(0);
    // Drop a data cluster's L2 entry: its cluster leaks.
    writeU64(path, l2EntryOffset(path, 0, 4096), 0n);
    expect(checkExitStatus(compare())).toBe(3);
    // Point another entry at a cluster already in use: corruption.
    const entry = l2EntryOffset(path, 5, 4096);
    writeU64(path, entry, readU64(path, l2EntryOffset(path, 6, 4096)));
    expect(checkExitStatus(compare())).toBe(2);
  });
});
