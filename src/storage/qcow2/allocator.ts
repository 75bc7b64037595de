// Hands out host clusters for new data and L2 tables, and frees the clusters
// that copy-on-write left behind, in the order that keeps the image
// consistent on disk.
//
// - Clusters are reserved in batches: their refcounts are written and synced
//   once per batch, so a cluster's refcount is on disk before anything that
//   points to it can be, without a sync per allocation. A crash leaks the
//   rest of the batch (refcount 1, unreferenced), which `qemu-img check`
//   reports as leaks, never as corruption; close() gives unused ones back.
// - A cluster that lost its last reference (a compressed cluster rewritten,
//   an L2 table copied) is freed only at the next flush, after the entries
//   that stopped pointing to it are durable.
// - A cluster that holds metadata is never handed out, whatever its refcount
//   says: a refcount of 0 there means the refcounts are corrupt.
import type { HostFile } from '../host-file.ts';
import { Qcow2CorruptionError } from './corruption.ts';
import type { MetadataMap } from './overlap.ts';
import type { Refcounts } from './refcounts.ts';

// Batches grow from 256 KiB to 2 MiB (or 256 clusters): a sync per 2 MiB
// costs sequential writers little, and a crash leaks at most that much.
const FIRST_BATCH_BYTES = 256 * 2 ** 10;
const MAX_BATCH_BYTES = 2 * 2 ** 20;
const MAX_BATCH_CLUSTERS = 256;

export class ClusterAllocator {
  /** Reserved, not yet used clusters: runs of consecutive cluster indices. */
  private readonly reserved: { first: number; count: number }[] = [];
  private readonly pendingFrees: { offset: number; length: number }[] = [];
  private batchClusters: number;
  private readonly maxBatchClusters: number;

  constructor(private readonly file: HostFile, private readonly refcounts: Refcounts, private readonly metadata: MetadataMap) {
    const clusterSize = refcounts.clusterSize;
    this.maxBatchClusters = Math.min(MAX_BATCH_CLUSTERS, Math.max(1, MAX_BATCH_BYTES / clusterSize));
    this.batchClusters = Math.min(this.maxBatchClusters, Math.max(1, FIRST_BATCH_BYTES / clusterSize));
  }

  /** The host offset of a cluster whose refcount (1) is already durable. */
  take(): number {
    if (this.reserved.length === 0) this.reserveBatch();
    const run = this.reserved[0]!;
    const cluster = run.first;
    run.first++;
    if (--run.count === 0) this.reserved.shift();
    const offset = cluster * this.refcounts.clusterSize;
    const holds = this.metadata.overlap(offset, this.refcounts.clusterSize);
    if (holds) throw new Qcow2CorruptionError(this.file.path, `the refcounts say cluster ${cluster} is free, but it holds the ${holds}`);
    return offset;
  }

  /** Frees the host clusters under [offset, offset+length) at the next flush. */
  freeLater(offset: number, length: number): void {
    this.pendingFrees.push({ offset, length });
  }

  /** Makes every write so far durable, then applies the deferred frees. */
  flush(): void {
    this.file.datasync();
    const clusterSize = this.refcounts.clusterSize;
    for (const { offset, length } of this.pendingFrees.splice(0)) {
      const last = Math.floor((offset + length - 1) / clusterSize);
      for (let cluster = Math.floor(offset / clusterSize); cluster <= last; cluster++) this.refcounts.decrement(cluster);
    }
  }

  /** Gives the reserved clusters that were never used back (refcount 0). */
  releaseReserved(): void {
    for (const run of this.reserved.splice(0)) {
      for (let cluster = run.first; cluster < run.first + run.count; cluster++) this.refcounts.decrement(cluster);
    }
  }

  private reserveBatch(): void {
    for (let wanted = this.batchClusters; wanted > 0;) {
      const run = this.refcounts.allocateRun(wanted);
      const last = this.reserved[this.reserved.length - 1];
      if (last && last.first + last.count === run.first) last.count += run.count;
      else this.reserved.push(run);
      wanted -= run.count;
    }
    this.file.datasync();
    // Sequential writers allocate a lot: larger batches, fewer syncs.
    this.batchClusters = Math.min(this.batchClusters * 2, this.maxBatchClusters);
  }
}
