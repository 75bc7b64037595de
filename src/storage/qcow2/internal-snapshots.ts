// Internal snapshots of a qcow2 image (QEMU's qcow2-snapshot.c): creating,
// applying and deleting them on an image no one else has open.
//
// A snapshot is a copy of the active L1 table plus one more reference on every
// cluster that table reaches (its L2 tables and their data clusters). A
// cluster counted more than once loses its copied flag, so the next write to
// it copies it first (qcow2-image.ts), and the snapshot keeps the old content.
//
// Each operation orders its writes so that a crash at any point leaves a
// consistent image: a refcount is raised (and synced) before anything new
// points at the cluster, and lowered only after what pointed at it is gone.
//   create: copy the L1 table; per L2 table, clear the copied flags it and its
//           entries carry, then raise the refcounts; sync; commit.
//   apply:  raise the refcounts of what the snapshot reaches; sync; write its
//           L1 table over the active one; sync; lower what the old one reached.
//   delete: commit; lower what the snapshot reaches; sync; set the copied
//           flags of the clusters the active table now holds alone.
// "Commit" is the new snapshot table, written and synced, then one 12-byte
// header write (nb_snapshots, snapshots_offset) inside the first sector.
// A crash leaves at worst leaked clusters, except inside create's or delete's
// window between a refcount change and the copied flag that goes with it: a
// cluster counted once whose entry lacks the flag. That is harmless (the next
// write copies the cluster), QEMU's own snapshot code has the same window, and
// `check -r all` sets the flag.
import { InputError } from '../../errors.ts';
import { HostFile } from '../host-file.ts';
import { allocateContiguous } from './contiguous.ts';
import { Qcow2CorruptionError, REPAIR_HINT } from './corruption.ts';
import { clusterSizeOf, FIELD, INCOMPATIBLE, l2EntriesOf, readHeader, type Qcow2Header } from './header.ts';
import { L1_ENTRY_SIZE, L2_ENTRY_SIZE, readL1Entry, readL2Entry, setCopiedFlag, setU64 } from './layout.ts';
import { MetadataMap } from './overlap.ts';
import { Refcounts } from './refcounts.ts';
import { decodeSnapshotEntry, encodeEntry, encodeTable, MAX_SNAPSHOTS, NO_ICOUNT, readSnapshots, readSnapshotTable, type SnapshotEntry } from './snapshots.ts';

const SNAPSHOT_FIELDS_OFFSET = 60;  // nb_snapshots (u32), then snapshots_offset (u64)
const MAX_NAME_BYTES = 1024;

/** What `qemu-img snapshot -l` shows of a snapshot. */
export interface SnapshotInfo {
  id: string;
  name: string;
  dateSec: number;
  dateNsec: number;
  vmClockNsec: number;
  vmStateSize: number;
  /** -1 when the VM ran without instruction counting. */
  icount: number;
}

export interface NewSnapshotOptions {
  /** When it was taken (default: now). */
  date?: { sec: number; nsec: number };
  /** The guest clock at that moment, in nanoseconds (default 0: no VM ran). */
  vmClockNsec?: number;
}

function infoOf(entry: SnapshotEntry): SnapshotInfo {
  const { id, name, dateSec, dateNsec, vmClockNsec, vmStateSize, icount } = entry;
  return { id, name, dateSec, dateNsec, vmClockNsec, vmStateSize, icount };
}

/** The snapshots of a qcow2 image, in table order. */
export function listQcow2Snapshots(path: string): SnapshotInfo[] {
  const file = HostFile.open(path, true);
  try {
    return readSnapshots(file, readHeader(file)).entries.map(infoOf);
  } finally {
    file.close();
  }
}

export function createQcow2Snapshot(path: string, name: string, options: NewSnapshotOptions = {}): SnapshotInfo {
  return edit(path, (editor) => editor.create(name, options));
}

/** Makes the disk read as it did when the snapshot `key` (an id or a name) was taken. */
export function applyQcow2Snapshot(path: string, key: string): SnapshotInfo {
  return edit(path, (editor) => editor.apply(key));
}

export function deleteQcow2Snapshot(path: string, key: string): SnapshotInfo {
  return edit(path, (editor) => editor.delete(key));
}

function edit<T>(path: string, operation: (editor: SnapshotEditor) => T): T {
  const file = HostFile.open(path, false);
  try {
    const editor = new SnapshotEditor(file, readHeader(file));
    try {
      return operation(editor);
    } catch (e) {
      if (e instanceof Qcow2CorruptionError) {
        try {
          editor.markCorrupt();
        } catch {
          // The corruption is what the user needs to hear about; a failed mark changes nothing they can do.
        }
      }
      throw e;
    }
  } finally {
    file.close();
  }
}

/** One reference an L2 table holds: `count` host clusters from `first`, and the entry whose copied flag describes it (null: compressed). */
interface Reference { first: number; count: number; entry: number | null }

class SnapshotEditor {
  private readonly clusterSize: number;
  private readonly fileClusters: number;
  private readonly l1: DataView;
  private readonly metadata: MetadataMap;
  private readonly refcounts: Refcounts;
  private readonly snapshots: SnapshotEntry[];

  constructor(private readonly file: HostFile, private readonly header: Qcow2Header) {
    const features = header.incompatibleFeatures;
    if (features & (INCOMPATIBLE.dirty | INCOMPATIBLE.corrupt)) {
      throw this.error(`is marked ${features & INCOMPATIBLE.corrupt ? 'corrupt' : 'dirty'}; ${REPAIR_HINT} first`);
    }
    if (header.refcountOrder === 0) throw this.error('has 1-bit refcounts, which cannot count a cluster shared with a snapshot');
    this.clusterSize = clusterSizeOf(header);
    this.fileClusters = Math.ceil(file.size() / this.clusterSize);
    this.l1 = this.readL1(header.l1TableOffset, header.l1Size, 'the L1 table');
    this.snapshots = readSnapshots(file, header).entries;
    this.metadata = new MetadataMap(file.path, header, readSnapshotTable(file, header));
    this.forEachL2(this.l1, header.l1Size, (_, l2Offset) => this.metadata.addActiveL2(l2Offset));
    this.refcounts = new Refcounts(file, header, this.metadata);
    if (header.autoclearFeatures !== 0n) {
      // Bitmaps are not kept up to date here: clearing the bits tells the next reader so (as qcow2-image.ts does).
      this.file.writeAt(new Uint8Array(8), FIELD.autoclearFeatures);
      this.file.datasync();
    }
  }

  create(name: string, options: NewSnapshotOptions): SnapshotInfo {
    const nameBytes = Buffer.byteLength(name, 'utf8');
    if (nameBytes === 0 || nameBytes > MAX_NAME_BYTES) throw this.error(`a snapshot name must be 1 to ${MAX_NAME_BYTES} bytes long`);
    if (this.snapshots.some((s) => s.name === name)) throw this.error(`already has a snapshot named "${name}"`);
    if (this.snapshots.length >= MAX_SNAPSHOTS) throw this.error(`already has ${MAX_SNAPSHOTS} snapshots, the most qcow2 allows`);
    const now = Date.now();
    const date = options.date ?? { sec: Math.floor(now / 1000), nsec: (now % 1000) * 1e6 };

    // The snapshot's L1 table: the active one, without copied flags (every table it names is shared now).
    const { l1Size } = this.header;
    const l1Copy = new DataView(this.l1.buffer.slice(0));
    for (let i = 0; i < l1Size; i++) setCopiedFlag(l1Copy, i * L1_ENTRY_SIZE, false);
    const l1Offset = l1Size > 0 ? this.allocate(l1Size * L1_ENTRY_SIZE) : 0;
    if (l1Size > 0) this.file.writeAt(new Uint8Array(l1Copy.buffer), l1Offset);

    this.forEachL2(this.l1, l1Size, (index, l2Offset) => {
      if (readL1Entry(this.l1, index * L1_ENTRY_SIZE, this.file.path).copied) this.writeActiveL1Flag(index, false);
      const table = this.readL2(l2Offset);
      const references = this.referencesOf(table);
      if (this.setFlags(table, references, () => false)) this.writeL2(l2Offset, table);
      for (const { first, count } of references) for (let c = first; c < first + count; c++) this.increment(c);
      this.increment(l2Offset / this.clusterSize);
    });
    this.file.datasync();  // the new counts are durable before the snapshot that needs them exists

    const entry = encodeEntry({
      id: this.nextId(),
      name,
      l1TableOffset: l1Offset,
      l1Size,
      dateSec: date.sec,
      dateNsec: date.nsec,
      vmClockNsec: options.vmClockNsec ?? 0,
      vmStateSize: 0,
      diskSize: this.header.size,
      icount: NO_ICOUNT,
    });
    const added = decodeSnapshotEntry(entry, this.file.path);
    this.commit([...this.snapshots, added]);
    return infoOf(added);
  }

  apply(key: string): SnapshotInfo {
    const snapshot = this.find(key);
    if (snapshot.diskSize !== null && snapshot.diskSize !== this.header.size) {
      throw this.error(`snapshot "${snapshot.name}" was taken at a disk size of ${snapshot.diskSize} bytes, not ${this.header.size}; tsvmm does not resize disks`);
    }
    const l1Size = this.header.l1Size;
    const snapshotL1 = this.readL1(snapshot.l1TableOffset, snapshot.l1Size, `snapshot "${snapshot.name}"'s L1 table`);
    for (let i = l1Size; i < snapshot.l1Size; i++) {
      if (readL1Entry(snapshotL1, i * L1_ENTRY_SIZE, this.file.path).l2Offset !== 0) {
        throw this.error(`snapshot "${snapshot.name}" maps clusters beyond the end of the disk; tsvmm does not resize disks`);
      }
    }
    const used = Math.min(l1Size, snapshot.l1Size);

    // 1. The active table is about to name the snapshot's clusters too: count them once more.
    this.forEachL2(snapshotL1, used, (_, l2Offset) => {
      const table = this.readL2(l2Offset);
      const references = this.referencesOf(table);
      if (this.setFlags(table, references, () => false)) this.writeL2(l2Offset, table);
      for (const { first, count } of references) for (let c = first; c < first + count; c++) this.increment(c);
      this.increment(l2Offset / this.clusterSize);
    });
    this.file.datasync();

    // 2. The snapshot's L1 table becomes the active one (shared with the snapshot: no copied flags).
    const oldL1 = new DataView(this.l1.buffer.slice(0));
    new Uint8Array(this.l1.buffer).fill(0);
    for (let i = 0; i < used; i++) {
      this.l1.setBigUint64(i * L1_ENTRY_SIZE, snapshotL1.getBigUint64(i * L1_ENTRY_SIZE));
      setCopiedFlag(this.l1, i * L1_ENTRY_SIZE, false);
    }
    if (l1Size > 0) {
      this.metadata.checkWrite(this.header.l1TableOffset, l1Size * L1_ENTRY_SIZE, 'active L1 table');
      this.file.writeAt(new Uint8Array(this.l1.buffer), this.header.l1TableOffset);
    }
    this.file.datasync();

    // 3. What the old active table reached loses that reference; clusters no one else holds are freed.
    this.forEachL2(oldL1, l1Size, (_, l2Offset) => {
      for (const { first, count } of this.referencesOf(this.readL2(l2Offset))) {
        for (let c = first; c < first + count; c++) this.refcounts.decrement(c);
      }
      this.refcounts.decrement(l2Offset / this.clusterSize);
    });
    this.file.datasync();
    return infoOf(snapshot);
  }

  delete(key: string): SnapshotInfo {
    const snapshot = this.find(key);
    const snapshotL1 = this.readL1(snapshot.l1TableOffset, snapshot.l1Size, `snapshot "${snapshot.name}"'s L1 table`);
    this.commit(this.snapshots.filter((s) => s !== snapshot));

    this.forEachL2(snapshotL1, snapshot.l1Size, (_, l2Offset) => {
      for (const { first, count } of this.referencesOf(this.readL2(l2Offset))) {
        for (let c = first; c < first + count; c++) this.refcounts.decrement(c);
      }
      this.refcounts.decrement(l2Offset / this.clusterSize);
    });
    this.freeRange(snapshot.l1TableOffset, snapshot.l1Size * L1_ENTRY_SIZE);
    this.file.datasync();  // the lower counts are durable before any flag says a cluster is the active table's alone

    const alone = (cluster: number) => this.refcounts.get(cluster) === 1;
    this.forEachL2(this.l1, this.header.l1Size, (index, l2Offset) => {
      const table = this.readL2(l2Offset);
      if (this.setFlags(table, this.referencesOf(table), alone)) this.writeL2(l2Offset, table);
      const copied = alone(l2Offset / this.clusterSize);
      if (readL1Entry(this.l1, index * L1_ENTRY_SIZE, this.file.path).copied !== copied) this.writeActiveL1Flag(index, copied);
    });
    this.file.datasync();
    return infoOf(snapshot);
  }

  /** QEMU's qcow2_signal_corruption, for an image found corrupt half-way through an operation. */
  markCorrupt(): void {
    if (this.header.version !== 3) return;
    const features = new Uint8Array(8);
    new DataView(features.buffer).setBigUint64(0, this.header.incompatibleFeatures | INCOMPATIBLE.corrupt);
    this.file.writeAt(features, FIELD.incompatibleFeatures);
    this.file.datasync();
  }

  /** By id first, then by name, as QEMU looks snapshots up. */
  private find(key: string): SnapshotEntry {
    const found = this.snapshots.find((s) => s.id === key) ?? this.snapshots.find((s) => s.name === key);
    if (!found) throw this.error(`has no snapshot "${key}"`);
    return found;
  }

  /** One more than the highest numeric id, as QEMU numbers snapshots. */
  private nextId(): string {
    const highest = this.snapshots.reduce((max, s) => Math.max(max, /^\d+$/.test(s.id) ? Number(s.id) : 0), 0);
    return String(highest + 1);
  }

  /**
   * Writes the new snapshot table to new clusters and syncs it, switches the
   * header to it in one write and syncs that, then frees the old table.
   */
  private commit(entries: SnapshotEntry[]): void {
    const table = encodeTable(entries);
    const offset = table.length > 0 ? this.allocate(table.length) : 0;
    if (table.length > 0) this.file.writeAt(table, offset);
    this.file.datasync();
    const fields = new Uint8Array(12);
    const view = new DataView(fields.buffer);
    view.setUint32(0, entries.length);
    setU64(view, 4, offset);
    this.metadata.checkWrite(SNAPSHOT_FIELDS_OFFSET, fields.length, 'qcow2_header');
    this.file.writeAt(fields, SNAPSHOT_FIELDS_OFFSET);
    this.file.datasync();
    const oldLength = this.snapshots.reduce((sum, s) => sum + s.bytes.length, 0);
    if (this.header.snapshotCount > 0) this.freeRange(this.header.snapshotsOffset, oldLength);
    this.file.datasync();
  }

  /** Host offsets of the L2 tables an L1 table names, each checked to be a cluster in the file. */
  private forEachL2(l1: DataView, entries: number, visit: (index: number, l2Offset: number) => void): void {
    for (let i = 0; i < entries; i++) {
      const { l2Offset } = readL1Entry(l1, i * L1_ENTRY_SIZE, this.file.path);
      if (l2Offset === 0) continue;
      this.checkCluster(l2Offset, `L1 entry ${i}`);
      visit(i, l2Offset);
    }
  }

  /** The host clusters an L2 table's entries hold a reference to. */
  private referencesOf(table: DataView): Reference[] {
    const references: Reference[] = [];
    for (let i = 0; i < l2EntriesOf(this.header); i++) {
      const at = i * L2_ENTRY_SIZE;
      const mapping = readL2Entry(table, at, this.header.clusterBits, this.header.version, this.file.path);
      if (mapping.kind === 'compressed') {
        const first = Math.floor(mapping.hostOffset / this.clusterSize);
        const last = Math.floor((mapping.hostOffset + mapping.compressedSize - 1) / this.clusterSize);
        this.checkCluster(first * this.clusterSize, 'a compressed cluster');
        this.checkCluster(last * this.clusterSize, 'a compressed cluster');
        references.push({ first, count: last - first + 1, entry: null });
      } else if ((mapping.kind === 'normal' || mapping.kind === 'zero') && mapping.hostOffset !== 0) {
        this.checkCluster(mapping.hostOffset, 'an L2 entry');
        references.push({ first: mapping.hostOffset / this.clusterSize, count: 1, entry: at });
      }
    }
    return references;
  }

  /** Sets each uncompressed entry's copied flag to copied(cluster); true when any changed. */
  private setFlags(table: DataView, references: Reference[], copied: (cluster: number) => boolean): boolean {
    let changed = false;
    for (const { first, entry } of references) {
      if (entry === null) continue;
      const want = copied(first);
      if (((table.getUint32(entry) & 0x80000000) !== 0) === want) continue;
      setCopiedFlag(table, entry, want);
      changed = true;
    }
    return changed;
  }

  private increment(cluster: number): void {
    // A referenced cluster counted 0 times has no refcount to raise: the image is corrupt.
    if (this.refcounts.get(cluster) === 0) throw this.corrupt(`cluster ${cluster} is in use but its refcount is 0`);
    this.refcounts.increment(cluster);
  }

  private freeRange(offset: number, length: number): void {
    if (length <= 0) return;
    const last = Math.floor((offset + length - 1) / this.clusterSize);
    for (let c = Math.floor(offset / this.clusterSize); c <= last; c++) this.refcounts.decrement(c);
  }

  /** `bytes` worth of contiguous clusters, counted (not yet synced): L1 tables and the snapshot table must be in one piece. */
  private allocate(bytes: number): number {
    return allocateContiguous(this.file.path, this.refcounts, this.metadata, bytes);
  }

  private readL1(offset: number, entries: number, what: string): DataView {
    const bytes = new Uint8Array(entries * L1_ENTRY_SIZE);
    if (entries > 0 && offset % this.clusterSize !== 0) throw this.corrupt(`${what} at 0x${offset.toString(16)} is not cluster-aligned`);
    this.file.readExactAt(bytes, offset, what);
    return new DataView(bytes.buffer);
  }

  private readL2(offset: number): DataView {
    const bytes = new Uint8Array(this.clusterSize);
    this.file.readExactAt(bytes, offset, 'an L2 table');
    return new DataView(bytes.buffer);
  }

  /** Rewrites an L2 table whose copied flags changed (active or not: it is the L2 tables' own kind of metadata). */
  private writeL2(offset: number, table: DataView): void {
    this.metadata.checkWrite(offset, this.clusterSize, 'active L2 table');
    this.file.writeAt(new Uint8Array(table.buffer), offset);
  }

  private writeActiveL1Flag(index: number, copied: boolean): void {
    const at = index * L1_ENTRY_SIZE;
    setCopiedFlag(this.l1, at, copied);
    this.metadata.checkWrite(this.header.l1TableOffset + at, L1_ENTRY_SIZE, 'active L1 table');
    this.file.writeAt(new Uint8Array(this.l1.buffer, at, L1_ENTRY_SIZE), this.header.l1TableOffset + at);
  }

  /** A table entry must name a whole cluster after the header and inside the file. */
  private checkCluster(offset: number, what: string): void {
    if (offset % this.clusterSize !== 0 || offset < this.clusterSize || offset / this.clusterSize >= this.fileClusters) {
      throw this.corrupt(`${what} points to 0x${offset.toString(16)}, not a cluster of the file after the header`);
    }
  }

  private error(message: string): InputError {
    return new InputError(`${this.file.path}: ${message}`);
  }

  private corrupt(message: string): Qcow2CorruptionError {
    return new Qcow2CorruptionError(this.file.path, message);
  }
}
