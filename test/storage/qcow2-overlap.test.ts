// The metadata map behind the overlap checks (QEMU's qcow2_check_metadata_overlap):
// whole clusters, every kind, and the kind being updated left out.
import { describe, expect, it } from 'vitest';
import type { Qcow2Header } from '../../src/storage/qcow2/header.ts';
import { Qcow2CorruptionError } from '../../src/storage/qcow2/corruption.ts';
import { MetadataMap } from '../../src/storage/qcow2/overlap.ts';

const C = 4096;
const header = {
  clusterBits: 12, l1TableOffset: 3 * C, l1Size: 2, refcountTableOffset: C, refcountTableClusters: 1, snapshotsOffset: 20 * C,
} as Qcow2Header;

function map(): MetadataMap {
  const m = new MetadataMap('x.qcow2', header, { length: 100, l1Tables: [{ offset: 21 * C, entries: 4 }] });
  m.addRefcountBlock(2 * C);
  m.addActiveL2(4 * C);
  return m;
}

describe('MetadataMap', () => {
  it('names what a range touches, by whole clusters', () => {
    const m = map();
    expect(m.overlap(100, 8)).toBe('qcow2_header');
    expect(m.overlap(C + 4000, 8)).toBe('refcount table');
    expect(m.overlap(2 * C + 10, 1)).toBe('refcount block');
    // The L1 table is 16 bytes, but its whole cluster is metadata.
    expect(m.overlap(3 * C + 2048, 512)).toBe('active L1 table');
    expect(m.overlap(4 * C, C)).toBe('active L2 table');
    expect(m.overlap(20 * C + 3000, 1)).toBe('snapshot table');
    expect(m.overlap(21 * C, 1)).toBe('inactive L1 table');
    expect(m.overlap(5 * C, 15 * C)).toBeNull();
    expect(m.overlap(5 * C, 16 * C)).toBe('snapshot table');
    // A long write crossing one table, found by walking the tables rather than the clusters.
    expect(m.overlap(4 * C - 512, 2 ** 30)).not.toBeNull();
  });

  it('leaves out the kind being updated, and follows tables as they come and go', () => {
    const m = map();
    expect(m.overlap(3 * C, 8, 'active L1 table')).toBeNull();
    expect(m.overlap(2 * C, 2, 'refcount block')).toBeNull();
    expect(m.overlap(2 * C, C + 1, 'refcount block')).toBe('active L1 table');
    m.removeActiveL2(4 * C);
    expect(m.overlap(4 * C, C)).toBeNull();
    m.setRefcountTable(30 * C, 2);
    expect(m.overlap(C, C)).toBeNull();
    expect(m.overlap(31 * C, 1)).toBe('refcount table');
  });

  it('refuses a write with a corruption error naming what it would hit', () => {
    expect(() => map().checkWrite(3 * C, 512)).toThrow(Qcow2CorruptionError);
    expect(() => map().checkWrite(3 * C, 512)).toThrow(/preventing invalid write on metadata \(overlaps with active L1 table\): 512 bytes at 0x3000/);
    expect(() => map().checkWrite(6 * C, 512)).not.toThrow();
  });
});
