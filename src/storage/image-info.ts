// What `tsvmm img info` reports about an image, in `qemu-img info --output
// json`'s field names. Only the image's own header is read: a missing
// backing file does not stop it.
import { HostFile } from './host-file.ts';
import { QCOW2_MAGIC } from './qcow2/layout.ts';
import { clusterSizeOf, COMPATIBLE_LAZY_REFCOUNTS, INCOMPATIBLE, readHeader } from './qcow2/header.ts';
import type { SnapshotInfo } from './qcow2/internal-snapshots.ts';
import { resolveBackingPath } from './qcow2/qcow2-image.ts';
import { NO_ICOUNT, readSnapshots } from './qcow2/snapshots.ts';

export type DiskFormat = 'raw' | 'qcow2';

/** "qcow2" when the file starts with the qcow2 magic, else "raw". */
export function probeFormat(path: string): DiskFormat {
  const file = HostFile.open(path, true);
  try {
    const magic = new Uint8Array(4);
    const got = file.readAt(magic, 0);
    return got === 4 && new DataView(magic.buffer).getUint32(0) === QCOW2_MAGIC ? 'qcow2' : 'raw';
  } finally {
    file.close();
  }
}

export interface Qcow2SpecificInfo {
  compat: '0.10' | '1.1';
  'compression-type': 'zlib' | 'zstd';
  'lazy-refcounts'?: boolean;
  'refcount-bits': number;
  corrupt?: boolean;
  'extended-l2'?: boolean;
}

/** An internal snapshot as `qemu-img info --output json` lists it (its field order too). */
export interface SnapshotJson {
  icount?: number;
  'vm-clock-nsec': number;
  name: string;
  'date-sec': number;
  'date-nsec': number;
  'vm-clock-sec': number;
  id: string;
  'vm-state-size': number;
}

export function snapshotJson(s: SnapshotInfo): SnapshotJson {
  return {
    ...(s.icount !== NO_ICOUNT ? { icount: s.icount } : {}),
    'vm-clock-nsec': s.vmClockNsec % 1e9,
    name: s.name,
    'date-sec': s.dateSec,
    'date-nsec': s.dateNsec,
    'vm-clock-sec': Math.floor(s.vmClockNsec / 1e9),
    id: s.id,
    'vm-state-size': s.vmStateSize,
  };
}

export interface ImageInfo {
  snapshots?: SnapshotJson[];
  'virtual-size': number;
  filename: string;
  'cluster-size'?: number;
  format: DiskFormat;
  /** Bytes the file occupies on the host. */
  'actual-size': number;
  'format-specific'?: { type: 'qcow2'; data: Qcow2SpecificInfo };
  'full-backing-filename'?: string;
  'backing-filename'?: string;
  'backing-filename-format'?: string;
  'dirty-flag': boolean;
}

export function imageInfo(path: string, format: DiskFormat = probeFormat(path)): ImageInfo {
  const file = HostFile.open(path, true);
  try {
    if (format === 'raw') {
      return { 'virtual-size': file.size(), filename: path, format, 'actual-size': file.allocatedBytes(), 'dirty-flag': false };
    }
    const header = readHeader(file);
    const v3 = header.version === 3;
    const data: Qcow2SpecificInfo = {
      compat: v3 ? '1.1' : '0.10',
      'compression-type': header.compressionType === 1 ? 'zstd' : 'zlib',
      ...(v3 ? { 'lazy-refcounts': (header.compatibleFeatures & COMPATIBLE_LAZY_REFCOUNTS) !== 0n } : {}),
      'refcount-bits': 2 ** header.refcountOrder,
      ...(v3 ? {
        corrupt: (header.incompatibleFeatures & INCOMPATIBLE.corrupt) !== 0n,
        'extended-l2': (header.incompatibleFeatures & INCOMPATIBLE.extendedL2) !== 0n,
      } : {}),
    };
    const snapshots = readSnapshots(file, header).entries;
    return {
      ...(snapshots.length > 0 ? { snapshots: snapshots.map(snapshotJson) } : {}),
      'virtual-size': header.size,
      filename: path,
      'cluster-size': clusterSizeOf(header),
      format,
      'actual-size': file.allocatedBytes(),
      'format-specific': { type: 'qcow2', data },
      ...(header.backingFile ? {
        'full-backing-filename': resolveBackingPath(path, header.backingFile),
        'backing-filename': header.backingFile,
      } : {}),
      ...(header.backingFormat ? { 'backing-filename-format': header.backingFormat } : {}),
      'dirty-flag': (header.incompatibleFeatures & INCOMPATIBLE.dirty) !== 0n,
    };
  } finally {
    file.close();
  }
}
