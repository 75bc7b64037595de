// img convert: never onto its own source or backing chain, never a half file
// under the user's name, and a cost that follows the allocated data.
import { createHash } from 'node:crypto';
import { linkSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { copyDisk, imgConvert } from '../../src/cli/img.ts';
import { openDisk, type BlockBackend, type BlockStatus } from '../../src/storage/block-backend.ts';
import { createQcow2 } from '../../src/storage/qcow2/create.ts';
import { createRaw } from '../../src/storage/raw.ts';
import { hasQemu, qemuImg, qemuIo, scratchDir } from './helpers/images.ts';

const scratch = scratchDir();
afterAll(() => scratch.remove());
const TiB = 2 ** 40;

const digest = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

describe.skipIf(!hasQemu)('img convert onto its own source', () => {
  it('is refused through a symlink, a hard link or a backing file, before anything is written', async () => {
    const base = scratch.path('self-base.qcow2');
    const top = scratch.path('self-top.qcow2');
    qemuImg(['create', '-q', '-f', 'qcow2', base, '4M']);
    qemuIo(base, ['write -P 0x5a 0 1M']);
    qemuImg(['create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', top]);
    qemuIo(top, ['write -P 0x6b 2M 64k']);
    const soft = scratch.path('self-soft.qcow2');
    const hard = scratch.path('self-hard.qcow2');
    symlinkSync(top, soft);
    linkSync(top, hard);
    const before = [digest(top), digest(base)];
    for (const [dst, format] of [[soft, 'qcow2'], [hard, 'raw'], [top, 'raw']] as const) {
      await expect(imgConvert(top, dst, { outputFormat: format })).rejects.toThrow(`convert: ${dst} is the source image ${top} itself`);
    }
    await expect(imgConvert(top, base, {})).rejects.toThrow(`convert: ${base} is ${base}, a backing file of ${top}`);
    expect([digest(top), digest(base)]).toEqual(before);
    expect(qemuImg(['check', top]).status).toBe(0);
  });

  it('writes through a destination symlink to the file it names, replacing it whole', async () => {
    const src = scratch.path('through-src.raw');
    writeFileSync(src, Buffer.alloc(65536, 0x11));
    const real = scratch.path('through-real.raw');
    writeFileSync(real, Buffer.alloc(4096, 0x22));
    const link = scratch.path('through-link.raw');
    symlinkSync(real, link);
    expect((await imgConvert(src, link, { format: 'raw' })).status).toBe(0);
    expect(readFileSync(real).equals(readFileSync(src))).toBe(true);
  });
});

describe('a failed or interrupted img convert', () => {
  const leftovers = () => readdirSync(scratch.dir).filter((name) => name.includes('tsvmm-convert'));

  it('leaves the destination as it was and no temporary file (a read error half way)', async () => {
    const src = scratch.path('fails.raw');
    createRaw(src, 8 * 2 ** 20);
    const dst = scratch.path('fails-dst.raw');
    writeFileSync(dst, 'the user\'s old file');
    const disk = openDisk(src, { format: 'raw', readOnly: true });
    // The real convert path, with a source that fails after 4 MiB.
    let reads = 0;
    const failing: BlockBackend = {
      size: disk.size, readOnly: true, description: 'failing', flush: () => {}, close: () => disk.close(), write: () => {},
      blockStatus: (offset, length) => disk.blockStatus(offset, length),
      read(offset, buffer) {
        if (++reads > 4) throw new Error('EIO');
        disk.read(offset, buffer);
      },
    };
    const out = openDisk(createTemporary(), { format: 'raw' });
    await expect(copyDisk(failing, out, { grain: 4096 })).rejects.toThrow('EIO');
    out.close();
    failing.close();
    // And through imgConvert: a source truncated under a qcow2 header fails on its first cluster.
    const broken = scratch.path('broken.qcow2');
    createQcow2(broken, { size: 2 ** 20, clusterSize: 65536, version: 3 });
    const bytes = readFileSync(broken);
    bytes.writeBigUInt64BE(0x80000000_00100000n, 3 * 65536);  // L1[0] -> an L2 table past the end of the file
    writeFileSync(broken, bytes);
    await expect(imgConvert(broken, dst, {})).rejects.toThrow(/past the end of the file/);
    expect(readFileSync(dst, 'utf8')).toBe('the user\'s old file');
    expect(leftovers().filter((name) => name.includes('fails-dst'))).toEqual([]);
  });

  it('stops on SIGTERM with status 143, removing what it wrote', async () => {
    const src = scratch.path('long.raw');
    writeFileSync(src, Buffer.alloc(48 * 2 ** 20, 0x33));
    const dst = scratch.path('long-dst.raw');
    const converting = imgConvert(src, dst, { format: 'raw' });
    // imgConvert runs until its first look at the event loop; the signal is there by then.
    process.emit('SIGTERM', 'SIGTERM');
    const result = await converting;
    expect([result.status, result.stderr]).toEqual([143, `tsvmm: img convert: stopped by SIGTERM; ${dst} was not written\n`]);
    expect(() => statSync(dst)).toThrow(/ENOENT/);
    expect(leftovers()).toEqual([]);
  });

  let temporaries = 0;
  function createTemporary(): string {
    const path = scratch.path(`scratch-${temporaries++}.raw`);
    createRaw(path, 8 * 2 ** 20);
    return path;
  }
});

describe.skipIf(!hasQemu)('img convert of a sparse 1 TiB image', () => {
  /** The disk with its reads and block-status calls counted. */
  function counting(disk: BlockBackend): BlockBackend & { reads: number; statusCalls: number } {
    const counted = {
      size: disk.size, readOnly: true, description: disk.description, reads: 0, statusCalls: 0,
      read(offset: number, buffer: Uint8Array) { counted.reads++; disk.read(offset, buffer); },
      write() { throw new Error('read-only'); },
      flush() {},
      close() { disk.close(); },
      blockStatus(offset: number, length: number): BlockStatus {
        counted.statusCalls++;
        return disk.blockStatus(offset, length);
      },
    };
    return counted;
  }

  for (const format of ['raw', 'qcow2'] as const) {
    it(`into ${format}: reads only the data, and qemu-img compare finds the same disk`, async () => {
      const src = scratch.path(`huge-${format}.qcow2`);
      qemuImg(['create', '-q', '-f', 'qcow2', src, '1T']);
      qemuIo(src, ['write -P 0xab 0 64k', 'write -P 0xcd 512G 128k', 'write -z 700G 1M', 'write -P 0xef 1023G 64k']);
      const source = counting(openDisk(src, { readOnly: true }));
      const dst = scratch.path(`huge-out.${format}`);
      if (format === 'raw') createRaw(dst, TiB);
      else createQcow2(dst, { size: TiB, clusterSize: 65536, version: 3 });
      const out = openDisk(dst, { format });
      try {
        await copyDisk(source, out, { grain: 65536 });
      } finally {
        out.close();
        source.close();
      }
      // Three data extents, each read in one piece; the rest of the terabyte is never read.
      expect(source.reads).toBe(3);
      expect(source.statusCalls).toBeLessThan(20);
      expect(qemuImg(['compare', '-F', format, src, dst]).stdout).toMatch(/identical/);
      expect(statSync(dst).blocks * 512).toBeLessThan(2 * 2 ** 20);
    });
  }
});
