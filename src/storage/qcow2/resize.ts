// Changing the virtual size of a qcow2 image no one else has open (QEMU's
// qcow2_co_truncate, for images without internal snapshots).
//
// Growing: when the L1 table is too small for the new size, a larger copy is
// written to new clusters and synced, then one header write switches the
// size, the L1 size and the L1 offset together, and only then is the old
// table freed. Without a new table the size field is the only write.
// Shrinking (asked for explicitly, as qemu-img asks for --shrink): the size
// goes first, then the entries past the new end are cleared (synced), then
// the clusters they held are freed and the file ends after its last used
// cluster. A crash at any point leaves at worst leaked clusters.
// What grows into view is zeroed by the caller (../resize.ts).
import { InputError } from '../../errors.ts';
import { HostFile } from '../host-file.ts';
import { allocateContiguous } from './contiguous.ts';
import { REPAIR_HINT } from './corruption.ts';
import { clusterSizeOf, FIELD, INCOMPATIBLE, l1EntriesFor, l2EntriesOf, readHeader, type Qcow2Header } from './header.ts';
import { L1_ENTRY_SIZE, L2_ENTRY_SIZE, readL1Entry, readL2Entry, setU64 } from './layout.ts';
import { MetadataMap } from './overlap.ts';
import { Refcounts } from './refcounts.ts';
import { readSnapshotTable } from './snapshots.ts';

const SIZE_FIELD = 24;      // size (u64), crypt_method (u32), l1_size (u32), l1_table_offset (u64)
const SIZE_FIELDS_LENGTH = 24;

/** Sets the virtual size of the qcow2 image at `path` to `size` bytes (a multiple of 512). */
export function resizeQcow2(path: string, size: number, options: { shrink: boolean }): void {
  const file = HostFile.open(path, false);
  try {
    const header = readHeader(file);
    refuseResize(path, header, size, options.shrink);
    const resizer = new Qcow2Resizer(file, header);
    if (size > header.size) resizer.grow(size);
    else if (size < header.size) resizer.shrink(size);
  } finally {
    file.close();
  }
}

function refuseResize(path: string, header: Qcow2Header, size: number, shrink: boolean): void {
  const features = header.incompatibleFeatures;
  if (features & (INCOMPATIBLE.dirty | INCOMPATIBLE.corrupt)) {
    throw new InputError(`${path}: is marked ${features & INCOMPATIBLE.corrupt ? 'corrupt' : 'dirty'}; ${REPAIR_HINT} first`);
  }
  if (size % 512 !== 0) throw new InputError(`${path}: the new size of a qcow2 image must be a multiple of 512 (${size} is not)`);
  if (header.snapshotCount > 0) {
    // A snapshot records the size it was taken at; applying it would have to resize the disk back.
    throw new InputError(`${path}: has internal snapshots; tsvmm resizes only qcow2 images without them (delete them with "tsvmm img snapshot -d")`);
  }
  if (size < header.size && !shrink) {
    throw new InputError(`${path}: shrinking deletes the data past the new end; use --shrink to do it`);
  }
}

class Qcow2Resizer {
  private readonly clusterSize: number;
  private readonly metadata: MetadataMap;
  private readonly refcounts: Refcounts;
  private readonly l1: DataView;

  constructor(private readonly file: HostFile, private readonly header: Qcow2Header) {
    this.clusterSize = clusterSizeOf(header);
    const l1Bytes = new Uint8Array(header.l1Size * L1_ENTRY_SIZE);
    file.readExactAt(l1Bytes, header.l1TableOffset, 'the L1 table');
    this.l1 = new DataView(l1Bytes.buffer);
    this.metadata = new MetadataMap(file.path, header, readSnapshotTable(file, header));
    for (let i = 0; i < header.l1Size; i++) {
      const { l2Offset } = readL1Entry(this.l1, i * L1_ENTRY_SIZE, file.path);
      if (l2Offset !== 0) this.metadata.addActiveL2(l2Offset);
    }
    this.refcounts = new Refcounts(file, header, this.metadata);
    if (header.autoclearFeatures !== 0n) {
      // Bitmaps are not resized with the disk: clearing the bits tells the next reader so (as qcow2-image.ts does).
      file.writeAt(new Uint8Array(8), FIELD.autoclearFeatures);
      file.datasync();
    }
  }

  grow(size: number): void {
    const { l1Size, l1TableOffset } = this.header;
    const neededL1 = l1EntriesFor(size, this.header.clusterBits);
    if (neededL1 <= l1Size) {
      this.writeSizeFields(size, l1Size, l1TableOffset);
      return;
    }
    const table = new Uint8Array(neededL1 * L1_ENTRY_SIZE);
    table.set(new Uint8Array(this.l1.buffer));
    const offset = allocateContiguous(this.file.path, this.refcounts, this.metadata, table.length);
    this.file.datasync();  // the new table's refcounts are durable before the header names it
    this.file.writeAt(table, offset);
    this.file.datasync();
    this.writeSizeFields(size, neededL1, offset);
    this.freeRange(l1TableOffset, l1Size * L1_ENTRY_SIZE);
    this.file.datasync();
  }

  shrink(size: number): void {
    this.writeSizeFields(size, this.header.l1Size, this.header.l1TableOffset);
    const l2Entries = l2EntriesOf(this.header);
    const keptClusters = Math.ceil(size / this.clusterSize);
    const freed: number[] = [];
    for (let index = Math.floor(keptClusters / l2Entries); index < this.header.l1Size; index++) {
      const { l2Offset } = readL1Entry(this.l1, index * L1_ENTRY_SIZE, this.file.path);
      if (l2Offset === 0) continue;
      const firstKept = Math.max(0, keptClusters - index * l2Entries);
      const table = new Uint8Array(this.clusterSize);
      this.file.readExactAt(table, l2Offset, 'an L2 table');
      const view = new DataView(table.buffer);
      for (let entry = firstKept; entry < l2Entries; entry++) freed.push(...this.clustersHeld(view, entry * L2_ENTRY_SIZE));
      if (firstKept === 0) {
        this.l1.setBigUint64(index * L1_ENTRY_SIZE, 0n);
        this.metadata.checkWrite(this.header.l1TableOffset + index * L1_ENTRY_SIZE, L1_ENTRY_SIZE, 'active L1 table');
        this.file.writeAt(new Uint8Array(this.l1.buffer, index * L1_ENTRY_SIZE, L1_ENTRY_SIZE), this.header.l1TableOffset + index * L1_ENTRY_SIZE);
        freed.push(l2Offset / this.clusterSize);
      } else {
        table.fill(0, firstKept * L2_ENTRY_SIZE);
        this.metadata.checkWrite(l2Offset, this.clusterSize, 'active L2 table');
        this.file.writeAt(table, l2Offset);
      }
    }
    this.file.datasync();  // nothing names the clusters any more before they are counted free
    for (const cluster of freed) this.refcounts.decrement(cluster);
    this.file.datasync();
    this.truncateAfterLastUsedCluster();
  }

  /** The host clusters one L2 entry holds a reference to. */
  private clustersHeld(table: DataView, at: number): number[] {
    const mapping = readL2Entry(table, at, this.header.clusterBits, this.header.version, this.file.path);
    if (mapping.kind === 'compressed') {
      const first = Math.floor(mapping.hostOffset / this.clusterSize);
      const last = Math.floor((mapping.hostOffset + mapping.compressedSize - 1) / this.clusterSize);
      return Array.from({ length: last - first + 1 }, (_, i) => first + i);
    }
    if ((mapping.kind === 'normal' || mapping.kind === 'zero') && mapping.hostOffset !== 0) return [mapping.hostOffset / this.clusterSize];
    return [];
  }

  /** The virtual size and the L1 table's size and place, in one write inside the first sector. */
  private writeSizeFields(size: number, l1Size: number, l1TableOffset: number): void {
    const fields = new Uint8Array(SIZE_FIELDS_LENGTH);
    const view = new DataView(fields.buffer);
    setU64(view, 0, size);
    view.setUint32(8, this.header.cryptMethod);
    view.setUint32(12, l1Size);
    setU64(view, 16, l1TableOffset);
    this.metadata.checkWrite(SIZE_FIELD, fields.length, 'qcow2_header');
    this.file.writeAt(fields, SIZE_FIELD);
    this.file.datasync();
  }

  private freeRange(offset: number, length: number): void {
    if (length <= 0) return;
    const last = Math.floor((offset + length - 1) / this.clusterSize);
    for (let c = Math.floor(offset / this.clusterSize); c <= last; c++) this.refcounts.decrement(c);
  }

  /** Clusters past the last one in use hold nothing: the file ends there, as QEMU leaves it. */
  private truncateAfterLastUsedCluster(): void {
    let end = Math.ceil(this.file.size() / this.clusterSize);
    while (end > 1 && this.refcounts.get(end - 1) === 0) end--;
    if (end * this.clusterSize < this.file.size()) this.file.truncate(end * this.clusterSize);
  }
}
