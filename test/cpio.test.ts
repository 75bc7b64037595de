import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CPIO_HEADER_SIZE, CpioError, CpioWriter, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, normalizeCpioPath, readCpio,
} from '../src/boot/cpio.ts';

const ascii = (bytes: Uint8Array, from = 0, to = bytes.length) => Buffer.from(bytes.subarray(from, to)).toString('latin1');
const hex8 = (n: number) => n.toString(16).toUpperCase().padStart(8, '0');

/** The header the format defines, field by field. */
function expectedHeader(f: { ino: number; mode: number; nlink: number; mtime?: number; size: number; rdev?: [number, number]; namesize: number }): string {
  return '070701' + [f.ino, f.mode, 0, 0, f.nlink, f.mtime ?? 0, f.size, 0, 0, f.rdev?.[0] ?? 0, f.rdev?.[1] ?? 0, f.namesize, 0].map(hex8).join('');
}

/** A small archive with one of everything. */
function sample(): Uint8Array {
  return new CpioWriter()
    .directory('/dev')
    .charDevice('/dev/console', 5, 1, 0o600)
    .charDevice('/dev/null', 1, 3, 0o666)
    .directory('bin')
    .file('bin/busybox', new Uint8Array([0x7f, 0x45, 0x4c, 0x46, 1, 2, 3]), 0o755)
    .symlink('bin/sh', 'busybox')
    .file('init', '#!/bin/sh\necho hi\n', 0o755)
    .file('etc/empty', new Uint8Array(0))
    .finish();
}

describe('newc cpio writer: bytes', () => {
  it('writes a file entry byte for byte: header, name, NUL padding, data, padding', () => {
    const out = new CpioWriter().file('init', 'abcde', 0o755).finish();
    const header = expectedHeader({ ino: 1, mode: S_IFREG | 0o755, nlink: 1, size: 5, namesize: 5 });
    expect(header.length).toBe(CPIO_HEADER_SIZE);
    expect(ascii(out, 0, 110)).toBe(header);
    // 110 + "init\0" = 115 -> padded to 116; data 5 -> 8.
    expect([...out.subarray(110, 116)]).toEqual([0x69, 0x6e, 0x69, 0x74, 0, 0]);
    expect(ascii(out, 116, 121)).toBe('abcde');
    expect([...out.subarray(121, 124)]).toEqual([0, 0, 0]);
    // Then the trailer: ino 0, mode 0, nlink 1, namesize 11 ("TRAILER!!!\0"), 110+11 -> 124.
    expect(ascii(out, 124, 234)).toBe(expectedHeader({ ino: 0, mode: 0, nlink: 1, size: 0, namesize: 11 }));
    expect(ascii(out, 234, 245)).toBe('TRAILER!!!\0');
    expect([...out.subarray(245)]).toEqual([0, 0, 0]);
    expect(out.length).toBe(248);
  });

  it('writes device nodes as headers with rdev major/minor and no data (no root needed)', () => {
    const out = new CpioWriter().charDevice('dev/console', 5, 1).finish();
    // Implied parent "dev" first (ino 1), then the node (ino 2).
    expect(ascii(out, 0, 110)).toBe(expectedHeader({ ino: 1, mode: S_IFDIR | 0o755, nlink: 2, size: 0, namesize: 4 }));
    const at = 116; // 110 + "dev\0" = 114 -> 116
    expect(ascii(out, at, at + 110)).toBe(expectedHeader({ ino: 2, mode: S_IFCHR | 0o600, nlink: 1, size: 0, rdev: [5, 1], namesize: 12 }));
    expect(ascii(out, at + 110, at + 122)).toBe('dev/console\0');
  });

  it('writes a symlink whose data is the target without a NUL', () => {
    const out = new CpioWriter().symlink('sh', 'busybox').finish();
    expect(ascii(out, 0, 110)).toBe(expectedHeader({ ino: 1, mode: S_IFLNK | 0o777, nlink: 1, size: 7, namesize: 3 }));
    expect(ascii(out, 110, 116)).toBe('sh\0\0\0\0'); // 110 + "sh\0" = 113, padded to 116
    expect(ascii(out, 116, 124)).toBe('busybox\0'); // 7 bytes, padded to 8
  });

  it('pads header+name and data to 4 bytes for every name and data length', () => {
    for (let nameLength = 1; nameLength <= 8; nameLength++) {
      for (let dataLength = 0; dataLength <= 8; dataLength++) {
        const name = 'n'.repeat(nameLength);
        const data = new Uint8Array(dataLength).fill(0xaa);
        const out = new CpioWriter().file(name, data).finish();
        const dataStart = (110 + nameLength + 1 + 3) & ~3;
        const next = dataStart + ((dataLength + 3) & ~3);
        expect(dataStart % 4).toBe(0);
        expect(out.subarray(110 + nameLength + 1, dataStart).every((b) => b === 0)).toBe(true);
        expect(out.subarray(dataStart, dataStart + dataLength).every((b) => b === 0xaa)).toBe(true);
        expect(out.subarray(dataStart + dataLength, next).every((b) => b === 0)).toBe(true);
        expect(ascii(out, next, next + 6)).toBe('070701');
        expect(out.length % 4).toBe(0);
        expect(readCpio(out)).toHaveLength(1);
      }
    }
  });

  it('is deterministic: the same inputs give the same bytes', () => {
    expect(Buffer.from(sample()).equals(Buffer.from(sample()))).toBe(true);
  });
});

describe('newc cpio writer: what the Linux initramfs unpacker needs', () => {
  const entries = readCpio(sample());

  it('is newc ("070701", no CRC: check field 0), every header 110 bytes', () => {
    const out = sample();
    let at = 0;
    for (;;) {
      expect(ascii(out, at, at + 6)).toBe('070701');
      const namesize = parseInt(ascii(out, at + 94, at + 102), 16);
      const size = parseInt(ascii(out, at + 54, at + 62), 16);
      expect(ascii(out, at + 102, at + 110)).toBe('00000000');
      const name = ascii(out, at + 110, at + 110 + namesize - 1);
      at = ((at + 110 + namesize + 3) & ~3) + ((size + 3) & ~3);
      if (name === 'TRAILER!!!') break;
    }
    expect(at).toBe(out.length);
  });

  it('has unique inode numbers, uid/gid 0, relative names, parents before children', () => {
    const inos = entries.map((e) => e.ino);
    expect(new Set(inos).size).toBe(inos.length);
    expect(inos.every((i) => i > 0)).toBe(true);
    const seen = new Set<string>();
    for (const e of entries) {
      expect(e.uid).toBe(0);
      expect(e.gid).toBe(0);
      expect(e.name.startsWith('/')).toBe(false);
      const parent = e.name.includes('/') ? e.name.slice(0, e.name.lastIndexOf('/')) : null;
      if (parent) expect(seen.has(parent)).toBe(true);
      seen.add(e.name);
    }
    expect(entries.map((e) => e.name)).toEqual(['dev', 'dev/console', 'dev/null', 'bin', 'bin/busybox', 'bin/sh', 'init', 'etc', 'etc/empty']);
  });

  it('gives directories nlink 2 and everything else nlink 1 (so nothing looks like a hard link)', () => {
    for (const e of entries) expect(e.nlink).toBe((e.mode & S_IFMT) === S_IFDIR ? 2 : 1);
  });

  it('reads back what was written', () => {
    const console = entries.find((e) => e.name === 'dev/console')!;
    expect([console.mode, console.rdevMajor, console.rdevMinor]).toEqual([S_IFCHR | 0o600, 5, 1]);
    expect(ascii(entries.find((e) => e.name === 'bin/sh')!.data)).toBe('busybox');
    expect(ascii(entries.find((e) => e.name === 'init')!.data)).toBe('#!/bin/sh\necho hi\n');
    expect(entries.find((e) => e.name === 'init')!.mode).toBe(S_IFREG | 0o755);
  });
});

describe('newc cpio writer: refuses what the format or the kernel cannot take', () => {
  it('normalizes leading "/" and "./", refuses "..", empty components and the trailer name', () => {
    expect(normalizeCpioPath('/dev/console')).toBe('dev/console');
    expect(normalizeCpioPath('./init')).toBe('init');
    for (const bad of ['', '/', 'a/../b', 'a//b', '.', 'TRAILER!!!', 'a\0b']) expect(() => normalizeCpioPath(bad)).toThrow(CpioError);
  });

  it('refuses duplicates, children of non-directories, bad modes and use after finish', () => {
    expect(() => new CpioWriter().file('a', 'x').file('/a', 'y')).toThrow(/already in the archive/);
    expect(() => new CpioWriter().file('a', 'x').file('a/b', 'y')).toThrow(/not a directory/);
    expect(() => new CpioWriter().file('a', 'x', 0o100644)).toThrow(/permission bits/);
    const w = new CpioWriter();
    w.finish();
    expect(() => w.file('a', 'x')).toThrow(CpioError);
    expect(() => w.finish()).toThrow(CpioError);
  });

  it('lets directory() set the mode of a directory a child already implied', () => {
    const entries = readCpio(new CpioWriter().file('root/.profile', 'x').directory('root', 0o700).finish());
    expect(entries[0]).toMatchObject({ name: 'root', mode: S_IFDIR | 0o700 });
  });

  it('readCpio rejects bad magic and non-zero padding', () => {
    const out = new CpioWriter().file('a', 'x').finish();
    const badMagic = out.slice();
    badMagic[5] = 0x37; // 070707: old portable format
    expect(() => readCpio(badMagic)).toThrow(/bad magic/);
    const badPad = out.slice();
    badPad[113] = 1; // 110 + "a\0" = 112 -> 112, data "x" at 112, padding 113..115
    expect(() => readCpio(badPad)).toThrow(/padding/);
  });
});

// Interoperability: other implementations must read our archives the same way.
function tool(name: string, args: string[]): string | null {
  const probe = spawnSync(name, args, { encoding: 'utf8' });
  return probe.error ? null : name;
}
const bsdtar = tool('bsdtar', ['--version']);
const gnuCpio = tool('cpio', ['--version']);
if (!bsdtar) console.warn('tsvmm tests: skipping the bsdtar interop test: bsdtar not found (apt-get install libarchive-tools)');
if (!gnuCpio) console.warn('tsvmm tests: skipping the GNU cpio interop test: cpio not found (apt-get install cpio)');
const isRoot = process.getuid?.() === 0;

function extractAndCompare(extract: (archive: string, into: string) => { status: number | null; stderr: string }): void {
  const scratch = mkdtempSync(join(tmpdir(), 'tsvmm-cpio-'));
  try {
    const archive = join(scratch, 'a.cpio');
    // Device nodes need root to be created; without root, leave them out of the extraction test.
    const w = new CpioWriter()
      .directory('bin')
      .file('bin/busybox', new Uint8Array(1000).map((_, i) => i & 0xff), 0o755)
      .symlink('bin/sh', 'busybox')
      .file('init', '#!/bin/sh\n', 0o755)
      .file('etc/motd', 'hello\n', 0o640)
      .directory('root', 0o700);
    if (isRoot) w.charDevice('dev/console', 5, 1, 0o600).charDevice('dev/null', 1, 3, 0o666);
    writeFileSync(archive, w.finish());
    const into = join(scratch, 'out');
    const result = extract(archive, into);
    expect(result.stderr).not.toMatch(/error|invalid|truncated/i);
    expect(result.status).toBe(0);
    expect([...readFileSync(join(into, 'bin/busybox'))]).toEqual([...new Uint8Array(1000).map((_, i) => i & 0xff)]);
    expect(lstatSync(join(into, 'bin/busybox')).mode & 0o7777).toBe(0o755);
    expect(readlinkSync(join(into, 'bin/sh'))).toBe('busybox');
    expect(readFileSync(join(into, 'init'), 'utf8')).toBe('#!/bin/sh\n');
    expect(readFileSync(join(into, 'etc/motd'), 'utf8')).toBe('hello\n');
    expect(lstatSync(join(into, 'etc/motd')).mode & 0o7777).toBe(0o640);
    expect(lstatSync(join(into, 'root')).isDirectory()).toBe(true);
    if (isRoot) {
      const console = lstatSync(join(into, 'dev/console'));
      expect(console.isCharacterDevice()).toBe(true);
      expect([Math.floor(console.rdev / 256) & 0xfff, console.rdev & 0xff]).toEqual([5, 1]);
      const devNull = lstatSync(join(into, 'dev/null'));
      expect([devNull.isCharacterDevice(), devNull.mode & 0o777]).toEqual([true, 0o666]);
    }
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

describe('newc cpio writer: interop', () => {
  it.skipIf(!bsdtar)('bsdtar lists it as newc ("SVR4 with no CRC") and extracts the same tree', () => {
    const scratch = mkdtempSync(join(tmpdir(), 'tsvmm-cpio-'));
    try {
      writeFileSync(join(scratch, 'a.cpio'), sample());
      const list = spawnSync('bsdtar', ['-tvvf', join(scratch, 'a.cpio')], { encoding: 'utf8' });
      expect(list.status).toBe(0);
      expect(list.stdout + list.stderr).toMatch(/SVR4 with no CRC/);
      expect(list.stdout).toMatch(/^crw------- .* 5,\s*1 .*dev\/console$/m);
      expect(list.stdout).toMatch(/^lrwxrwxrwx .* bin\/sh -> busybox$/m);
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
    extractAndCompare((archive, into) => {
      spawnSync('mkdir', ['-p', into]);
      return spawnSync('bsdtar', ['-xpf', archive, '-C', into], { encoding: 'utf8' });
    });
  });

  it.skipIf(!gnuCpio)('GNU cpio -idv extracts the same tree', () => {
    extractAndCompare((archive, into) => {
      spawnSync('mkdir', ['-p', into]);
      return spawnSync('sh', ['-c', 'cpio -idv --quiet --no-absolute-filenames < "$1"', 'sh', archive], { cwd: into, encoding: 'utf8' });
    });
  });
});
