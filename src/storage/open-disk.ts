// Opens a disk image as a BlockBackend, raw or qcow2, with its chain of
// backing files (opened read-only).
import { realpathSync } from 'node:fs';
import type { BlockBackend } from './block-backend.ts';
import { StorageError } from './errors.ts';
import { HostFile } from './host-file.ts';
import { QCOW2_MAGIC } from './qcow2/layout.ts';
import { Qcow2Image } from './qcow2/qcow2-image.ts';
import { RawDisk } from './raw.ts';

export type DiskFormat = 'raw' | 'qcow2';

export interface OpenDiskOptions {
  /** The image's format; probed from its first bytes when absent. */
  format?: DiskFormat;
  readOnly?: boolean;
}

/** Longer chains are almost certainly a loop the realpath check missed (or a mistake). */
const MAX_BACKING_CHAIN = 64;

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

export function openDisk(path: string, options: OpenDiskOptions = {}): BlockBackend {
  return openChainMember(path, options.format, options.readOnly ?? false, []);
}

function openChainMember(path: string, format: DiskFormat | undefined, readOnly: boolean, chain: string[]): BlockBackend {
  const realPath = realPathOf(path);
  if (chain.includes(realPath)) throw new StorageError(`${path}: the backing chain loops back to this image`);
  if (chain.length >= MAX_BACKING_CHAIN) throw new StorageError(`${path}: the backing chain is longer than ${MAX_BACKING_CHAIN} images`);
  const actualFormat = format ?? probeFormat(path);
  if (actualFormat === 'raw') return new RawDisk(path, { readOnly });
  return new Qcow2Image(path, {
    readOnly,
    openBacking: (backingPath, backingFormat) => {
      try {
        return openChainMember(backingPath, backingFormat, true, [...chain, realPath]);
      } catch (e) {
        if (e instanceof StorageError) throw new StorageError(`${path}: backing file: ${e.message}`);
        throw e;
      }
    },
  });
}

function realPathOf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;  // opening it reports why it is not there
  }
}
