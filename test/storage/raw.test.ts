// The raw backend: the file is the disk.
import { afterAll, describe, expect, it } from 'vitest';
import { truncateSync, writeFileSync } from 'node:fs';
import { InputError } from '../../src/errors.ts';
import { openDisk } from '../../src/storage/block-backend.ts';
import { createRaw, RawDisk } from '../../src/storage/raw.ts';
import { filled, pattern, scratchDir } from './helpers/images.ts';

const scratch = scratchDir();
afterAll(() => scratch.remove());

describe('raw images', () => {
  it('take their size from the file and read back what was written', () => {
    const path = scratch.path('a.img');
    createRaw(path, 1 << 20);
    const disk = openDisk(path);
    expect(disk).toBeInstanceOf(RawDisk);
    expect(disk.size).toBe(1 << 20);
    expect(disk.description).toBe(`${path} (raw)`);
    const data = pattern(8192, 1);
    disk.write(4096, data);
    disk.flush();
    const back = new Uint8Array(8192 + 1024);
    disk.read(4096 - 512, back);
    expect(back.subarray(0, 512)).toEqual(filled(512, 0));
    expect(back.subarray(512, 512 + 8192)).toEqual(data);
    disk.close();
  });

  it('read into and write from views of a larger buffer (guest RAM) in place', () => {
    const path = scratch.path('views.img');
    createRaw(path, 64 * 1024);
    const disk = openDisk(path, { format: 'raw' });
    const ram = new Uint8Array(new SharedArrayBuffer(16 * 1024));
    ram.set(pattern(4096, 2), 4096);
    disk.write(512, ram.subarray(4096, 8192));
    ram.fill(0xee);
    disk.read(512, ram.subarray(8192, 12288));
    expect(ram.subarray(8192, 12288)).toEqual(pattern(4096, 2));
    expect(ram.subarray(0, 8192)).toEqual(filled(8192, 0xee));
    expect(ram.subarray(12288)).toEqual(filled(4096, 0xee));
    disk.close();
  });

  it('opened read-only refuse writes', () => {
    const path = scratch.path('ro.img');
    createRaw(path, 4096);
    const disk = openDisk(path, { readOnly: true });
    expect(disk.readOnly).toBe(true);
    expect(() => disk.write(0, filled(512, 1))).toThrow(InputError);
    expect(() => disk.write(0, filled(512, 1))).toThrow(/read-only/);
    disk.close();
  });

  it('must be whole sectors, and must exist', () => {
    const odd = scratch.path('odd.img');
    writeFileSync(odd, filled(1000, 0));
    expect(() => openDisk(odd)).toThrow(/odd\.img: a raw image must be a whole number of 512-byte sectors; it is 1000 bytes/);
    expect(() => openDisk(scratch.path('missing.img'))).toThrow(/missing\.img: cannot open.*ENOENT: no such file or directory$/);
    expect(() => openDisk(scratch.dir)).toThrow(InputError);
  });

  it('report a file truncated under them as an I/O error naming the file', () => {
    const path = scratch.path('shrinks.img');
    createRaw(path, 8192);
    const disk = openDisk(path);
    truncateSync(path, 4096);
    expect(() => disk.read(4096, new Uint8Array(512))).toThrow(/shrinks\.img: read of 512 bytes at offset 4096 lies past the end of the file/);
    disk.close();
  });
});
