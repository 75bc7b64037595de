// The consistency check behind `tsvmm img check`, as `qemu-img check` does
// it: count the references to every host cluster by walking the metadata
// (header, L1 and L2 tables of the image and of its snapshots, refcount
// structures, bitmaps), then compare them with the stored refcounts. A
// cluster referenced more often than counted is corruption (a later
// allocation could hand it out again); one counted more often than referenced
// is a leak (wasted space only).
import { InputError } from '../../errors.ts';
import { HostFile } from '../host-file.ts';
import { clusterSizeOf, l2EntriesOf, readHeader, type Qcow2Header } from './header.ts';
import { getU64, L1_ENTRY_SIZE, readL1Entry, readL2Entry } from './layout.ts';
import { Refcounts } from './refcounts.ts';
import { readSnapshotTable, type SnapshotTable } from './snapshots.ts';

export interface CheckReport {
  /** One line per problem that may lose data: "ERROR cluster 5 refcount=0 reference=1". */
  errors: string[];
  /** One line per leaked cluster: "Leaked cluster 4 refcount=2 reference=1". */
  leaks: string[];
  /** Guest clusters with data in this image, of `totalClusters`. */
  allocatedClusters: number;
  totalClusters: number;
  fragmentedClusters: number;
  compressedClusters: number;
  /** Where the last cluster in use ends. */
  imageEndOffset: number;
}

/** `qemu-img check` exit status: 0 clean, 2 corruption, 3 only leaks. */
export function checkExitStatus(report: CheckReport): number {
  if (report.errors.length > 0) return 2;
  return report.leaks.length > 0 ? 3 : 0;
}

export function checkQcow2(path: string): CheckReport {
  const file = HostFile.open(path, true);
  try {
    return analyzeQcow2(file, readHeader(file)).report;
  } finally {
    file.close();
  }
}

/** An entry whose copied flag must say whether its cluster's refcount is exactly one. */
export interface CopiedFlag {
  /** Where the L1 or L2 entry is in the file. */
  entryOffset: number;
  cluster: number;
  copied: boolean;
  describe: (refcount: number) => string;
}

/** What the check found, with what a repair needs to know beyond the report. */
export interface Qcow2Analysis {
  report: CheckReport;
  /** References to each host cluster of the file, the refcount structures' own included. */
  references: Uint32Array;
  /** The clusters of the refcount table and blocks (each counted once in references). */
  refcountStructure: number[];
  /** The refcount structures are unusable as they are: a block outside the image or used twice. */
  refcountStructureBroken: boolean;
  copiedFlags: CopiedFlag[];
  /** The stored refcount of a cluster, 0 where its block is missing or unreadable. */
  storedRefcount: (cluster: number) => number;
}

export function analyzeQcow2(file: HostFile, header: Qcow2Header): Qcow2Analysis {
  return new Checker(file, header).run();
}

const hex = (n: number | bigint) => n.toString(16);

class Checker {
  private readonly clusterSize: number;
  private readonly fileClusters: number;
  private readonly references: Uint32Array;
  private readonly refcounts: Refcounts;
  private readonly report: CheckReport;
  /** Active L1 entries and data clusters whose copied flag is checked against the refcount. */
  private readonly copiedFlags: CopiedFlag[] = [];
  private readonly refcountStructure: number[] = [];
  private refcountStructureBroken = false;
  private storedOf: (cluster: number) => number = () => 0;
  private lastDataCluster = -1;

  constructor(private readonly file: HostFile, private readonly header: Qcow2Header) {
    this.clusterSize = clusterSizeOf(header);
    this.fileClusters = Math.ceil(file.size() / this.clusterSize);
    this.references = new Uint32Array(this.fileClusters);
    this.refcounts = new Refcounts(file, header);
    this.report = {
      errors: [],
      leaks: [],
      allocatedClusters: 0,
      totalClusters: Math.ceil(header.size / this.clusterSize),
      fragmentedClusters: 0,
      compressedClusters: 0,
      imageEndOffset: 0,
    };
  }

  run(): Qcow2Analysis {
    const { header } = this;
    this.reference(0, this.clusterSize);
    this.walkL1(header.l1TableOffset, header.l1Size, true);
    const { offset, clusters } = this.refcounts.tableLocation();
    this.reference(offset, clusters * this.clusterSize);
    for (let c = 0; c < clusters; c++) this.refcountStructure.push(offset / this.clusterSize + c);
    const storedValid = this.referenceRefcountBlocks();
    if (header.snapshotCount > 0) this.walkSnapshots();
    if (header.bitmaps) this.walkBitmaps(header.bitmaps.directoryOffset, header.bitmaps.directorySize);
    // A refcount block that is also other metadata counts garbage, whatever the numbers say.
    if (this.refcountStructure.some((c) => c >= this.fileClusters || this.references[c]! > 1)) this.refcountStructureBroken = true;
    this.compare(storedValid);
    return {
      report: this.report,
      references: this.references,
      refcountStructure: this.refcountStructure,
      refcountStructureBroken: this.refcountStructureBroken,
      copiedFlags: this.copiedFlags,
      storedRefcount: this.storedOf,
    };
  }

  /** Counts one reference to each cluster under [offset, offset+length). */
  private reference(offset: number, length: number): void {
    if (length <= 0) return;
    const last = Math.floor((offset + length - 1) / this.clusterSize);
    for (let cluster = Math.floor(offset / this.clusterSize); cluster <= last; cluster++) {
      if (cluster >= this.fileClusters) {
        this.report.errors.push(`ERROR cluster ${cluster} is referenced but lies past the end of the file`);
        continue;
      }
      this.references[cluster]!++;
    }
  }

  private readCluster(offset: number, what: string): DataView | null {
    const bytes = new Uint8Array(this.clusterSize);
    if (this.file.readAt(bytes, offset) < bytes.length) {
      this.report.errors.push(`ERROR ${what} at 0x${hex(offset)} lies past the end of the file`);
      return null;
    }
    return new DataView(bytes.buffer);
  }

  private walkL1(l1Offset: number, l1Size: number, active: boolean): void {
    this.reference(l1Offset, l1Size * L1_ENTRY_SIZE);
    const bytes = new Uint8Array(l1Size * L1_ENTRY_SIZE);
    if (this.file.readAt(bytes, l1Offset) < bytes.length) {
      this.report.errors.push(`ERROR L1 table at 0x${hex(l1Offset)} lies past the end of the file`);
      return;
    }
    const l1 = new DataView(bytes.buffer);
    for (let i = 0; i < l1Size; i++) {
      const { l2Offset, copied } = readL1Entry(l1, i * L1_ENTRY_SIZE, this.file.path);
      if (l2Offset === 0) continue;
      if (l2Offset % this.clusterSize !== 0) {
        this.report.errors.push(`ERROR l2_offset=${hex(l2Offset)}: Table is not cluster aligned; L1 entry corrupted`);
        continue;
      }
      this.reference(l2Offset, this.clusterSize);
      if (active) {
        const entry = l1.getBigUint64(i * L1_ENTRY_SIZE);
        this.copiedFlags.push({
          entryOffset: l1Offset + i * L1_ENTRY_SIZE,
          cluster: l2Offset / this.clusterSize,
          copied,
          describe: (refcount) => `ERROR OFLAG_COPIED L2 cluster: l1_index=${i} l1_entry=${hex(entry)} refcount=${refcount}`,
        });
      }
      const table = this.readCluster(l2Offset, 'L2 table');
      if (table) this.walkL2(l2Offset, table, active);
    }
  }

  private walkL2(tableOffset: number, table: DataView, active: boolean): void {
    const entries = l2EntriesOf(this.header);
    for (let i = 0; i < entries; i++) {
      const mapping = readL2Entry(table, i * 8, this.header.clusterBits, this.header.version, this.file.path);
      if (mapping.kind === 'compressed') {
        this.reference(mapping.hostOffset, mapping.compressedSize);
        if (active) this.countData(-1, true);
        continue;
      }
      if (mapping.kind === 'unallocated' || mapping.hostOffset === 0) continue;
      if (mapping.hostOffset % this.clusterSize !== 0) {
        this.report.errors.push(`ERROR offset=${hex(mapping.hostOffset)}: Cluster is not properly aligned; L2 entry corrupted`);
        continue;
      }
      this.reference(mapping.hostOffset, this.clusterSize);
      if (!active) continue;
      const entry = table.getBigUint64(i * 8);
      this.copiedFlags.push({
        entryOffset: tableOffset + i * 8,
        cluster: mapping.hostOffset / this.clusterSize,
        copied: mapping.copied,
        describe: (refcount) => `ERROR OFLAG_COPIED data cluster: l2_entry=${hex(entry)} refcount=${refcount}`,
      });
      if (mapping.kind === 'normal') this.countData(mapping.hostOffset / this.clusterSize, false);
    }
  }

  /** Allocation statistics for the summary line. */
  private countData(hostCluster: number, compressed: boolean): void {
    this.report.allocatedClusters++;
    if (compressed) {
      this.report.compressedClusters++;
      return;
    }
    if (this.lastDataCluster >= 0 && hostCluster !== this.lastDataCluster + 1) this.report.fragmentedClusters++;
    this.lastDataCluster = hostCluster;
  }

  /** References the refcount blocks; returns which of them can be read. */
  private referenceRefcountBlocks(): boolean[] {
    return this.refcounts.blockOffsets().map((offset, index) => {
      if (offset === 0) return false;
      if (offset + this.clusterSize > this.fileClusters * this.clusterSize) {
        this.report.errors.push(`ERROR refcount block ${index} is outside image`);
        this.refcountStructureBroken = true;
        return false;
      }
      this.reference(offset, this.clusterSize);
      this.refcountStructure.push(offset / this.clusterSize);
      return true;
    });
  }

  private walkSnapshots(): void {
    let table: SnapshotTable;
    try {
      table = readSnapshotTable(this.file, this.header);
    } catch (e) {
      if (!(e instanceof InputError)) throw e;
      this.report.errors.push(`ERROR snapshot table at 0x${hex(this.header.snapshotsOffset)}: ${e.message.replace(/^.*corrupt qcow2 image: /, '')}`);
      return;
    }
    table.l1Tables.forEach(({ offset, entries }, i) => {
      if (offset % this.clusterSize !== 0) {
        this.report.errors.push(`ERROR snapshot ${i} L1 table at 0x${hex(offset)} is not cluster aligned`);
      } else {
        this.walkL1(offset, entries, false);
      }
    });
    this.reference(this.header.snapshotsOffset, table.length);
  }

  private walkBitmaps(directoryOffset: number, directorySize: number): void {
    this.reference(directoryOffset, directorySize);
    const directory = new Uint8Array(directorySize);
    if (this.file.readAt(directory, directoryOffset) < directorySize) {
      this.report.errors.push(`ERROR bitmap directory at 0x${hex(directoryOffset)} lies past the end of the file`);
      return;
    }
    const view = new DataView(directory.buffer);
    for (let at = 0; at + 24 <= directorySize;) {
      const tableOffset = getU64(view, at, 'a bitmap table offset', this.file.path);
      const tableSize = view.getUint32(at + 8);
      const entryLength = 24 + view.getUint32(at + 20) + view.getUint16(at + 18);
      this.reference(tableOffset, tableSize * 8);
      const table = new Uint8Array(tableSize * 8);
      this.file.readAt(table, tableOffset);
      const tableView = new DataView(table.buffer);
      for (let i = 0; i < tableSize; i++) {
        const { l2Offset: dataOffset } = readL1Entry(tableView, i * 8, this.file.path);
        if (dataOffset !== 0) this.reference(dataOffset, this.clusterSize);
      }
      at += Math.ceil(entryLength / 8) * 8;
    }
  }

  private compare(blockReadable: boolean[]): void {
    const perBlock = this.refcounts.entriesPerBlock;
    const storedOf = (cluster: number) => (blockReadable[Math.floor(cluster / perBlock)] ? this.refcounts.get(cluster) : 0);
    this.storedOf = storedOf;
    let lastInUse = -1;
    for (let cluster = 0; cluster < this.fileClusters; cluster++) {
      const stored = storedOf(cluster);
      const referenced = this.references[cluster]!;
      if (stored > 0) lastInUse = cluster;
      if (stored === referenced) continue;
      const line = `cluster ${cluster} refcount=${stored} reference=${referenced}`;
      if (stored < referenced) this.report.errors.push(`ERROR ${line}`);
      else this.report.leaks.push(`Leaked ${line}`);
    }
    for (const { cluster, copied, describe } of this.copiedFlags) {
      const stored = cluster < this.fileClusters ? storedOf(cluster) : 0;
      if ((stored === 1) !== copied) this.report.errors.push(describe(stored));
    }
    this.report.imageEndOffset = (lastInUse + 1) * this.clusterSize;
  }
}

/** The report as `qemu-img check` prints it: problems (for stderr), then the summary (stdout). */
export function formatCheckReport(report: CheckReport): { problems: string; summary: string } {
  const lines: string[] = [];
  const { errors, leaks } = report;
  if (errors.length === 0 && leaks.length === 0) lines.push('No errors were found on the image.');
  if (errors.length > 0) {
    lines.push('', `${errors.length} errors were found on the image.`, 'Data may be corrupted, or further writes to the image may corrupt it.');
  }
  if (leaks.length > 0) {
    lines.push('', `${leaks.length} leaked clusters were found on the image.`, 'This means waste of disk space, but no harm to data.');
  }
  const percent = (n: number) => (report.totalClusters ? (100 * n) / report.totalClusters : 0).toFixed(2);
  const ofAllocated = (n: number) => (report.allocatedClusters ? (100 * n) / report.allocatedClusters : 0).toFixed(2);
  if (report.allocatedClusters > 0) {
    lines.push(`${report.allocatedClusters}/${report.totalClusters} = ${percent(report.allocatedClusters)}% allocated, `
      + `${ofAllocated(report.fragmentedClusters)}% fragmented, ${ofAllocated(report.compressedClusters)}% compressed clusters`);
  }
  lines.push(`Image end offset: ${report.imageEndOffset}`);
  return { problems: [...leaks, ...errors].map((l) => `${l}\n`).join(''), summary: `${lines.join('\n')}\n` };
}
