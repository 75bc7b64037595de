// A storage pool as plain data: the part of libvirt's pool XML that tsvmm
// honours (libvirt's formatstorage, "Storage pool XML"). Only directory pools:
// a folder on the host whose regular files are the pool's volumes.
import type { DiskFormat } from '../storage/block-backend.ts';

export interface PoolDefinition {
  name: string;
  /** Lower-case, with dashes, as DomainDefinition's. */
  uuid: string;
  type: 'dir';
  /** <target><path>: the folder that holds the volumes (absolute). */
  path: string;
  /** <target><permissions>: what pool-build gives the folder. */
  permissions?: FolderPermissions;
}

export interface FolderPermissions {
  mode?: number;
  owner?: number;
  group?: number;
}

/** What a running pool reports of its file system (statvfs), in bytes, as libvirt's dir pools do. */
export interface PoolUsage {
  capacity: number;
  allocation: number;
  available: number;
}

/** A volume of a directory pool: one image file in its folder. */
export interface Volume {
  name: string;
  /** The file; also the volume's key, as in libvirt's dir pools. */
  path: string;
  format: DiskFormat;
  /** The virtual size: what the guest sees. */
  capacity: number;
  /** Bytes the file occupies on the host. */
  allocation: number;
  /** The file's length. */
  physical: number;
  /** The image it is an overlay of (qcow2). */
  backing?: { path: string; format?: string };
}
