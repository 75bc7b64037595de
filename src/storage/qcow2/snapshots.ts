// The snapshot table (QEMU's docs/interop/qcow2.txt, "Snapshot table"): one
// entry per internal snapshot, each naming the snapshot's L1 table, its id
// and name, when it was taken, and the VM state saved with it. Entries are
// 8-byte aligned and follow each other from header.snapshotsOffset.
//
//   0  l1_table_offset (u64)   8  l1_size (u32)      12 id_str_size (u16)
//   14 name_size (u16)         16 date_sec (u32)     20 date_nsec (u32)
//   24 vm_clock_nsec (u64)     32 vm_state_size (u32) 36 extra_data_size (u32)
//   40 extra data: vm_state_size_large (u64), disk_size (u64), icount (u64)
//      then the id and the name (not NUL-terminated), then padding to 8 bytes.
import { InputError } from '../../errors.ts';
import type { HostFile } from '../host-file.ts';
import type { Qcow2Header } from './header.ts';
import { getU64, setU64 } from './layout.ts';

const ENTRY_FIXED = 40;
/** The extra data tsvmm writes: vm_state_size_large, disk_size and icount, as QEMU does. */
const EXTRA_DATA = 24;
export const MAX_SNAPSHOTS = 65536;  // QEMU's QCOW_MAX_SNAPSHOTS
const MAX_TABLE_BYTES = 64 * 2 ** 20;  // QEMU's QCOW_MAX_SNAPSHOTS_SIZE
/** icount when the VM ran without instruction counting (QEMU's -1). */
export const NO_ICOUNT = -1;

export interface SnapshotEntry {
  id: string;
  name: string;
  l1TableOffset: number;
  l1Size: number;
  dateSec: number;
  dateNsec: number;
  vmClockNsec: number;
  vmStateSize: number;
  /** The virtual disk size when the snapshot was taken; null when the entry does not say. */
  diskSize: number | null;
  icount: number;
  /** The whole entry as stored, padding included: rewriting the table keeps it byte for byte. */
  bytes: Uint8Array;
}

export interface SnapshotTable {
  /** Bytes from header.snapshotsOffset that the entries take. */
  length: number;
  l1Tables: { offset: number; entries: number }[];
}

function corrupt(file: HostFile, message: string): never {
  throw new InputError(`${file.path}: corrupt qcow2 image: ${message}`);
}

/** Reads every entry of the snapshot table; a table that runs past the end of the file is corrupt. */
export function readSnapshots(file: HostFile, header: Qcow2Header): { entries: SnapshotEntry[]; length: number } {
  const entries: SnapshotEntry[] = [];
  if (header.snapshotCount === 0) return { entries, length: 0 };
  if (header.snapshotCount > MAX_SNAPSHOTS) corrupt(file, `${header.snapshotCount} snapshots (at most ${MAX_SNAPSHOTS})`);
  const fixed = new Uint8Array(ENTRY_FIXED);
  const view = new DataView(fixed.buffer);
  let at = header.snapshotsOffset;
  for (let i = 0; i < header.snapshotCount; i++) {
    if (file.readAt(fixed, at) < fixed.length) corrupt(file, 'the snapshot table runs past the end of the file');
    const extraSize = view.getUint32(36);
    const idSize = view.getUint16(12);
    const nameSize = view.getUint16(14);
    const length = Math.ceil((ENTRY_FIXED + extraSize + idSize + nameSize) / 8) * 8;
    if (at + length - header.snapshotsOffset > MAX_TABLE_BYTES) corrupt(file, `the snapshot table is larger than ${MAX_TABLE_BYTES} bytes`);
    const bytes = new Uint8Array(length);
    if (file.readAt(bytes, at) < ENTRY_FIXED + extraSize + idSize + nameSize) corrupt(file, 'the snapshot table runs past the end of the file');
    entries.push(decodeSnapshotEntry(bytes, file.path));
    at += length;
  }
  return { entries, length: at - header.snapshotsOffset };
}

/** An entry's fields from its bytes (the fixed part, extra data, id and name all present). */
export function decodeSnapshotEntry(bytes: Uint8Array, path: string): SnapshotEntry {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const extraSize = view.getUint32(36);
  const idSize = view.getUint16(12);
  const text = (at: number, size: number) => Buffer.from(bytes.subarray(at, at + size)).toString('utf8');
  const extra = ENTRY_FIXED;
  return {
    id: text(ENTRY_FIXED + extraSize, idSize),
    name: text(ENTRY_FIXED + extraSize + idSize, view.getUint16(14)),
    l1TableOffset: getU64(view, 0, 'a snapshot L1 table offset', path),
    l1Size: view.getUint32(8),
    dateSec: view.getUint32(16),
    dateNsec: view.getUint32(20),
    vmClockNsec: getU64(view, 24, 'a snapshot VM clock', path),
    vmStateSize: extraSize >= 8 ? getU64(view, extra, 'a snapshot VM state size', path) : view.getUint32(32),
    diskSize: extraSize >= 16 ? getU64(view, extra + 8, 'a snapshot disk size', path) : null,
    icount: extraSize >= 24 && view.getBigInt64(extra + 16) >= 0n ? getU64(view, extra + 16, 'a snapshot icount', path) : NO_ICOUNT,
    bytes,
  };
}

/** Where each snapshot's L1 table is and how long the table is: what the overlap checks and the consistency check need. */
export function readSnapshotTable(file: HostFile, header: Qcow2Header): SnapshotTable {
  const { entries, length } = readSnapshots(file, header);
  return { length, l1Tables: entries.map((e) => ({ offset: e.l1TableOffset, entries: e.l1Size })) };
}

export type NewSnapshotEntry = Omit<SnapshotEntry, 'bytes'>;

/** A new entry's bytes, with the extra data QEMU writes (so version 3 readers find the disk size they require). */
export function encodeEntry(entry: NewSnapshotEntry): Uint8Array {
  const id = Buffer.from(entry.id, 'utf8');
  const name = Buffer.from(entry.name, 'utf8');
  const bytes = new Uint8Array(Math.ceil((ENTRY_FIXED + EXTRA_DATA + id.length + name.length) / 8) * 8);
  const view = new DataView(bytes.buffer);
  setU64(view, 0, entry.l1TableOffset);
  view.setUint32(8, entry.l1Size);
  view.setUint16(12, id.length);
  view.setUint16(14, name.length);
  view.setUint32(16, entry.dateSec);
  view.setUint32(20, entry.dateNsec);
  setU64(view, 24, entry.vmClockNsec);
  view.setUint32(32, Math.min(entry.vmStateSize, 0xffffffff));
  view.setUint32(36, EXTRA_DATA);
  setU64(view, ENTRY_FIXED, entry.vmStateSize);
  setU64(view, ENTRY_FIXED + 8, entry.diskSize ?? 0);
  view.setBigInt64(ENTRY_FIXED + 16, BigInt(entry.icount));
  bytes.set(id, ENTRY_FIXED + EXTRA_DATA);
  bytes.set(name, ENTRY_FIXED + EXTRA_DATA + id.length);
  return bytes;
}

/** The table as it is written: the entries' bytes back to back. */
export function encodeTable(entries: readonly { bytes: Uint8Array }[]): Uint8Array {
  const table = new Uint8Array(entries.reduce((sum, e) => sum + e.bytes.length, 0));
  let at = 0;
  for (const entry of entries) {
    table.set(entry.bytes, at);
    at += entry.bytes.length;
  }
  if (table.length > MAX_TABLE_BYTES) throw new InputError(`the snapshot table would be larger than ${MAX_TABLE_BYTES} bytes`);
  return table;
}
