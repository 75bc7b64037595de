// Opens a disk image as a BlockBackend, raw or qcow2, with its chain of
// backing files (opened read-only), each file locked when locking is given.
import { realpathSync } from 'node:fs';
import type { BlockBackend, BlockStatus } from './block-backend.ts';
import { InputError } from '../errors.ts';
import { probeFormat, type DiskFormat } from './image-info.ts';
import { lockImageChain, type ByteLocks, type ImageLocks } from './image-lock.ts';
import { Qcow2Image } from './qcow2/qcow2-image.ts';
import { RawDisk } from './raw.ts';

export { probeFormat, type DiskFormat };

export interface OpenDiskOptions {
  /** The image's format; probed from its first bytes when absent. */
  format?: DiskFormat;
  readOnly?: boolean;
  /**
   * Locks the image and every backing file as QEMU does (image-lock.ts), for
   * as long as the disk is open. Without it nothing is locked: for a caller
   * that holds the locks itself (the machine's main thread, for its I/O thread).
   */
  locking?: { locks: ByteLocks; forceShare?: boolean };
}

/** Longer chains are almost certainly a loop the realpath check missed (or a mistake). */
export const MAX_BACKING_CHAIN = 64;

export function openDisk(path: string, options: OpenDiskOptions = {}): BlockBackend {
  const readOnly = options.readOnly ?? false;
  if (!options.locking) return openChainMember(path, options.format, readOnly, []);
  // Every file is locked before its first byte is read: a writer elsewhere may be changing it.
  const locks = lockImageChain(path, { ...(options.format ? { format: options.format } : {}), readOnly, ...options.locking });
  try {
    return new LockedDisk(openChainMember(path, options.format, readOnly, []), locks);
  } catch (e) {
    locks.release();
    throw e;
  }
}

function openChainMember(path: string, format: DiskFormat | undefined, readOnly: boolean, chain: string[]): BlockBackend {
  const realPath = realPathOf(path);
  if (chain.includes(realPath)) throw new InputError(`${path}: the backing chain loops back to this image`);
  if (chain.length >= MAX_BACKING_CHAIN) throw new InputError(`${path}: the backing chain is longer than ${MAX_BACKING_CHAIN} images`);
  const actualFormat = format ?? probeFormat(path);
  if (actualFormat === 'raw') return new RawDisk(path, { readOnly });
  return new Qcow2Image(path, {
    readOnly,
    openBacking: (backingPath, backingFormat) => {
      try {
        return openChainMember(backingPath, backingFormat, true, [...chain, realPath]);
      } catch (e) {
        if (e instanceof InputError) throw new InputError(`${path}: backing file: ${e.message}`);
        throw e;
      }
    },
  });
}

/** A disk and the locks on its files, dropped when the disk is closed. */
class LockedDisk implements BlockBackend {
  readonly size: number;
  readonly readOnly: boolean;
  readonly description: string;

  constructor(private readonly disk: BlockBackend, private readonly locks: ImageLocks) {
    this.size = disk.size;
    this.readOnly = disk.readOnly;
    this.description = disk.description;
  }

  blockStatus(offset: number, length: number): BlockStatus {
    return this.disk.blockStatus(offset, length);
  }

  read(offset: number, buffer: Uint8Array): void {
    this.disk.read(offset, buffer);
  }

  write(offset: number, data: Uint8Array): void {
    this.disk.write(offset, data);
  }

  flush(): void {
    this.disk.flush();
  }

  close(): void {
    try {
      this.disk.close();
    } finally {
      this.locks.release();
    }
  }
}

function realPathOf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;  // opening it reports why it is not there
  }
}
