// Contiguous host clusters for a table that must be in one piece (an L1 table,
// the snapshot table). The refcounts hand out runs that a refcount block or a
// used cluster can interrupt; the pieces skipped on the way are given back.
import { Qcow2CorruptionError } from './corruption.ts';
import type { MetadataMap } from './overlap.ts';
import type { Refcounts } from './refcounts.ts';

/** Fragments skipped while looking for contiguous free clusters before taking a run at the end of the file. */
const MAX_ALLOCATION_ATTEMPTS = 64;

/**
 * The host offset of `bytes` worth of contiguous clusters, counted
 * (refcount 1, not yet synced): the first free run long enough, or, when
 * used clusters and new refcount blocks keep interrupting the runs (a table
 * larger than one refcount block counts), a run past the end of the file.
 */
export function allocateContiguous(path: string, refcounts: Refcounts, metadata: MetadataMap, bytes: number): number {
  const clusterSize = refcounts.clusterSize;
  const wanted = Math.ceil(bytes / clusterSize);
  const skipped: { first: number; count: number }[] = [];
  let first: number;
  try {
    let run = refcounts.allocateRun(wanted);
    while (run.count < wanted && skipped.length < MAX_ALLOCATION_ATTEMPTS) {
      const next = refcounts.allocateRun(wanted - run.count);
      if (next.first === run.first + run.count) {
        run = { first: run.first, count: run.count + next.count };
        continue;
      }
      // Something in use (often a new refcount block) interrupts the run: hold it and start again after it.
      skipped.push(run);
      run = next;
    }
    if (run.count < wanted) {
      skipped.push(run);
      run = { first: refcounts.allocateRunAtEnd(wanted), count: wanted };
    }
    first = run.first;
  } finally {
    for (const { first: skippedFirst, count } of skipped) for (let c = skippedFirst; c < skippedFirst + count; c++) refcounts.decrement(c);
  }
  const offset = first * clusterSize;
  const holds = metadata.overlap(offset, wanted * clusterSize);
  if (holds) throw new Qcow2CorruptionError(path, `the refcounts say clusters from ${first} are free, but they hold the ${holds}`);
  return offset;
}
