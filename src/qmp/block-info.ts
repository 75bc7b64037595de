// A disk as QEMU 7.2 reports it: query-block's BlockInfo (qapi/block-core.json)
// and the lines of HMP's `info block`.
//
// tsvmm has no I/O throttling, no encryption and no removable media, so those
// members carry the values QEMU gives a plain -drive. Optional members tsvmm
// does not know (node-name, the qcow2 format-specific data, cluster-size,
// dirty-flag, backing-image, backing-filename-format) are left out, as QAPI
// allows. `actual-size` is the host file's allocated size, as QEMU computes it.

import { statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { BlockInfo } from './target.ts';

function allocatedBytes(file: string): number | undefined {
  try {
    return statSync(file).blocks * 512;
  } catch {
    return undefined;
  }
}

function imageInfo(disk: BlockInfo): Record<string, unknown> {
  const image: Record<string, unknown> = {
    'virtual-size': disk.virtualSize,
    filename: disk.file,
    format: disk.format,
  };
  const actual = allocatedBytes(disk.file);
  if (actual !== undefined) image['actual-size'] = actual;
  if (disk.backingFile !== null) {
    image['full-backing-filename'] = resolve(dirname(disk.file), disk.backingFile);
    image['backing-filename'] = disk.backingFile;
  }
  return image;
}

/** One element of query-block's answer. */
export function queryBlockEntry(disk: BlockInfo): Record<string, unknown> {
  const inserted: Record<string, unknown> = {
    iops_rd: 0,
    detect_zeroes: 'off',
    image: imageInfo(disk),
    iops_wr: 0,
    ro: disk.readOnly,
    backing_file_depth: disk.backingFile === null ? 0 : 1,
    drv: disk.format,
    iops: 0,
    bps_wr: 0,
    write_threshold: 0,
    encrypted: false,
    bps: 0,
    bps_rd: 0,
    cache: { 'no-flush': false, direct: false, writeback: true },
    file: disk.file,
  };
  if (disk.backingFile !== null) inserted['backing_file'] = disk.backingFile;
  return {
    'io-status': 'ok',
    device: disk.device,
    locked: false,
    removable: false,
    inserted,
    qdev: disk.qdev,
    type: 'unknown',
  };
}

/** HMP `info block [device]`, with "\n" line ends. */
export function formatBlockDevices(disks: BlockInfo[], device?: string): string {
  return disks
    .filter((disk) => device === undefined || disk.device === device)
    .map((disk) => {
      const lines = [
        `${disk.device}: ${disk.file} (${disk.format}${disk.readOnly ? ', read-only' : ''})`,
        `    Attached to:      ${disk.qdev}`,
        '    Cache mode:       writeback',
      ];
      if (disk.backingFile !== null) lines.push(`    Backing file:     ${disk.backingFile} (chain depth: 1)`);
      return `${lines.join('\n')}\n`;
    })
    .join('\n');
}
