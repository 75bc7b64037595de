// The log of guest pages tsvmm's own threads write (src/memory/dirty-pages.ts):
// what a live migration sends again besides KVM's dirty log.
import { describe, expect, it } from 'vitest';
import { DirtyPageLog, PAGE_SIZE } from '../src/memory/dirty-pages.ts';

const RAM = 1 << 20; // 256 pages: 8 bitmap words

function logging(): DirtyPageLog {
  const log = new DirtyPageLog(DirtyPageLog.create(RAM));
  log.start();
  return log;
}

describe('DirtyPageLog', () => {
  it('holds a bit for every page below the end it was made for, rounded up to whole words', () => {
    expect(new DirtyPageLog(DirtyPageLog.create(RAM)).pages).toBe(256);
    expect(new DirtyPageLog(DirtyPageLog.create(RAM + 1)).pages).toBe(288);
  });

  it('marks nothing while not logging, and starts with nothing marked', () => {
    const log = new DirtyPageLog(DirtyPageLog.create(RAM));
    expect(log.logging).toBe(false);
    log.mark(0, RAM);
    log.start();
    expect(log.logging).toBe(true);
    expect(log.harvest()).toEqual([]);
  });

  it('marks every page a write touches: one byte, a page exactly, and a write across page boundaries', () => {
    const log = logging();
    log.mark(3 * PAGE_SIZE + 17, 1);
    expect(log.harvest()).toEqual([3]);
    log.mark(5 * PAGE_SIZE, PAGE_SIZE);
    expect(log.harvest()).toEqual([5]);
    log.mark(8 * PAGE_SIZE - 2, 4);
    expect(log.harvest()).toEqual([7, 8]);
    // Across a bitmap word (pages 31 and 32) and three pages at once.
    log.mark(31 * PAGE_SIZE + 100, 2 * PAGE_SIZE);
    expect(log.harvest()).toEqual([31, 32, 33]);
  });

  it('ignores empty writes and clips a write that runs past the end', () => {
    const log = logging();
    log.mark(4 * PAGE_SIZE, 0);
    log.mark(RAM - 8, 64);
    log.mark(RAM + PAGE_SIZE, 8);
    expect(log.harvest()).toEqual([255]);
  });

  it('harvests each mark once, in page order; marks after a harvest show in the next one', () => {
    const log = logging();
    for (const page of [200, 3, 64, 3, 0]) log.mark(page * PAGE_SIZE, 1);
    expect(log.harvest()).toEqual([0, 3, 64, 200]);
    expect(log.harvest()).toEqual([]);
    log.mark(64 * PAGE_SIZE, 1);
    expect(log.harvest()).toEqual([64]);
  });

  it('stops marking when stopped; a new start forgets what an earlier one left', () => {
    const log = logging();
    log.mark(10 * PAGE_SIZE, 1);
    log.stop();
    log.mark(11 * PAGE_SIZE, 1);
    expect(log.logging).toBe(false);
    log.start();
    expect(log.harvest()).toEqual([]);
  });

  it('is one log for every thread that opens the same buffer', () => {
    const buffer = DirtyPageLog.create(RAM);
    const migration = new DirtyPageLog(buffer);
    const ioThread = new DirtyPageLog(buffer);
    migration.start();
    expect(ioThread.logging).toBe(true);
    ioThread.mark(42 * PAGE_SIZE, 1);
    expect(migration.harvest()).toEqual([42]);
  });
});
