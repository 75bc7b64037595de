// `tsvmm img check -r leaks|all`, as `qemu-img check -r` does it: the check
// counts the references to every cluster, and the repair makes the stored
// refcounts agree with them.
//
// - Leaks (counted more often than referenced) are set to their reference
//   count in place, with either mode.
// - With "all", refcounts below their reference count, or refcount blocks
//   that are missing, outside the file or on other metadata, are repaired by
//   rebuilding the whole refcount structure after the end of the file from
//   the references (QEMU's rebuild_refcount_structure): written and synced
//   before the header points at it, so a crash during the repair leaves the
//   old structure in force. Then the copied flags of L1 and L2 entries are
//   made to say whether their cluster's refcount is one.
// - When the image checks clean of errors afterwards, its corrupt and dirty
//   bits are cleared.
import { InputError } from '../../errors.ts';
import { HostFile } from '../host-file.ts';
import { analyzeQcow2, type CheckReport } from './check.ts';
import { clusterSizeOf, FIELD, INCOMPATIBLE, readHeader, type Qcow2Header } from './header.ts';
import { setU64 } from './layout.ts';
import { Refcounts, writeRefcountEntry } from './refcounts.ts';

export type RepairMode = 'leaks' | 'all';

export interface RepairResult {
  /** The check before the repair, and the double check after it. */
  before: CheckReport;
  after: CheckReport;
  /** What was done, one line each, as qemu-img prints it on stderr. */
  actions: string[];
  leaksFixed: number;
  corruptionsFixed: number;
}

const COPIED_BIT = 0x80;  // bit 63 of an L1 or L2 entry: the high bit of its first byte

export function repairQcow2(path: string, mode: RepairMode): RepairResult {
  const file = HostFile.open(path, false);
  try {
    return repair(file, mode);
  } finally {
    file.close();
  }
}

function repair(file: HostFile, mode: RepairMode): RepairResult {
  const actions: string[] = [];
  let header = readHeader(file);
  const first = analyzeQcow2(file, header);
  const before = first.report;
  const clusters = first.references.length;
  let leaksFixed = 0;
  let corruptionsFixed = 0;

  const tooLow: number[] = [];
  const tooHigh: number[] = [];
  for (let c = 0; c < clusters; c++) {
    const stored = first.storedRefcount(c);
    if (stored < first.references[c]!) tooLow.push(c);
    else if (stored > first.references[c]!) tooHigh.push(c);
  }
  if (mode === 'all' && (tooLow.length > 0 || first.refcountStructureBroken)) {
    actions.push('Rebuilding refcount structure');
    const counts = first.references.slice();
    for (const c of first.refcountStructure) if (c < clusters) counts[c]!--;  // the old structure is dropped
    rebuildRefcounts(file, header, counts);
    leaksFixed = tooHigh.length;
    corruptionsFixed = tooLow.length;
    header = readHeader(file);
  } else if (!first.refcountStructureBroken) {
    // (Blocks that lie on other metadata are never written in place: only a rebuild, with "all", fixes them.)
    const refcounts = new Refcounts(file, header);
    for (const c of tooHigh) {
      actions.push(`Repairing cluster ${c} refcount=${first.storedRefcount(c)} reference=${first.references[c]}`);
      refcounts.setRun(c, 1, first.references[c]!);
    }
    leaksFixed = tooHigh.length + releasePastEnd(refcounts, clusters, actions);
  }
  file.datasync();

  if (mode === 'all') {
    const now = analyzeQcow2(file, header);
    for (const flag of now.copiedFlags) {
      const refcount = now.storedRefcount(flag.cluster);
      if ((refcount === 1) === flag.copied) continue;
      actions.push(`Repairing ${flag.describe(refcount).replace(/^ERROR /, '')}`);
      const byte = new Uint8Array(1);
      file.readExactAt(byte, flag.entryOffset, 'a table entry');
      byte[0] = refcount === 1 ? byte[0]! | COPIED_BIT : byte[0]! & ~COPIED_BIT;
      file.writeAt(byte, flag.entryOffset);
      corruptionsFixed++;
    }
    file.datasync();
  }

  const after = analyzeQcow2(file, header).report;
  if (after.errors.length === 0) markConsistent(file, header);
  return { before, after, actions, leaksFixed, corruptionsFixed };
}

/**
 * Refcounts of clusters past the end of the file (batches reserved when a
 * crash or a corruption stopped the writer) are leaks no check reports, as
 * the file does not reach them yet; they would be as soon as it grew.
 */
function releasePastEnd(refcounts: Refcounts, fileClusters: number, actions: string[]): number {
  let released = 0;
  refcounts.blockOffsets().forEach((offset, index) => {
    if (!offset) return;
    const end = (index + 1) * refcounts.entriesPerBlock;
    for (let c = Math.max(fileClusters, index * refcounts.entriesPerBlock); c < end; c++) {
      const stored = refcounts.get(c);
      if (stored === 0) continue;
      actions.push(`Repairing cluster ${c} refcount=${stored} reference=0 (past the end of the file)`);
      refcounts.setRun(c, 1, 0);
      released++;
    }
  });
  return released;
}

/**
 * Writes a new refcount table and blocks after the end of the file, counting
 * `counts[c]` for each cluster c of the file and one for each new cluster,
 * then points the header at them.
 */
function rebuildRefcounts(file: HostFile, header: Qcow2Header, counts: Uint32Array): void {
  const clusterSize = clusterSizeOf(header);
  const bits = 2 ** header.refcountOrder;
  const maxRefcount = bits >= 53 ? Number.MAX_SAFE_INTEGER : 2 ** bits - 1;
  const perBlock = (clusterSize * 8) / bits;
  const start = counts.length;
  // The blocks must also count the table and themselves: grow both until they agree.
  let blocks = 0;
  let tableClusters = 0;
  for (;;) {
    const end = start + tableClusters + blocks;
    const neededBlocks = Math.ceil(end / perBlock);
    const neededTable = Math.max(1, Math.ceil((neededBlocks * 8) / clusterSize));
    if (neededBlocks === blocks && neededTable === tableClusters) break;
    blocks = neededBlocks;
    tableClusters = neededTable;
  }
  const end = start + tableClusters + blocks;
  const table = new Uint8Array(tableClusters * clusterSize);
  const tableView = new DataView(table.buffer);
  const blockBytes = new Uint8Array(blocks * clusterSize);
  for (let b = 0; b < blocks; b++) {
    setU64(tableView, b * 8, (start + tableClusters + b) * clusterSize);
    const block = new DataView(blockBytes.buffer, b * clusterSize, clusterSize);
    for (let i = 0; i < perBlock; i++) {
      const c = b * perBlock + i;
      const count = c < start ? counts[c]! : c < end ? 1 : 0;
      if (count > maxRefcount) throw new InputError(`${file.path}: cluster ${c} is referenced ${count} times, more than ${bits}-bit refcounts hold`);
      if (count) writeRefcountEntry(block, i, count, bits);
    }
  }
  file.writevAt([table, blockBytes], start * clusterSize);
  file.datasync();  // the new structure is on disk before the header points at it
  const location = new Uint8Array(12);
  const view = new DataView(location.buffer);
  setU64(view, 0, start * clusterSize);
  view.setUint32(8, tableClusters);
  file.writeAt(location, FIELD.refcountTableOffset);
  file.datasync();
}

/** Clears the corrupt and dirty bits (version 3; version 2 has none). */
function markConsistent(file: HostFile, header: Qcow2Header): void {
  if (header.version !== 3) return;
  const cleared = header.incompatibleFeatures & ~(INCOMPATIBLE.corrupt | INCOMPATIBLE.dirty);
  if (cleared === header.incompatibleFeatures) return;
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, cleared);
  file.writeAt(bytes, FIELD.incompatibleFeatures);
  file.datasync();
}
