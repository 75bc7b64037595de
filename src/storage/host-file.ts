// One open image file: positioned, synchronous reads and writes that either
// complete or throw an error naming the file and what failed: an InputError
// for a file that cannot be an image (missing, unreadable, a FIFO, truncated),
// an ImageIoError for a system call the host refused on an open one. The
// buffers go straight to the system calls, so a view into guest RAM is read
// into or written from without a copy.
import * as fs from 'node:fs';
import { InputError } from '../errors.ts';
import { ImageIoError } from './errors.ts';

/** "ENOENT: no such file or directory" out of a Node fs error. */
export function describeFsError(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as NodeJS.ErrnoException).code;
    const text = e.message.replace(/, \w+ .*$/, '');  // drop Node's ", open 'path'" tail
    return code && !text.startsWith(code) ? `${code}: ${text}` : text;
  }
  return String(e);
}

/**
 * Opens an image file with O_NONBLOCK, so that a FIFO (or a character device)
 * given by mistake is refused instead of blocking open(2) until a writer
 * comes; regular files and block devices ignore the flag.
 */
export function openNonBlocking(path: string, flags: number, description = 'open'): number {
  let fd: number;
  try {
    fd = fs.openSync(path, flags | fs.constants.O_NONBLOCK);
  } catch (e) {
    throw new InputError(`${path}: cannot ${description}: ${describeFsError(e)}`);
  }
  let stats: fs.Stats;
  try {
    stats = fs.fstatSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    throw new ImageIoError(`${path}: fstat failed: ${describeFsError(e)}`);
  }
  if (!stats.isFile() && !stats.isBlockDevice()) {
    fs.closeSync(fd);
    throw new InputError(`${path}: not a regular file or block device`);
  }
  return fd;
}

/** A block device's size: st_size is 0 for one, sysfs has it in 512-byte sectors. */
function blockDeviceSize(path: string, rdev: number): number {
  // glibc's major()/minor() for a 64-bit dev_t (rdev fits in a double's integer range).
  const dev = BigInt(rdev);
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  try {
    return Number(fs.readFileSync(`/sys/dev/block/${major}:${minor}/size`, 'utf8').trim()) * 512;
  } catch (e) {
    throw new ImageIoError(`${path}: cannot read the block device's size: ${describeFsError(e)}`);
  }
}

export class HostFile {
  private fd: number;

  private constructor(readonly path: string, fd: number, readonly readOnly: boolean) {
    this.fd = fd;
  }

  /** Opens an existing regular file or block device, O_RDONLY when `readOnly`. */
  static open(path: string, readOnly: boolean): HostFile {
    const { O_RDONLY, O_RDWR } = fs.constants;
    return new HostFile(path, openNonBlocking(path, readOnly ? O_RDONLY : O_RDWR, readOnly ? 'open' : 'open for writing'), readOnly);
  }

  /** Creates `path` (or empties it), read/write. */
  static create(path: string): HostFile {
    try {
      return new HostFile(path, fs.openSync(path, 'w+'), false);
    } catch (e) {
      throw new InputError(`${path}: cannot create: ${describeFsError(e)}`);
    }
  }

  /** The file's length in bytes (a block device's size). */
  size(): number {
    const stats = this.stat();
    return stats.isBlockDevice() ? blockDeviceSize(this.path, stats.rdev) : stats.size;
  }

  /** Bytes the file occupies on the host (st_blocks), as `qemu-img info` shows "disk size". */
  allocatedBytes(): number {
    return this.stat().blocks * 512;
  }

  /** Reads into `buffer` from `position`; returns the bytes read, fewer only at the end of the file. */
  readAt(buffer: Uint8Array, position: number): number {
    let done = 0;
    try {
      while (done < buffer.length) {
        const n = fs.readSync(this.fd, buffer, done, buffer.length - done, position + done);
        if (n === 0) break;
        done += n;
      }
    } catch (e) {
      throw new ImageIoError(`${this.path}: read of ${buffer.length} bytes at offset ${position} failed: ${describeFsError(e)}`);
    }
    return done;
  }

  /** Reads exactly `buffer.length` bytes; running into the end of the file means the image is truncated. */
  readExactAt(buffer: Uint8Array, position: number, what: string): void {
    if (this.readAt(buffer, position) < buffer.length) {
      throw new InputError(`${this.path}: ${what} at offset ${position} lies past the end of the file (truncated image?)`);
    }
  }

  writeAt(data: Uint8Array, position: number): void {
    this.writevAt([data], position);
  }

  /** Writes the buffers back to back from `position` with as few system calls as the kernel allows. */
  writevAt(buffers: Uint8Array[], position: number): void {
    if (this.readOnly) throw new InputError(`${this.path}: the image is open read-only`);
    const total = buffers.reduce((sum, b) => sum + b.length, 0);
    try {
      let done = fs.writevSync(this.fd, buffers, position);
      // A short write (a signal, a full quota) continues byte-exactly where it stopped.
      let skip = done;
      for (const b of buffers) {
        if (skip >= b.length) { skip -= b.length; continue; }
        for (let at = skip; at < b.length;) {
          const n = fs.writeSync(this.fd, b, at, b.length - at, position + done);
          at += n;
          done += n;
        }
        skip = 0;
      }
      if (done !== total) throw new Error(`wrote ${done} of ${total} bytes`);
    } catch (e) {
      throw new ImageIoError(`${this.path}: write of ${total} bytes at offset ${position} failed: ${describeFsError(e)}`);
    }
  }

  truncate(length: number): void {
    try {
      fs.ftruncateSync(this.fd, length);
    } catch (e) {
      throw new ImageIoError(`${this.path}: cannot set the length to ${length}: ${describeFsError(e)}`);
    }
  }

  /** fdatasync(2): the data written so far, and what is needed to read it back, reach the disk. */
  datasync(): void {
    try {
      fs.fdatasyncSync(this.fd);
    } catch (e) {
      throw new ImageIoError(`${this.path}: fdatasync failed: ${describeFsError(e)}`);
    }
  }

  close(): void {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    fs.closeSync(fd);
  }

  private stat(): fs.Stats {
    try {
      return fs.fstatSync(this.fd);
    } catch (e) {
      throw new ImageIoError(`${this.path}: fstat failed: ${describeFsError(e)}`);
    }
  }
}
