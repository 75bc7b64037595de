// Contiguous host clusters for a table that must be in one piece (an L1 table,
// the snapshot table). The refcounts hand out runs that a refcount block or a
// used cluster can interrupt; the pieces skipped on the way are given back.
import { InputError } from '../../errors.ts';
import { Qcow2CorruptionError } from './corruption.ts';
import type { MetadataMap } from './overlap.ts';
import type { Refcounts } from './refcounts.ts';

/** Fragments skipped while looking for contiguous free clusters before giving up. */
const MAX_ALLOCATION_ATTEMPTS = 64;

/** The host offset of `bytes` worth of contiguous clusters, counted (refcount 1, not yet synced). */
export function allocateContiguous(path: string, refcounts: Refcounts, metadata: MetadataMap, bytes: number): number {
  const clusterSize = refcounts.clusterSize;
  const wanted = Math.ceil(bytes / clusterSize);
  const skipped: { first: number; count: number }[] = [];
  try {
    let run = refcounts.allocateRun(wanted);
    while (run.count < wanted) {
      const next = refcounts.allocateRun(wanted - run.count);
      if (next.first === run.first + run.count) {
        run = { first: run.first, count: run.count + next.count };
        continue;
      }
      // Something in use (often a new refcount block) interrupts the run: hold it and start again after it.
      skipped.push(run);
      run = next;
      if (skipped.length > MAX_ALLOCATION_ATTEMPTS) {
        throw new InputError(`${path}: found no ${wanted} contiguous free clusters for a table (clusters of ${clusterSize} bytes are too small for it)`);
      }
    }
    const offset = run.first * clusterSize;
    const holds = metadata.overlap(offset, wanted * clusterSize);
    if (holds) throw new Qcow2CorruptionError(path, `the refcounts say clusters from ${run.first} are free, but they hold the ${holds}`);
    return offset;
  } finally {
    for (const { first, count } of skipped) for (let c = first; c < first + count; c++) refcounts.decrement(c);
  }
}
