// The "newc" cpio format (magic "070701"): the format of a Linux initramfs
// (Documentation/driver-api/early-userspace/buffer-format.rst).
//
// Each entry is a 110-byte ASCII header, the NUL-terminated name padded with
// NULs so that header + name is a multiple of 4 bytes, then the data padded to
// a multiple of 4. The header is the magic and 13 fields of 8 hex digits:
//
//   ino mode uid gid nlink mtime filesize devmajor devminor
//   rdevmajor rdevminor namesize check
//
// The archive ends with an entry named "TRAILER!!!". The kernel needs no root
// to create device nodes from an archive, so neither does this writer: a
// /dev/console entry is just a header with mode S_IFCHR and rdev 5:1.
//
// Everything is owned by root (uid/gid 0); mtime defaults to 0 so that the same
// inputs give the same bytes.

export const CPIO_NEWC_MAGIC = '070701';
export const CPIO_HEADER_SIZE = 110;
export const CPIO_TRAILER = 'TRAILER!!!';

export const S_IFMT = 0o170000;
export const S_IFIFO = 0o010000;
export const S_IFCHR = 0o020000;
export const S_IFDIR = 0o040000;
export const S_IFBLK = 0o060000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;

const MAX_FIELD = 0xffff_ffff;

export class CpioError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CpioError';
  }
}

/** One entry as read back by `readCpio`. */
export interface CpioEntry {
  name: string;
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  mtime: number;
  devMajor: number;
  devMinor: number;
  rdevMajor: number;
  rdevMinor: number;
  check: number;
  data: Uint8Array;
}

interface Pending {
  name: string;
  ino: number;
  mode: number;
  nlink: number;
  rdevMajor: number;
  rdevMinor: number;
  data: Uint8Array;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

const pad4 = (n: number): number => (n + 3) & ~3;

function hex8(value: number, field: string, name: string): string {
  if (!Number.isInteger(value) || value < 0 || value > MAX_FIELD) {
    throw new CpioError(`cpio: ${field} of ${name} is ${value}, outside 0..0xffffffff`);
  }
  return value.toString(16).toUpperCase().padStart(8, '0');
}

/**
 * Archive paths are relative ("dev/console"), as gen_init_cpio writes them.
 * A leading "/" or "./" is accepted and dropped; "." and ".." components, empty
 * components and NUL bytes are refused.
 */
export function normalizeCpioPath(path: string): string {
  let p = path;
  while (p.startsWith('./')) p = p.slice(2);
  p = p.replace(/^\/+/, '').replace(/\/+$/, '');
  if (p === '' || p.includes('\0')) throw new CpioError(`cpio: bad path ${JSON.stringify(path)}`);
  for (const part of p.split('/')) {
    if (part === '' || part === '.' || part === '..') throw new CpioError(`cpio: bad path ${JSON.stringify(path)}`);
  }
  if (p === CPIO_TRAILER) throw new CpioError(`cpio: ${CPIO_TRAILER} is reserved for the end of the archive`);
  return p;
}

function checkMode(mode: number, path: string): number {
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) {
    throw new CpioError(`cpio: mode of ${path} must be permission bits 0..0o7777, got ${mode}`);
  }
  return mode;
}

function checkDevice(value: number, what: string, path: string): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xfff_ffff) throw new CpioError(`cpio: ${what} of ${path} is ${value}`);
  return value;
}

/**
 * Builds a newc cpio archive in memory.
 *
 * ```ts
 * const cpio = new CpioWriter();
 * cpio.directory('dev').charDevice('dev/console', 5, 1).file('init', script, 0o755);
 * const bytes = cpio.finish();
 * ```
 * Parent directories that were not added are added (mode 0755) before their
 * first child, as the kernel's unpacker needs them to exist first.
 */
export class CpioWriter {
  private readonly entries: Pending[] = [];
  private readonly names = new Map<string, number>(); // name -> mode
  private nextIno = 1;
  private finished = false;
  private readonly mtime: number;

  constructor(options: { mtime?: number } = {}) {
    this.mtime = options.mtime ?? 0;
    hex8(this.mtime, 'mtime', 'the archive');
  }

  /** A directory. */
  directory(path: string, mode = 0o755): this {
    const name = normalizeCpioPath(path);
    const existing = this.names.get(name);
    if (existing !== undefined) {
      // Already there, e.g. implied by an earlier child: give it this mode.
      if ((existing & S_IFMT) !== S_IFDIR) throw new CpioError(`cpio: ${name} is already in the archive`);
      if (this.finished) throw new CpioError('cpio: the archive is already finished');
      const entry = this.entries.find((e) => e.name === name)!;
      entry.mode = S_IFDIR | checkMode(mode, name);
      this.names.set(name, entry.mode);
      return this;
    }
    return this.add(name, S_IFDIR | checkMode(mode, name), new Uint8Array(0), 0, 0);
  }

  /** A regular file; a string is written as UTF-8. */
  file(path: string, data: Uint8Array | string, mode = 0o644): this {
    const name = normalizeCpioPath(path);
    const bytes = typeof data === 'string' ? encoder.encode(data) : data;
    return this.add(name, S_IFREG | checkMode(mode, name), bytes, 0, 0);
  }

  /** A symbolic link; its data is the target, with no NUL. */
  symlink(path: string, target: string): this {
    const name = normalizeCpioPath(path);
    if (target === '' || target.includes('\0')) throw new CpioError(`cpio: bad symlink target for ${name}`);
    return this.add(name, S_IFLNK | 0o777, encoder.encode(target), 0, 0);
  }

  /** A character device node, e.g. /dev/console (5, 1) or /dev/null (1, 3). */
  charDevice(path: string, major: number, minor: number, mode = 0o600): this {
    const name = normalizeCpioPath(path);
    return this.add(name, S_IFCHR | checkMode(mode, name), new Uint8Array(0), checkDevice(major, 'major', name), checkDevice(minor, 'minor', name));
  }

  /** A block device node. */
  blockDevice(path: string, major: number, minor: number, mode = 0o600): this {
    const name = normalizeCpioPath(path);
    return this.add(name, S_IFBLK | checkMode(mode, name), new Uint8Array(0), checkDevice(major, 'major', name), checkDevice(minor, 'minor', name));
  }

  /** A named pipe. */
  fifo(path: string, mode = 0o644): this {
    const name = normalizeCpioPath(path);
    return this.add(name, S_IFIFO | checkMode(mode, name), new Uint8Array(0), 0, 0);
  }

  /** True when path (normalized) is already in the archive. */
  has(path: string): boolean {
    return this.names.has(normalizeCpioPath(path));
  }

  /** Number of entries so far, implied parent directories included. */
  get length(): number {
    return this.entries.length;
  }

  /** The archive: every entry, then the trailer. The writer cannot be used afterwards. */
  finish(): Uint8Array {
    if (this.finished) throw new CpioError('cpio: finish() was already called');
    this.finished = true;
    const trailer: Pending = { name: CPIO_TRAILER, ino: 0, mode: 0, nlink: 1, rdevMajor: 0, rdevMinor: 0, data: new Uint8Array(0) };
    const all = [...this.entries, trailer];
    const encodedNames = all.map((e) => encoder.encode(e.name));
    let total = 0;
    all.forEach((e, i) => {
      total += pad4(CPIO_HEADER_SIZE + encodedNames[i]!.length + 1) + pad4(e.data.length);
    });
    const out = new Uint8Array(total); // zero-filled: the padding is NULs
    let at = 0;
    all.forEach((e, i) => {
      const name = encodedNames[i]!;
      const mtime = e.name === CPIO_TRAILER ? 0 : this.mtime;
      const header =
        CPIO_NEWC_MAGIC +
        hex8(e.ino, 'ino', e.name) +
        hex8(e.mode, 'mode', e.name) +
        hex8(0, 'uid', e.name) +
        hex8(0, 'gid', e.name) +
        hex8(e.nlink, 'nlink', e.name) +
        hex8(mtime, 'mtime', e.name) +
        hex8(e.data.length, 'filesize', e.name) +
        hex8(0, 'devmajor', e.name) +
        hex8(0, 'devminor', e.name) +
        hex8(e.rdevMajor, 'rdevmajor', e.name) +
        hex8(e.rdevMinor, 'rdevminor', e.name) +
        hex8(name.length + 1, 'namesize', e.name) +
        hex8(0, 'check', e.name);
      out.set(encoder.encode(header), at);
      out.set(name, at + CPIO_HEADER_SIZE);
      at += pad4(CPIO_HEADER_SIZE + name.length + 1);
      out.set(e.data, at);
      at += pad4(e.data.length);
    });
    return out;
  }

  private add(name: string, mode: number, data: Uint8Array, rdevMajor: number, rdevMinor: number): this {
    if (this.finished) throw new CpioError('cpio: the archive is already finished');
    if (this.names.has(name)) throw new CpioError(`cpio: ${name} is already in the archive`);
    if (data.length > MAX_FIELD) throw new CpioError(`cpio: ${name} is ${data.length} bytes; newc holds at most 4 GiB - 1 per file`);
    this.addParents(name);
    const isDir = (mode & S_IFMT) === S_IFDIR;
    this.entries.push({ name, ino: this.nextIno++, mode, nlink: isDir ? 2 : 1, rdevMajor, rdevMinor, data });
    this.names.set(name, mode);
    return this;
  }

  private addParents(name: string): void {
    const parts = name.split('/');
    for (let i = 1; i < parts.length; i++) {
      const parent = parts.slice(0, i).join('/');
      const mode = this.names.get(parent);
      if (mode === undefined) {
        this.entries.push({ name: parent, ino: this.nextIno++, mode: S_IFDIR | 0o755, nlink: 2, rdevMajor: 0, rdevMinor: 0, data: new Uint8Array(0) });
        this.names.set(parent, S_IFDIR | 0o755);
      } else if ((mode & S_IFMT) !== S_IFDIR) {
        throw new CpioError(`cpio: ${parent} is not a directory, so ${name} cannot be in it`);
      }
    }
  }
}

/**
 * Reads a newc archive (magic 070701, or 070702 whose checksum is not verified)
 * up to its trailer, strictly: bad magic, bad hex, a missing NUL or non-zero
 * padding throw. Used by tests and for inspecting an initramfs.
 */
export function readCpio(archive: Uint8Array): CpioEntry[] {
  const entries: CpioEntry[] = [];
  let at = 0;
  const field = (offset: number, what: string): number => {
    const text = String.fromCharCode(...archive.subarray(offset, offset + 8));
    if (!/^[0-9a-fA-F]{8}$/.test(text)) throw new CpioError(`cpio: bad ${what} field ${JSON.stringify(text)} at ${offset}`);
    return parseInt(text, 16);
  };
  const zeros = (from: number, to: number, what: string): void => {
    for (let i = from; i < to; i++) if (archive[i] !== 0) throw new CpioError(`cpio: non-zero ${what} padding at ${i}`);
  };
  for (;;) {
    if (at + CPIO_HEADER_SIZE > archive.length) throw new CpioError(`cpio: truncated header at ${at}`);
    const magic = String.fromCharCode(...archive.subarray(at, at + 6));
    if (magic !== '070701' && magic !== '070702') throw new CpioError(`cpio: bad magic ${JSON.stringify(magic)} at ${at}`);
    const names = ['ino', 'mode', 'uid', 'gid', 'nlink', 'mtime', 'filesize', 'devmajor', 'devminor', 'rdevmajor', 'rdevminor', 'namesize', 'check'];
    const v = names.map((n, i) => field(at + 6 + i * 8, n));
    const [ino, mode, uid, gid, nlink, mtime, filesize, devMajor, devMinor, rdevMajor, rdevMinor, namesize, check] = v as [number, number, number, number, number, number, number, number, number, number, number, number, number];
    const nameStart = at + CPIO_HEADER_SIZE;
    if (namesize < 1 || nameStart + namesize > archive.length) throw new CpioError(`cpio: bad namesize ${namesize} at ${at}`);
    if (archive[nameStart + namesize - 1] !== 0) throw new CpioError(`cpio: name at ${nameStart} is not NUL-terminated`);
    const name = decoder.decode(archive.subarray(nameStart, nameStart + namesize - 1));
    const dataStart = at + pad4(CPIO_HEADER_SIZE + namesize);
    zeros(nameStart + namesize, dataStart, 'name');
    if (dataStart + filesize > archive.length) throw new CpioError(`cpio: ${name}: data runs past the end of the archive`);
    const data = archive.slice(dataStart, dataStart + filesize);
    const next = dataStart + pad4(filesize);
    if (next > archive.length) throw new CpioError(`cpio: ${name}: data padding runs past the end of the archive`);
    zeros(dataStart + filesize, next, 'data');
    at = next;
    if (name === CPIO_TRAILER) break;
    entries.push({ name, ino, mode, uid, gid, nlink, mtime, devMajor, devMinor, rdevMajor, rdevMinor, check, data });
  }
  return entries;
}
