// The volumes of a directory pool: the regular files in its folder, each an
// image whose format is probed from its first bytes, as libvirt's dir pools
// see them. Files starting with a dot (tsvmm's own temporary files among them)
// are not volumes.
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readdirSync, statfsSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { isUsableName, NAME_RULE } from '../domain/parse.ts';
import type { DiskFormat } from '../storage/block-backend.ts';
import { describeFsError, HostFile } from '../storage/host-file.ts';
import { imageInfo, probeFormat } from '../storage/image-info.ts';
import { ImageLock, type ByteLocks } from '../storage/image-lock.ts';
import { createQcow2 } from '../storage/qcow2/create.ts';
import { createRaw } from '../storage/raw.ts';
import type { PoolDefinition, PoolUsage, Volume } from './pool-definition.ts';

/** The pool's file system as statvfs(3) reports it, counted as libvirt counts it. */
export function poolUsage(pool: PoolDefinition): PoolUsage {
  const fs = statfsSync(pool.path);
  return { capacity: fs.blocks * fs.bsize, allocation: (fs.blocks - fs.bfree) * fs.bsize, available: fs.bavail * fs.bsize };
}

/** libvirt's mode for a pool folder it builds without <permissions> (VIR_STORAGE_DEFAULT_POOL_PERM_MODE). */
const DEFAULT_FOLDER_MODE = 0o711;

/**
 * pool-build: the pool's folder, with the mode, owner and group its
 * <permissions> ask for. A folder that is already there keeps its mode
 * unless <permissions> give one.
 */
export function buildPoolFolder(pool: PoolDefinition): void {
  const { mode, owner, group } = pool.permissions ?? {};
  try {
    const existed = existsSync(pool.path);
    mkdirSync(pool.path, { recursive: true });
    // mkdir's mode passes through the umask; the pool's is meant as written.
    if (mode !== undefined || !existed) chmodSync(pool.path, mode ?? DEFAULT_FOLDER_MODE);
    if (owner !== undefined || group !== undefined) chownSync(pool.path, owner ?? -1, group ?? -1);
  } catch (e) {
    throw new InputError(`cannot build the folder ${pool.path} of pool '${pool.name}': ${describeFsError(e)}`);
  }
}

/** The pool's folder must be there for the pool to start (libvirt: "cannot open directory"). */
export function checkPoolFolder(pool: PoolDefinition): void {
  let isFolder = false;
  try {
    isFolder = lstatSync(pool.path).isDirectory();
  } catch {
    throw new InputError(`cannot open directory '${pool.path}' of pool '${pool.name}': no such folder (pool-build creates it)`);
  }
  if (!isFolder) throw new InputError(`'${pool.path}' of pool '${pool.name}' is not a folder`);
}

/** What the file at `path` is as a volume. A file that is not an image tsvmm reads is listed as raw, by its length. */
export function volumeAt(name: string, path: string): Volume {
  const format = probeFormat(path);
  let info;
  try {
    info = imageInfo(path, format);
  } catch (e) {
    if (!(e instanceof InputError)) throw e;
    const file = HostFile.open(path, true);
    try {
      return { name, path, format: 'raw', capacity: file.size(), allocation: file.allocatedBytes(), physical: file.size() };
    } finally {
      file.close();
    }
  }
  const physical = lstatSync(path).size;
  const backing = info['full-backing-filename'];
  return {
    name, path, format, capacity: info['virtual-size'], allocation: info['actual-size'], physical,
    ...(backing !== undefined ? { backing: { path: backing, ...(info['backing-filename-format'] ? { format: info['backing-filename-format'] } : {}) } } : {}),
  };
}

/** Every volume of the pool, by name. */
export function listVolumes(pool: PoolDefinition): Volume[] {
  return readdirSync(pool.path)
    .filter((name) => !name.startsWith('.') && lstatSync(join(pool.path, name)).isFile())
    .sort()
    .map((name) => volumeAt(name, join(pool.path, name)));
}

/** The volume of this name, or null. */
export function lookupVolume(pool: PoolDefinition, name: string): Volume | null {
  if (!isVolumeName(name)) return null;
  const path = join(pool.path, name);
  return existsSync(path) && lstatSync(path).isFile() ? volumeAt(name, path) : null;
}

export function findVolume(pool: PoolDefinition, name: string): Volume {
  const volume = lookupVolume(pool, name);
  if (!volume) throw new InputError(`failed to get vol '${name}': no storage vol with matching name in pool '${pool.name}'`);
  return volume;
}

/** A file name in the pool's folder that tsvmm can also put on a `tsvmm run --disk` line. */
function isVolumeName(name: string): boolean {
  return isUsableName(name) && !name.startsWith('.');
}

export function checkVolumeName(name: string): void {
  if (!isVolumeName(name)) throw new InputError(`"${name}" is not a volume name tsvmm can use: ${NAME_RULE}`);
}

export interface NewVolume {
  name: string;
  /** Bytes; rounded up to whole 512-byte sectors, as qemu-img does. */
  capacity: number;
  format: DiskFormat;
  /** A qcow2 overlay of this image, stored by its absolute path (as libvirt does); its format probed when not given. */
  backing?: { path: string; format?: DiskFormat };
}

/** Creates a volume (a sparse raw file, or a qcow2 image) in the pool's folder; an existing one is never replaced. */
export function createVolume(pool: PoolDefinition, spec: NewVolume): Volume {
  checkVolumeName(spec.name);
  const path = join(pool.path, spec.name);
  if (existsSync(path)) throw new InputError(`storage vol '${spec.name}' already exists in pool '${pool.name}'`);
  if (spec.backing && spec.format !== 'qcow2') throw new InputError(`volume '${spec.name}': an overlay of a backing volume must be qcow2, not ${spec.format}`);
  const size = Math.ceil(spec.capacity / 512) * 512;
  if (spec.format === 'raw') createRaw(path, size);
  else createQcow2(path, { size, ...(spec.backing ? { backingFile: spec.backing.path, backingFormat: spec.backing.format ?? probeFormat(spec.backing.path) } : {}) });
  return volumeAt(spec.name, path);
}

/** Deletes a volume's file; refused while a VM (tsvmm or QEMU) has it open. */
export function deleteVolume(volume: Volume, locks: ByteLocks): void {
  const lock = ImageLock.acquire(volume.path, 'write', locks);
  try {
    unlinkSync(volume.path);
  } finally {
    lock.release();
  }
}
