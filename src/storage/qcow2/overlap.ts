// Where an image's metadata lies on the host, so that no write lands on it by
// mistake (QEMU's qcow2_check_metadata_overlap). Every write the image makes
// is checked here first: guest data against all metadata, a metadata update
// against all metadata of other kinds. A hit means the image's own tables
// point where they must not (a corrupt image): the write is refused and the
// image marked corrupt, instead of being destroyed by its own guest.
import { Qcow2CorruptionError } from './corruption.ts';
import type { Qcow2Header } from './header.ts';
import type { SnapshotTable } from './snapshots.ts';

/** QEMU's names for the kinds of metadata, as its messages use them. */
export type MetadataKind =
  | 'qcow2_header'
  | 'active L1 table'
  | 'active L2 table'
  | 'refcount table'
  | 'refcount block'
  | 'snapshot table'
  | 'inactive L1 table'
  | 'bitmap directory';

interface Range { offset: number; length: number; kind: MetadataKind }

export class MetadataMap {
  private readonly clusterSize: number;
  /** Host offsets of the L2 tables the active L1 table points to. */
  private readonly activeL2 = new Set<number>();
  /** Host offsets of the refcount blocks. */
  private readonly refcountBlocks = new Set<number>();
  /** The metadata that lies in ranges: the header, tables whose place is in the header. */
  private readonly ranges: Range[];
  private refcountTable: Range;

  constructor(private readonly path: string, header: Qcow2Header, snapshots: SnapshotTable) {
    this.clusterSize = 2 ** header.clusterBits;
    this.refcountTable = { offset: header.refcountTableOffset, length: header.refcountTableClusters * this.clusterSize, kind: 'refcount table' };
    this.ranges = [
      { offset: 0, length: this.clusterSize, kind: 'qcow2_header' },
      { offset: header.l1TableOffset, length: header.l1Size * 8, kind: 'active L1 table' },
      { offset: header.snapshotsOffset, length: snapshots.length, kind: 'snapshot table' },
      ...snapshots.l1Tables.map(({ offset, entries }): Range => ({ offset, length: entries * 8, kind: 'inactive L1 table' })),
      ...(header.bitmaps ? [{ offset: header.bitmaps.directoryOffset, length: header.bitmaps.directorySize, kind: 'bitmap directory' as const }] : []),
    ];
  }

  addActiveL2(offset: number): void { this.activeL2.add(offset); }
  removeActiveL2(offset: number): void { this.activeL2.delete(offset); }
  addRefcountBlock(offset: number): void { this.refcountBlocks.add(offset); }
  setRefcountTable(offset: number, clusters: number): void {
    this.refcountTable = { offset, length: clusters * this.clusterSize, kind: 'refcount table' };
  }

  /**
   * The first kind of metadata (other than `ignore`) in the clusters that
   * [offset, offset+length) touches, or null. Whole clusters, as in QEMU: a
   * cluster that holds any metadata is no place for anything else.
   */
  overlap(offset: number, length: number, ignore?: MetadataKind): MetadataKind | null {
    if (length <= 0) return null;
    const first = Math.floor(offset / this.clusterSize);
    const last = Math.floor((offset + length - 1) / this.clusterSize);
    const start = first * this.clusterSize;
    const end = (last + 1) * this.clusterSize;
    const overlaps = (range: Range) => range.kind !== ignore && range.length > 0 && start < range.offset + range.length && range.offset < end;
    for (const range of this.ranges) if (overlaps(range)) return range.kind;
    if (overlaps(this.refcountTable)) return 'refcount table';
    const clusters = [[this.activeL2, 'active L2 table'], [this.refcountBlocks, 'refcount block']] as const;
    for (const [tables, kind] of clusters) {
      if (kind === ignore || tables.size === 0) continue;
      // Whichever is smaller: the clusters written, or the tables there are.
      if (last - first + 1 <= tables.size) {
        for (let c = first; c <= last; c++) if (tables.has(c * this.clusterSize)) return kind;
      } else {
        for (const table of tables) if (table < end && table + this.clusterSize > start) return kind;
      }
    }
    return null;
  }

  /** Refuses a write of `length` bytes at `offset` that would land on metadata (`writing`: the kind being updated). */
  checkWrite(offset: number, length: number, writing?: MetadataKind): void {
    const hit = this.overlap(offset, length, writing);
    if (hit) {
      throw new Qcow2CorruptionError(this.path,
        `preventing invalid write on metadata (overlaps with ${hit}): ${length} bytes at 0x${offset.toString(16)}`);
    }
  }
}
