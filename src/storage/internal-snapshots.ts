// Internal snapshots of a disk image, by path: what `tsvmm img snapshot` and
// the domain layer use. Only qcow2 images have them (a raw image is refused,
// as libvirt and qemu-img refuse it). The image is locked as QEMU locks it
// while the snapshot table is read or changed, when locking is given: no VM
// may have it open for writing meanwhile.
import { InputError } from '../errors.ts';
import { probeFormat, type DiskFormat } from './image-info.ts';
import { ImageLock, type ByteLocks } from './image-lock.ts';
import {
  applyQcow2Snapshot, createQcow2Snapshot, deleteQcow2Snapshot, listQcow2Snapshots,
  type NewSnapshotOptions, type SnapshotInfo,
} from './qcow2/internal-snapshots.ts';

export type { NewSnapshotOptions, SnapshotInfo };

export interface InternalSnapshotOptions {
  /** The image's format; probed when absent. */
  format?: DiskFormat;
  /** Locks the image (src/kvm's ofdByteLocks) while it is used; without it nothing is locked. */
  locks?: ByteLocks;
}

function withImage<T>(path: string, options: InternalSnapshotOptions, writing: boolean, operation: () => T): T {
  const lock = options.locks ? ImageLock.acquire(path, writing ? 'write' : 'read', options.locks) : null;
  try {
    const format = options.format ?? probeFormat(path);
    if (format !== 'qcow2') throw new InputError(`${path}: a ${format} image cannot have internal snapshots; only qcow2 images can`);
    return operation();
  } finally {
    lock?.release();
  }
}

export function listInternalSnapshots(path: string, options: InternalSnapshotOptions = {}): SnapshotInfo[] {
  return withImage(path, options, false, () => listQcow2Snapshots(path));
}

/** Takes snapshot `name` of the disk as it is now; names are unique within an image. */
export function createInternalSnapshot(path: string, name: string, options: InternalSnapshotOptions & NewSnapshotOptions = {}): SnapshotInfo {
  return withImage(path, options, true, () => createQcow2Snapshot(path, name, options));
}

/** Brings the disk back to snapshot `name` (an id or a name, as qemu-img looks them up); the snapshot stays. */
export function applyInternalSnapshot(path: string, name: string, options: InternalSnapshotOptions = {}): SnapshotInfo {
  return withImage(path, options, true, () => applyQcow2Snapshot(path, name));
}

/** Deletes snapshot `name` (an id or a name); the clusters only it held are freed. */
export function deleteInternalSnapshot(path: string, name: string, options: InternalSnapshotOptions = {}): SnapshotInfo {
  return withImage(path, options, true, () => deleteQcow2Snapshot(path, name));
}
