// A bounded cache of one-cluster metadata tables (L2 tables and refcount
// blocks), keyed by host offset, least recently used evicted first.
//
// It is write-through: whoever changes an entry in a cached table writes those
// bytes to the file at once (writeThrough), so evicting a table never loses a
// change and the order of metadata writes stays the order the code makes them.
// With a metadata map, each write is first checked not to land on metadata of
// another kind (a table the image's own pointers put in the wrong place).
import type { HostFile } from '../host-file.ts';
import type { MetadataKind, MetadataMap } from './overlap.ts';

export class TableCache {
  // A Map iterates in insertion order: re-inserting on use keeps the least recently used first.
  private readonly tables = new Map<number, DataView>();

  constructor(
    private readonly file: HostFile,
    private readonly tableSize: number,
    private readonly capacity: number,
    private readonly what: string,
    private readonly guard?: { map: MetadataMap; kind: MetadataKind },
  ) {}

  /** The table at host offset `offset`, read from the file if it is not cached. */
  get(offset: number): DataView {
    const cached = this.tables.get(offset);
    if (cached) {
      this.tables.delete(offset);
      this.tables.set(offset, cached);
      return cached;
    }
    const bytes = new Uint8Array(this.tableSize);
    this.file.readExactAt(bytes, offset, this.what);
    return this.insert(offset, new DataView(bytes.buffer));
  }

  /** Caches a table the caller has just written to the file. */
  put(offset: number, bytes: Uint8Array): DataView {
    this.tables.delete(offset);
    return this.insert(offset, new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }

  /** Forgets the table at `offset` (its cluster was freed). */
  drop(offset: number): void {
    this.tables.delete(offset);
  }

  /** Writes bytes [start, end) of `table`, the table at host offset `offset`, to the file. */
  writeThrough(offset: number, table: DataView, start: number, end: number): void {
    this.guard?.map.checkWrite(offset + start, end - start, this.guard.kind);
    this.file.writeAt(new Uint8Array(table.buffer, table.byteOffset + start, end - start), offset + start);
  }

  private insert(offset: number, table: DataView): DataView {
    if (this.tables.size >= this.capacity) {
      const oldest = this.tables.keys().next().value as number;
      this.tables.delete(oldest);
    }
    this.tables.set(offset, table);
    return table;
  }
}
