// Block migration through real KVM exits: QMP `migrate` with `blk: true` (or
// the `block` capability) between two tsvmm processes, the source's disk copied into the
// destination's own image while the guest keeps writing it. The guest is the
// counter with its `disk` word: every count line's N goes into a sector of
// its disk through virtio-blk, so the disk changes during the whole copy.
// QEMU's own tools judge the result: `qemu-img compare` must find the two
// images identical, `qemu-img check` the source's consistent.
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { countLines, CounterStatus, diskSectorValue, tsvmmCounterArgs, type CounterSettings } from '../../bench/lib/counter-guest.ts';
import type { QmpClient } from '../../src/cli/qmp-client.ts';
import { hasKvm } from '../helpers/kvm.ts';
import { freePort, qmpSockets, sleep, TsvmmProcess } from '../helpers/tsvmm-process.ts';

const scratch = mkdtempSync(join(tmpdir(), 'tsvmm-block-migration-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const qmpSocket = qmpSockets(scratch);
const hasQemuImg = spawnSync('qemu-img', ['--version']).status === 0;

const MiB = 1 << 20;
/** Not a whole number of 1 MiB chunks: the last chunk is short. */
const DISK_BYTES = 5 * MiB + 64 * 1024;
const EVERY = 4096;
/** Long enough that the migration ends well before it, short enough for the default suite. */
const SETTINGS: CounterSettings = { pages: 256, every: EVERY, limit: 250 * EVERY, disk: true };

function qemuImg(args: string[]): { status: number | null; output: string } {
  const r = spawnSync('qemu-img', args, { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, output: `${r.stdout}${r.stderr}`.trim() };
}

/** Writes `byte` over [offset, offset + length) of a raw file. */
function fillRaw(path: string, offset: number, length: number, byte: number): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, Buffer.alloc(length, byte), 0, length, offset);
  } finally {
    closeSync(fd);
  }
}

/** Writes `byte` over a range of any image QEMU opens (through qemu-io, so a qcow2 gets real clusters). */
function fillImage(path: string, format: string, offset: number, length: number, byte: number): void {
  const r = spawnSync('qemu-io', ['-f', format, '-c', `write -P ${byte} ${offset} ${length}`, path], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`qemu-io: ${r.stderr}`);
}

/** Every count in `output`, checked to step by `every` from its first without a gap or a repeat. */
function expectContiguous(output: string): number[] {
  const counts = countLines(output).map((c) => c.n);
  expect(counts.length).toBeGreaterThan(0);
  counts.forEach((n, i) => expect(n).toBe(counts[0]! + i * EVERY));
  return counts;
}

interface MigrationReply {
  status: string;
  'error-desc'?: string;
  disk?: { transferred: number; remaining: number; total: number };
}

async function waitForMigration(monitor: QmpClient): Promise<MigrationReply> {
  let info: MigrationReply = { status: 'setup' };
  for (let i = 0; i < 3000 && !['completed', 'failed', 'cancelled'].includes(info.status); i++) {
    await sleep(20);
    info = await monitor.execute('query-migrate') as MigrationReply;
  }
  return info;
}

interface Images {
  source: string;
  sourceFormat: 'raw' | 'qcow2';
  destination: string;
  destinationFormat: 'raw' | 'qcow2';
  /** What the source's chain holds besides the guest's writes. */
  prepare: () => void;
}

/** The three ways in: raw, qcow2, and a qcow2 overlay whose base holds part of the disk. */
function images(kind: 'raw' | 'qcow2' | 'qcow2-backing'): Images {
  const folder = mkdtempSync(join(scratch, `${kind}-`));
  const source = join(folder, kind === 'raw' ? 'a.raw' : 'a.qcow2');
  const destination = join(folder, kind === 'raw' ? 'b.raw' : 'b.qcow2');
  const format = kind === 'raw' ? 'raw' : 'qcow2';
  return {
    source, sourceFormat: format, destination, destinationFormat: format,
    prepare: () => {
      if (kind === 'qcow2-backing') {
        const base = join(folder, 'base.raw');
        expect(qemuImg(['create', '-f', 'raw', base, String(DISK_BYTES)]).status).toBe(0);
        fillRaw(base, 2 * MiB, 300 * 1024, 0x42);
        fillRaw(base, DISK_BYTES - 4096, 4096, 0x17);
        expect(qemuImg(['create', '-f', 'qcow2', '-b', base, '-F', 'raw', source]).status).toBe(0);
        // The overlay hides part of what the base holds.
        fillImage(source, 'qcow2', 2 * MiB + 64 * 1024, 64 * 1024, 0x5a);
      } else {
        expect(qemuImg(['create', '-f', format, source, String(DISK_BYTES)]).status).toBe(0);
        fillImage(source, format, 3 * MiB, 128 * 1024, 0x5a);
      }
      expect(qemuImg(['create', '-f', format, destination, String(DISK_BYTES)]).status).toBe(0);
      // Something where the source reads zeros: the copy must make it read zeros here too.
      fillImage(destination, format, 4 * MiB, 64 * 1024, 0xee);
    },
  };
}

describe.skipIf(!hasKvm || !hasQemuImg)('migrate with blk: true (the disks in the stream)', () => {
  it.each(['raw', 'qcow2', 'qcow2-backing'] as const)('%s: the destination image ends identical to the source\'s while the guest writes, and the guest counts on there', async (kind) => {
    const disks = images(kind);
    disks.prepare();
    const port = await freePort();
    const qmpSource = qmpSocket();
    const qmpDestination = qmpSocket();
    const source = new TsvmmProcess([...tsvmmCounterArgs(SETTINGS), '--disk', `${disks.source},format=${disks.sourceFormat}`, '--qmp', qmpSource]);
    // Paused after the stream (-S): nothing writes the destination's disk until it is compared.
    const destination = new TsvmmProcess([
      ...tsvmmCounterArgs(SETTINGS), '--disk', `${disks.destination},format=${disks.destinationFormat}`,
      '--incoming', `tcp:127.0.0.1:${port}`, '-S', '--qmp', qmpDestination,
    ]);
    try {
      const monitor = await source.monitor(qmpSource);
      const destinationMonitor = await destination.monitor(qmpDestination);
      await source.waitFor('3 count lines', (out) => countLines(out).length >= 3);
      if (kind === 'qcow2-backing') {
        // QEMU's other way to ask for it: the block capability, then a plain migrate.
        await monitor.execute('migrate-set-capabilities', { capabilities: [{ capability: 'block', state: true }] });
        await monitor.execute('migrate', { uri: `tcp:127.0.0.1:${port}` });
      } else {
        await monitor.execute('migrate', { uri: `tcp:127.0.0.1:${port}`, blk: true });
      }
      const info = await waitForMigration(monitor);
      expect(info.status, info['error-desc']).toBe('completed');
      expect(info.disk!.total).toBe(DISK_BYTES);
      expect(info.disk!.remaining).toBe(0);
      expect(info.disk!.transferred).toBeGreaterThan(0);
      for (let i = 0; i < 500 && (await destinationMonitor.execute('query-status') as { status: string }).status === 'inmigrate'; i++) await sleep(20);
      expect(await destinationMonitor.execute('query-status')).toMatchObject({ status: 'paused' });
      const sourceCounts = expectContiguous(source.stdout);

      const compare = qemuImg(['compare', '-U', '-f', disks.sourceFormat, '-F', disks.destinationFormat, disks.source, disks.destination]);
      expect(compare.output).toBe('Images are identical.');
      expect(compare.status).toBe(0);
      if (disks.sourceFormat === 'qcow2') expect(qemuImg(['check', '-U', disks.source]).status).toBe(0);
      // The last line the source printed was on its disk before it printed it: the copy has it.
      if (kind === 'raw') expect(diskSectorValue(readFileSync(disks.destination), sourceCounts.length - 1)).toBe(BigInt(sourceCounts.at(-1)!));

      await destinationMonitor.execute('cont');
      expect(await destination.end(120_000)).toBe(CounterStatus.DONE);
      expect(source.stdout + destination.stdout).not.toMatch(/BAD|counter disk/);
      expect(expectContiguous(source.stdout + destination.stdout).at(-1)).toBe(SETTINGS.limit);
      await monitor.execute('quit').catch(() => {});
      expect(await source.end()).toBe(0);
    } finally {
      source.kill();
      destination.kill();
    }
  }, 240_000);
});

describe.skipIf(!hasKvm || !hasQemuImg)('a block migration that fails leaves the source running on its disk', () => {
  it('a destination image of another size: the destination refuses in one line, the source counts on and its disk checks clean', async () => {
    const folder = mkdtempSync(join(scratch, 'size-'));
    const sourceImage = join(folder, 'a.qcow2');
    const destinationImage = join(folder, 'b.qcow2');
    expect(qemuImg(['create', '-f', 'qcow2', sourceImage, String(DISK_BYTES)]).status).toBe(0);
    expect(qemuImg(['create', '-f', 'qcow2', destinationImage, String(DISK_BYTES + MiB)]).status).toBe(0);
    const settings: CounterSettings = { ...SETTINGS, limit: 80 * EVERY };
    const port = await freePort();
    const qmpSource = qmpSocket();
    const source = new TsvmmProcess([...tsvmmCounterArgs(settings), '--disk', sourceImage, '--qmp', qmpSource]);
    const destination = new TsvmmProcess([...tsvmmCounterArgs(settings), '--disk', destinationImage, '--incoming', `tcp:127.0.0.1:${port}`]);
    try {
      const monitor = await source.monitor(qmpSource);
      await source.waitFor('2 count lines', (out) => countLines(out).length >= 2);
      await monitor.execute('migrate', { uri: `tcp:127.0.0.1:${port}`, blk: true });
      expect((await waitForMigration(monitor)).status).toBe('failed');
      expect(await destination.end()).toBe(2);
      expect(destination.stderr.trim().split('\n').filter((l) => !l.includes('note:'))).toEqual([
        `tsvmm: ${destinationImage}: ${DISK_BYTES + MiB} bytes here, ${DISK_BYTES} on the source: a block migration needs images of the same virtual size`,
      ]);
      expect(await monitor.execute('query-status')).toMatchObject({ status: 'running' });
      expect(await source.end(120_000)).toBe(CounterStatus.DONE);
      expect(source.stdout).not.toMatch(/BAD|counter disk/);
      expect(expectContiguous(source.stdout).at(-1)).toBe(settings.limit);
      expect(qemuImg(['check', sourceImage]).status).toBe(0);
      expect(qemuImg(['info', '--output=json', destinationImage]).output).toMatch(/"actual-size"/);
    } finally {
      source.kill();
      destination.kill();
    }
  }, 180_000);

  it('a stream cut in the middle of the disk: the migration fails, the source runs on and its disk checks clean', async () => {
    const folder = mkdtempSync(join(scratch, 'cut-'));
    const sourceImage = join(folder, 'a.qcow2');
    expect(qemuImg(['create', '-f', 'qcow2', sourceImage, String(DISK_BYTES)]).status).toBe(0);
    fillImage(sourceImage, 'qcow2', 0, DISK_BYTES, 0x33);
    const settings: CounterSettings = { ...SETTINGS, limit: 80 * EVERY };
    const qmpSource = qmpSocket();
    const source = new TsvmmProcess([...tsvmmCounterArgs(settings), '--disk', sourceImage, '--qmp', qmpSource]);
    try {
      const monitor = await source.monitor(qmpSource);
      await source.waitFor('2 count lines', (out) => countLines(out).length >= 2);
      // The disk goes first, 1 MiB at a time: 2.5 MiB in is inside its third chunk.
      await monitor.execute('migrate', { uri: `exec:head -c ${Math.floor(2.5 * MiB)} > /dev/null`, blk: true });
      const info = await waitForMigration(monitor);
      expect(info.status).toBe('failed');
      expect(info['error-desc']).toBeTruthy();
      expect(info.disk!.transferred).toBeLessThan(DISK_BYTES);
      expect(await monitor.execute('query-status')).toMatchObject({ status: 'running' });
      expect(await source.end(120_000)).toBe(CounterStatus.DONE);
      expect(source.stdout).not.toMatch(/BAD|counter disk/);
      expect(expectContiguous(source.stdout).at(-1)).toBe(settings.limit);
      expect(qemuImg(['check', sourceImage]).status).toBe(0);
    } finally {
      source.kill();
    }
  }, 180_000);
});

describe.skipIf(!hasKvm)('cont as the machine starts (what a destination started with -S meets)', () => {
  it('a cont that comes while the virtio I/O thread starts resumes it too: the guest\'s disk writes complete', async () => {
    const image = join(mkdtempSync(join(scratch, 'cont-')), 'disk.raw');
    writeFileSync(image, Buffer.alloc(MiB));
    const settings: CounterSettings = { pages: 16, every: 1024, limit: 20 * 1024, disk: true };
    const qmp = qmpSocket();
    const vm = new TsvmmProcess([...tsvmmCounterArgs(settings), '--disk', image, '-S', '--qmp', qmp]);
    try {
      // At once: the monitor answers before the machine has started its threads.
      await (await vm.monitor(qmp)).execute('cont');
      expect(await vm.end(60_000)).toBe(CounterStatus.DONE);
      expect(countLines(vm.stdout)).toHaveLength(20);
    } finally {
      vm.kill();
    }
  }, 90_000);
});
