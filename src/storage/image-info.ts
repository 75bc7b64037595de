// What `tsvmm img info` reports about an image, in `qemu-img info --output
// json`'s field names. Only the image's own header is read: a missing
// backing file does not stop it.
import { HostFile } from './host-file.ts';
import { QCOW2_MAGIC } from './qcow2/layout.ts';
import { clusterSizeOf, COMPATIBLE_LAZY_REFCOUNTS, INCOMPATIBLE, readHeader } from './qcow2/header.ts';
import { resolveBackingPath } from './qcow2/qcow2-image.ts';

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

export interface ImageInfo {
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
    return {
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
