// `tsvmm img resize` against Debian's qemu-img: the same sequence of resizes
// applied by both to copies of one image reads back the same bytes, qemu-img
// check finds nothing on tsvmm's result, and the space that grows into view
// reads as zeros (also where a shrink left old data, or a larger backing file
// lies underneath).
import { afterAll, describe, expect, it } from 'vitest';
import { copyFileSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { imgResize, parseNewSize } from '../../src/cli/img.ts';
import { InputError } from '../../src/errors.ts';
import { ofdByteLocks } from '../../src/kvm/index.ts';
import { ImageLock } from '../../src/storage/image-lock.ts';
import { openDisk } from '../../src/storage/block-backend.ts';
import { createInternalSnapshot } from '../../src/storage/internal-snapshots.ts';
import { createQcow2 } from '../../src/storage/qcow2/create.ts';
import { createRaw } from '../../src/storage/raw.ts';
import { expectClean, hasQemu, pattern, qemuImg, readImage, run, scratchDir } from './helpers/images.ts';

const TSVMM = fileURLToPath(new URL('../../src/cli/tsvmm.mjs', import.meta.url));
const scratch = scratchDir();
afterAll(() => scratch.remove());
const KiB = 2 ** 10;
const MiB = 2 ** 20;

function fillDisk(path: string, seed: number): void {
  const disk = openDisk(path);
  try {
    for (let offset = 0; offset < disk.size; offset += 256 * KiB) {
      disk.write(offset, pattern(Math.min(256 * KiB, disk.size - offset), seed + offset));
    }
    disk.flush();
  } finally {
    disk.close();
  }
}


/** The disk as QEMU reads it. */
function qemuRead(path: string): Uint8Array {
  const raw = `${path}.as-read-by-qemu.raw`;
  qemuImg(['convert', '-O', 'raw', path, raw]);
  return new Uint8Array(readFileSync(raw));
}


function virtualSizeByQemu(path: string): number {
  return (JSON.parse(qemuImg(['info', '--output', 'json', path]).stdout) as { 'virtual-size': number })['virtual-size'];
}

/** Each step done by tsvmm on `path` and by qemu-img on a copy: the same sizes; the disks as QEMU reads them. */
function resizeBoth(path: string, steps: { size: string; shrink?: boolean }[]): { mine: Uint8Array; theirs: Uint8Array } {
  const theirs = `${path}.qemu.qcow2`;
  copyFileSync(path, theirs);
  for (const { size, shrink } of steps) {
    expect(imgResize(path, size, { ...(shrink ? { shrink } : {}) }).stdout).toBe('Image resized.\n');
    qemuImg(['resize', ...(shrink ? ['--shrink'] : []), theirs, ...(size.startsWith('-') ? ['--'] : []), size]);
    expectClean(path);
    expect(virtualSizeByQemu(path)).toBe(virtualSizeByQemu(theirs));
  }
  const mine = readImage(path);
  expect(Buffer.compare(mine, qemuRead(path))).toBe(0);
  return { mine, theirs: qemuRead(theirs) };
}

function expectSameDisks({ mine, theirs }: { mine: Uint8Array; theirs: Uint8Array }): void {
  expect(Buffer.compare(mine, theirs)).toBe(0);
}

describe.skipIf(!hasQemu)('img resize of qcow2 images, against qemu-img resize', () => {
  it('grows within the L1 table and past it (a new, larger L1 table), keeping the data', () => {
    const path = scratch.path('grow.qcow2');
    createQcow2(path, { size: 4 * MiB, clusterSize: 512 });
    fillDisk(path, 1);
    const before = readImage(path);
    expectSameDisks(resizeBoth(path, [{ size: '+512' }, { size: '16M' }, { size: '+16M' }]));
    const after = readImage(path);
    expect(after.length).toBe(32 * MiB);
    expect(Buffer.compare(after.subarray(0, before.length), before)).toBe(0);
    expect(after.subarray(before.length).every((b) => b === 0)).toBe(true);
  });

  it('grows an image of small clusters to an L1 table larger than one refcount block counts (its run goes past the end of the file)', () => {
    // 512-byte clusters: a refcount block counts 256 of them, and 1 GiB needs an L1 table of 512 clusters.
    const path = scratch.path('small-clusters.qcow2');
    createQcow2(path, { size: MiB, clusterSize: 512, version: 2 });
    fillDisk(path, 6);
    const before = readImage(path);
    imgResize(path, '1G', {});
    expectClean(path);
    expect(virtualSizeByQemu(path)).toBe(2 ** 30);
    const disk = openDisk(path, { readOnly: true });
    try {
      const head = new Uint8Array(MiB);
      disk.read(0, head);
      expect(Buffer.compare(head, before)).toBe(0);
      const tail = new Uint8Array(MiB);
      disk.read(2 ** 30 - MiB, tail);
      expect(tail.every((b) => b === 0)).toBe(true);
    } finally {
      disk.close();
    }
    // What QEMU reads: the old data, then zeros (compared with a sparse raw file, not read into memory).
    const expected = scratch.path('small-clusters.expected.raw');
    writeFileSync(expected, before);
    truncateSync(expected, 2 ** 30);
    expect(qemuImg(['compare', '-f', 'qcow2', '-F', 'raw', path, expected]).stdout).toMatch(/Images are identical/);
  });

  it('shrinks only with --shrink, frees what lay past the new end, and what grows back reads as zeros', () => {
    const path = scratch.path('shrink.qcow2');
    createQcow2(path, { size: 8 * MiB, clusterSize: 65536 });
    fillDisk(path, 2);
    const original = readFileSync(path);
    const before = readImage(path);
    expect(() => imgResize(path, '1M', {})).toThrow(/use --shrink/);
    expect(Buffer.compare(readFileSync(path), original)).toBe(0);

    // 1 MiB + 512: the last cluster is kept whole, with old data past the new end.
    const { mine: after, theirs } = resizeBoth(path, [{ size: `${MiB + 512}`, shrink: true }, { size: '8M' }]);
    // QEMU 7.2 shows that old data again when the disk grows back; tsvmm reads zeros there.
    const tail = MiB + 65536;
    expect(Buffer.compare(theirs.subarray(MiB + 512, tail), before.subarray(MiB + 512, tail))).toBe(0);
    expect(Buffer.compare(after.subarray(0, MiB + 512), theirs.subarray(0, MiB + 512))).toBe(0);
    expect(Buffer.compare(after.subarray(tail), theirs.subarray(tail))).toBe(0);
    expect(Buffer.compare(after.subarray(0, MiB + 512), before.subarray(0, MiB + 512))).toBe(0);
    expect(after.subarray(MiB + 512).every((b) => b === 0)).toBe(true);
  });

  it('gives the freed clusters back: the file ends after the last cluster in use', () => {
    const path = scratch.path('truncate.qcow2');
    createQcow2(path, { size: 16 * MiB, clusterSize: 65536 });
    fillDisk(path, 3);
    const full = statSync(path).size;
    imgResize(path, '2M', { shrink: true });
    expectClean(path);
    expect(statSync(path).size).toBeLessThan(full - 13 * MiB);
  });

  it('grows an overlay over a larger backing file: the new space reads as zeros, not as the backing file', () => {
    const base = scratch.path('base.qcow2');
    createQcow2(base, { size: 4 * MiB });
    fillDisk(base, 4);
    const overlay = scratch.path('overlay.qcow2');
    createQcow2(overlay, { size: MiB, backingFile: base, backingFormat: 'qcow2' });
    expectSameDisks(resizeBoth(overlay, [{ size: '4M' }]));
    const after = readImage(overlay);
    expect(Buffer.compare(after.subarray(0, MiB), readImage(base).subarray(0, MiB))).toBe(0);
    expect(after.subarray(MiB).every((b) => b === 0)).toBe(true);
  });

  it('refuses an image with internal snapshots, and sizes that are not whole sectors', () => {
    const path = scratch.path('snapshots.qcow2');
    createQcow2(path, { size: MiB });
    createInternalSnapshot(path, 'one');
    expect(() => imgResize(path, '2M', {})).toThrow(/has internal snapshots/);
    const plain = scratch.path('sectors.qcow2');
    createQcow2(plain, { size: MiB });
    expect(() => imgResize(plain, '+1000', {})).toThrow(/multiple of 512/);
    expect(virtualSizeByQemu(plain)).toBe(MiB);
  });
});

describe('img resize of raw images', () => {
  it('grows with zeros and shrinks with --shrink, like qemu-img', () => {
    const path = scratch.path('disk.raw');
    createRaw(path, MiB);
    fillDisk(path, 5);
    const before = readImage(path);
    imgResize(path, '+1M', { format: 'raw' });
    expect(statSync(path).size).toBe(2 * MiB);
    const grown = readImage(path);
    expect(Buffer.compare(grown.subarray(0, MiB), before)).toBe(0);
    expect(grown.subarray(MiB).every((b) => b === 0)).toBe(true);
    expect(() => imgResize(path, '-1536K', { format: 'raw' })).toThrow(/use --shrink/);
    imgResize(path, '-1536K', { format: 'raw', shrink: true });
    expect(Buffer.compare(readImage(path), before.subarray(0, 512 * KiB))).toBe(0);
    if (hasQemu) expect(virtualSizeByQemu(path)).toBe(512 * KiB);
  });

  it('reads sizes as qemu-img does: absolute, +SIZE, -SIZE; never zero or below', () => {
    expect(parseNewSize('64M', MiB)).toBe(64 * MiB);
    expect(parseNewSize('+1K', MiB)).toBe(MiB + KiB);
    expect(parseNewSize('-512K', MiB)).toBe(512 * KiB);
    expect(() => parseNewSize('-1M', MiB)).toThrow(InputError);
    expect(() => parseNewSize('0', MiB)).toThrow(/must be positive/);
    expect(() => parseNewSize('12Q', MiB)).toThrow(/is not a disk size/);
  });

  it('refuses an image a VM has open', () => {
    const path = scratch.path('in-use.raw');
    createRaw(path, MiB);
    const vm = ImageLock.acquire(path, 'write', ofdByteLocks);
    try {
      expect(() => imgResize(path, '2M', { format: 'raw' })).toThrow(/Failed to get "write" lock/);
    } finally {
      vm.release();
    }
    expect(statSync(path).size).toBe(MiB);
  });

  it('the command says what is wrong in one line, exit status 2', () => {
    const path = scratch.path('cli.raw');
    createRaw(path, MiB);
    const refused = run(process.execPath, [TSVMM, 'img', 'resize', path, '--', '-512K']);
    expect(refused.status).toBe(2);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toMatch(/--shrink/);
    const grown = run(process.execPath, [TSVMM, 'img', 'resize', '-f', 'raw', path, '2M']);
    expect(grown).toMatchObject({ status: 0, stdout: 'Image resized.\n' });
    expect(statSync(path).size).toBe(2 * MiB);
  });
});
