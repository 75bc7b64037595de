// tsvmm img: create, info, convert and check, side by side with qemu-img.
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { InputError } from '../../src/errors.ts';
import { formatImageSize, imgCheck, imgConvert, imgCreate, imgInfo, parseImageSize } from '../../src/cli/img.ts';
import { openDisk } from '../../src/storage/block-backend.ts';
import { checkQcow2 } from '../../src/storage/qcow2/check.ts';
import { hasQemu, qemuImg, qemuIo, run, scratchDir } from './helpers/images.ts';
import { refcountOffset, writeU16 } from './helpers/patch.ts';

const TSVMM = fileURLToPath(new URL('../../src/cli/tsvmm.mjs', import.meta.url));
const scratch = scratchDir();
afterAll(() => scratch.remove());
const MiB = 2 ** 20;

const tsvmm = (args: string[]) => run(process.execPath, [TSVMM, ...args]);
const qemuInfo = (path: string) => JSON.parse(qemuImg(['info', '--output', 'json', path]).stdout) as Record<string, unknown>;
const ourInfo = (path: string) => JSON.parse(imgInfo(path, { output: 'json' }).stdout) as Record<string, unknown>;

describe('img sizes', () => {
  it('read like qemu-img\'s: bytes, or K/M/G/T suffixes', () => {
    expect(parseImageSize('64M')).toBe(64 * MiB);
    expect(parseImageSize('1G')).toBe(1024 * MiB);
    expect(parseImageSize('512K')).toBe(512 * 1024);
    expect(parseImageSize('1.5G')).toBe(1536 * MiB);
    expect(parseImageSize('64MiB')).toBe(64 * MiB);
    expect(parseImageSize('4096')).toBe(4096);
    expect(() => parseImageSize('lots')).toThrow(InputError);
    expect(() => parseImageSize('-1M')).toThrow(InputError);
  });

  it('print like qemu-img\'s: three digits and a binary unit', () => {
    expect(formatImageSize(0)).toBe('0 B');
    expect(formatImageSize(397312)).toBe('388 KiB');
    expect(formatImageSize(64 * MiB)).toBe('64 MiB');
    expect(formatImageSize(1000 * 1024)).toBe('0.977 MiB');
    expect(formatImageSize(1536 * MiB)).toBe('1.5 GiB');
  });
});

describe('img create', () => {
  it('rounds sizes up to whole sectors and checks its options', () => {
    const raw = scratch.path('odd.img');
    expect(imgCreate(raw, '1000', {}).stdout).toBe(`Formatting '${raw}', fmt=raw size=1024\n`);
    expect(statSync(raw).size).toBe(1024);
    expect(() => imgCreate(scratch.path('x.img'), undefined, {})).toThrow(/needs a SIZE/);
    expect(() => imgCreate(scratch.path('x.img'), '1M', { format: 'vmdk' })).toThrow(/-f "vmdk" is not a format tsvmm knows/);
    expect(() => imgCreate(scratch.path('x.img'), '1M', { backing: 'b.img' })).toThrow(/needs -f qcow2/);
    expect(() => imgCreate(scratch.path('x.qcow2'), '1M', { format: 'qcow2', options: 'cluster_size=3000' })).toThrow(/not a power of two/);
    expect(() => imgCreate(scratch.path('x.qcow2'), '1M', { format: 'qcow2', options: 'preallocation=full' })).toThrow(/tsvmm knows cluster_size=SIZE and compat/);
  });
});

describe.skipIf(!hasQemu)('img against qemu-img', () => {
  it('create: qemu-img info sees what was asked for, and qemu-img check finds nothing', () => {
    const path = scratch.path('created.qcow2');
    imgCreate(path, '64M', { format: 'qcow2', options: 'cluster_size=4K' });
    expect(qemuInfo(path)).toMatchObject({
      'virtual-size': 64 * MiB,
      'cluster-size': 4096,
      format: 'qcow2',
      'format-specific': { type: 'qcow2', data: { compat: '1.1', 'refcount-bits': 16, 'lazy-refcounts': false, corrupt: false } },
    });
    expect(qemuImg(['check', path]).status).toBe(0);
    const v2 = scratch.path('created-v2.qcow2');
    imgCreate(v2, '1G', { format: 'qcow2', options: 'compat=0.10' });
    expect(qemuInfo(v2)).toMatchObject({ 'virtual-size': 2 ** 30, 'format-specific': { data: { compat: '0.10' } } });
    expect(qemuImg(['check', v2]).status).toBe(0);
  });

  it('create -b: the backing file\'s size, a relative name, and qemu reads through it', () => {
    const base = scratch.path('cli-base.qcow2');
    const overlay = scratch.path('cli-overlay.qcow2');
    qemuImg(['create', '-f', 'qcow2', base, '32M']);
    qemuIo(base, ['write -P 0x61 0 1M']);
    expect(imgCreate(overlay, undefined, { format: 'qcow2', backing: 'cli-base.qcow2', backingFormat: 'qcow2' }).stdout)
      .toBe(`Formatting '${overlay}', fmt=qcow2 cluster_size=65536 compat=1.1 backing_file=cli-base.qcow2 backing_fmt=qcow2 size=${32 * MiB}\n`);
    expect(qemuInfo(overlay)).toMatchObject({
      'virtual-size': 32 * MiB,
      'backing-filename': 'cli-base.qcow2',
      'full-backing-filename': base,
      'backing-filename-format': 'qcow2',
    });
    expect(qemuImg(['check', overlay]).status).toBe(0);
    qemuIo(overlay, ['read -P 0x61 0 1M', 'read -P 0 1M 1M']);
    // Without -F the format is probed and recorded.
    const probed = scratch.path('cli-probed.qcow2');
    imgCreate(probed, '16M', { format: 'qcow2', backing: 'cli-base.qcow2' });
    expect(qemuInfo(probed)).toMatchObject({ 'virtual-size': 16 * MiB, 'backing-filename-format': 'qcow2' });
  });

  it('info --output json is qemu-img\'s, for images either of them made', () => {
    const images: string[] = [];
    const make = (name: string, args: string[]) => {
      const path = scratch.path(name);
      qemuImg(['create', ...args.map((a) => a.replace('$', path))]);
      images.push(path);
    };
    make('qi-plain.qcow2', ['-f', 'qcow2', '$', '100M']);
    make('qi-v2.qcow2', ['-f', 'qcow2', '-o', 'compat=0.10,cluster_size=512', '$', '10M']);
    make('qi-refcount8.qcow2', ['-f', 'qcow2', '-o', 'refcount_bits=8,lazy_refcounts=on', '$', '1G']);
    make('qi-overlay.qcow2', ['-f', 'qcow2', '-b', 'qi-plain.qcow2', '-F', 'qcow2', '$']);
    make('qi-raw.img', ['-f', 'raw', '$', '5M']);
    qemuIo(images[0]!, ['write -P 1 0 3M']);
    const ours = scratch.path('ti.qcow2');
    imgCreate(ours, '20M', { format: 'qcow2', backing: 'qi-raw.img', backingFormat: 'raw' });
    images.push(ours);
    for (const path of images) expect(ourInfo(path), path).toEqual(qemuInfo(path));
  });

  it('info prints what qemu-img info prints', () => {
    const path = scratch.path('human.qcow2');
    qemuImg(['create', '-f', 'qcow2', path, '64M']);
    const overlay = scratch.path('human-overlay.qcow2');
    qemuImg(['create', '-f', 'qcow2', '-b', path, '-F', 'qcow2', overlay]);
    qemuIo(overlay, ['write -P 7 0 300k']);
    for (const image of [path, overlay]) expect(imgInfo(image, {}).stdout).toBe(qemuImg(['info', image]).stdout);
  });

  it('convert: the same disk, all-zero clusters left out, into qcow2 or raw', async () => {
    const base = scratch.path('conv-base.qcow2');
    const top = scratch.path('conv-top.qcow2');
    qemuImg(['create', '-f', 'qcow2', base, '64M']);
    qemuIo(base, ['write -P 0x21 0 256k', 'write -P 0 1M 1M']);  // explicit zeros too
    qemuImg(['create', '-f', 'qcow2', '-o', 'cluster_size=4K', '-b', 'conv-base.qcow2', '-F', 'qcow2', top]);
    qemuIo(top, ['write -P 0x22 100k 8k', 'write -P 0x23 40M 1000']);
    const qcow2 = scratch.path('converted.qcow2');
    expect((await imgConvert(top, qcow2, { outputFormat: 'qcow2' })).status).toBe(0);
    expect(qemuImg(['compare', top, qcow2]).stdout).toMatch(/identical/);
    expect(qemuImg(['check', qcow2]).status).toBe(0);
    expect(qemuInfo(qcow2)['backing-filename']).toBeUndefined();  // flattened
    expect(checkQcow2(qcow2).allocatedClusters).toBe(5);  // 256k of data and one cluster at 40M
    const raw = scratch.path('converted.raw');
    await imgConvert(qcow2, raw, {});
    expect(qemuImg(['compare', '-F', 'raw', top, raw]).stdout).toMatch(/identical/);
    expect(statSync(raw).blocks * 512).toBeLessThan(MiB);  // sparse
    const small = scratch.path('converted-4k.qcow2');
    await imgConvert(raw, small, { format: 'raw', outputFormat: 'qcow2', options: 'cluster_size=4096' });
    expect(qemuImg(['compare', top, small]).stdout).toMatch(/identical/);
    expect(qemuInfo(small)['cluster-size']).toBe(4096);
    // ...and what qemu-img convert makes of it matches.
    const theirs = scratch.path('theirs.raw');
    qemuImg(['convert', '-O', 'raw', small, theirs]);
    expect(readFileSync(theirs).equals(readFileSync(raw))).toBe(true);
    await expect(imgConvert(raw, raw, {})).rejects.toThrow(/is the source image .* itself/);
  });

  it('check: the same verdict and exit status as qemu-img check', () => {
    const path = scratch.path('cli-check.qcow2');
    qemuImg(['create', '-f', 'qcow2', path, '8M']);
    qemuIo(path, ['write -P 3 0 1M']);
    const clean = imgCheck(path, {});
    expect(clean.status).toBe(0);
    expect(clean.stdout).toBe(qemuImg(['check', path]).stdout);
    // Count a cluster past everything in use: a leak.
    const disk = openDisk(path);
    disk.close();
    const spare = Math.ceil(statSync(path).size / 65536);
    run('truncate', ['-s', `${(spare + 1) * 65536}`, path]);
    writeU16(path, refcountOffset(path, spare), 1);
    const leaky = imgCheck(path, {});
    const theirs = qemuImg(['check', path], { allowFailure: true });
    expect([leaky.status, theirs.status]).toEqual([3, 3]);
    expect(leaky.stdout).toBe(theirs.stdout);
    expect(leaky.stderr).toBe(theirs.stderr);
  });
});

describe('the tsvmm img command line', () => {
  it('runs, prints errors as one line, and exits 0, 2 or 3', () => {
    const path = scratch.path('spawned.qcow2');
    const created = tsvmm(['img', 'create', '-f', 'qcow2', '-o', 'cluster_size=64K', path, '64M']);
    expect(created.status).toBe(0);
    expect(created.stdout).toMatch(/^Formatting '.*spawned\.qcow2', fmt=qcow2 cluster_size=65536 compat=1\.1 size=67108864$/m);
    const info = tsvmm(['img', 'info', '--output', 'json', path]);
    expect(JSON.parse(info.stdout)).toMatchObject({ 'virtual-size': 64 * MiB, format: 'qcow2' });
    expect(tsvmm(['img', 'check', path])).toMatchObject({ status: 0, stdout: expect.stringMatching(/No errors were found on the image/) });
    const missing = tsvmm(['img', 'info', scratch.path('missing.qcow2')]);
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/^tsvmm: .*missing\.qcow2: cannot open: ENOENT: no such file or directory\n$/);
    const bad = tsvmm(['img', 'create', '-f', 'qcow2', path, '12 parsecs']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/^tsvmm: "12 parsecs" is not a disk size/);
  });
});
