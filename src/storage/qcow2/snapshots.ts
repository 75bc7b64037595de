// The snapshot table: where each internal snapshot's L1 table is, and how
// many bytes the table itself takes. tsvmm never creates snapshots, but it
// must not write over the ones an image has (QEMU's qcow2_read_snapshots).
import { InputError } from '../../errors.ts';
import type { HostFile } from '../host-file.ts';
import type { Qcow2Header } from './header.ts';
import { getU64 } from './layout.ts';

const SNAPSHOT_ENTRY_FIXED = 40;
const MAX_SNAPSHOTS = 65536;  // QEMU's QCOW_MAX_SNAPSHOTS

export interface SnapshotTable {
  /** Bytes from header.snapshotsOffset that the entries take. */
  length: number;
  l1Tables: { offset: number; entries: number }[];
}

/** Reads the snapshot table; a table that runs past the end of the file is corrupt. */
export function readSnapshotTable(file: HostFile, header: Qcow2Header): SnapshotTable {
  const table: SnapshotTable = { length: 0, l1Tables: [] };
  if (header.snapshotCount === 0) return table;
  if (header.snapshotCount > MAX_SNAPSHOTS) {
    throw new InputError(`${file.path}: corrupt qcow2 image: ${header.snapshotCount} snapshots (at most ${MAX_SNAPSHOTS})`);
  }
  const fixed = new Uint8Array(SNAPSHOT_ENTRY_FIXED);
  const view = new DataView(fixed.buffer);
  let at = header.snapshotsOffset;
  for (let i = 0; i < header.snapshotCount; i++) {
    if (file.readAt(fixed, at) < fixed.length) {
      throw new InputError(`${file.path}: corrupt qcow2 image: the snapshot table runs past the end of the file`);
    }
    table.l1Tables.push({ offset: getU64(view, 0, 'a snapshot L1 table offset', file.path), entries: view.getUint32(8) });
    // id and name strings and the extra data follow the fixed part, padded to 8 bytes.
    const entryLength = SNAPSHOT_ENTRY_FIXED + view.getUint32(36) + view.getUint16(12) + view.getUint16(14);
    at += Math.ceil(entryLength / 8) * 8;
  }
  table.length = at - header.snapshotsOffset;
  return table;
}
