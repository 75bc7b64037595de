// Changing a disk image's virtual size, by path: what `tsvmm img resize` and
// `vol-resize` use. The image is locked for writing meanwhile (no VM may have
// it open), and the space that grows into view reads as zeros, whatever the
// file held there before (a shrink leaves old data in the last qcow2 cluster)
// or a larger backing file would show through, as QEMU's bdrv_co_truncate
// makes it.
import { InputError } from '../errors.ts';
import type { BlockBackend } from './block-backend.ts';
import { HostFile } from './host-file.ts';
import { probeFormat, type DiskFormat } from './image-info.ts';
import { ImageLock, type ByteLocks } from './image-lock.ts';
import { openDisk } from './open-disk.ts';
import { resizeQcow2 } from './qcow2/resize.ts';

const SECTOR_SIZE = 512;

export interface ResizeOptions {
  /** The image's format; probed when absent. */
  format?: DiskFormat;
  /** A smaller size deletes the data past it: refused unless asked for. */
  shrink?: boolean;
  /** Locks the image (src/kvm's ofdByteLocks) while it is resized; without it nothing is locked. */
  locks?: ByteLocks;
}

/** Sets the virtual size of the image at `path` to `size` bytes; returns the size it had. */
export function resizeImage(path: string, size: number, options: ResizeOptions = {}): number {
  if (!Number.isSafeInteger(size) || size <= 0) throw new InputError(`${path}: the new size must be positive (${size} is not)`);
  // tsvmm's disks are whole sectors (raw.ts), as a qcow2 image's size must be.
  if (size % SECTOR_SIZE !== 0) throw new InputError(`${path}: the new size must be a multiple of ${SECTOR_SIZE} (${size} is not)`);
  const lock = options.locks ? ImageLock.acquire(path, 'write', options.locks) : null;
  try {
    const format = options.format ?? probeFormat(path);
    const oldSize = virtualSize(path, format);
    if (format === 'raw') resizeRaw(path, oldSize, size, options.shrink ?? false);
    else resizeQcow2(path, size, { shrink: options.shrink ?? false });
    if (size > oldSize && format === 'qcow2') {
      const disk = openDisk(path, { format });
      try {
        zeroGrownSpace(disk, oldSize, size);
      } finally {
        disk.close();
      }
    }
    return oldSize;
  } finally {
    lock?.release();
  }
}

/** The image's virtual size now. */
export function virtualSize(path: string, format: DiskFormat): number {
  const disk = openDisk(path, { format, readOnly: true });
  try {
    return disk.size;
  } finally {
    disk.close();
  }
}

function resizeRaw(path: string, oldSize: number, size: number, shrink: boolean): void {
  if (size < oldSize && !shrink) throw new InputError(`${path}: shrinking deletes the data past the new end; use --shrink to do it`);
  const file = HostFile.open(path, false);
  try {
    file.truncate(size);  // new space is a hole: zeros
    file.datasync();
  } finally {
    file.close();
  }
}

/** Writes zeros over whatever of [from, to) does not already read as zeros. */
function zeroGrownSpace(disk: BlockBackend, from: number, to: number): void {
  const zeros = new Uint8Array(2 ** 20);
  for (let offset = from; offset < to;) {
    const status = disk.blockStatus(offset, to - offset);
    const end = offset + Math.max(status.length, 1);
    if (status.kind !== 'zero') {
      for (let at = offset; at < end; at += zeros.length) disk.write(at, zeros.subarray(0, Math.min(zeros.length, end - at)));
    }
    offset = end;
  }
  disk.flush();
}
