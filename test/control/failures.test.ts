// The control plane when things go wrong, through real tsvmm processes and the
// counter guest (firmware/multiboot/counter.S): a migration cancelled, its
// destination killed, its source killed, a destination that is not there or
// is another machine. The source must go on counting without a gap, the
// destination must end with one line and a non-zero status, never a stack
// trace. Then the monitor's views of a real machine (registers, vCPU threads,
// disks), the power button a flat guest lacks, and a two-vCPU snapshot.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { countLines, CounterStatus, tsvmmCounterArgs, type CounterSettings } from '../../bench/lib/counter-guest.ts';
import { firmwarePath } from '../../firmware/firmware.ts';
import type { QmpClient } from '../../src/cli/qmp-client.ts';
import { hasKvm, tsvmm } from '../helpers/kvm.ts';
import { freePort, qmpSockets, sleep, TsvmmProcess } from '../helpers/tsvmm-process.ts';

const scratch = mkdtempSync(join(tmpdir(), 'tsvmm-failures-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const qmpSocket = qmpSockets(scratch);



/** 16 MiB of buffer dirtied for ever: a migration of it at 4 MiB/s takes seconds. */
const SETTINGS: CounterSettings = { pages: 4096, every: 8192 };
const SLOW = 4 * 2 ** 20;

interface MigrateInfo {
  status: string;
  'error-desc'?: string;
  ram?: { transferred: number };
}

/** Polls query-migrate until `done` holds for it (bounded). */
async function migrationUntil(monitor: QmpClient, what: string, done: (info: MigrateInfo) => boolean, timeoutMs = 30_000): Promise<MigrateInfo> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = await monitor.execute('query-migrate') as MigrateInfo;
    if (done(info)) return info;
    if (Date.now() > deadline) throw new Error(`waiting for the migration ${what}: still ${JSON.stringify(info)}`);
    await sleep(20);
  }
}

/** Under way and past its first MiB: a stream cut now is cut in the middle. */
const midStream = (info: MigrateInfo) => info.status === 'active' && (info.ram?.transferred ?? 0) > 2 ** 20;
const ended = (info: MigrateInfo) => !['setup', 'active', 'device', 'cancelling'].includes(info.status);

/** Every count in `output` steps by `every` from the first, without a gap or a repeat. */
function expectContiguous(output: string, every: number): number[] {
  const counts = countLines(output).map((c) => c.n);
  expect(counts.length).toBeGreaterThan(0);
  counts.forEach((n, i) => expect(n).toBe(counts[0]! + i * every));
  return counts;
}

/** The source still runs the guest: running, and `more` count lines after those it printed so far, none lost. */
async function expectStillCounting(source: TsvmmProcess, monitor: QmpClient, more = 3): Promise<void> {
  expect(await monitor.execute('query-status')).toMatchObject({ running: true, status: 'running' });
  const before = countLines(source.stdout).length;
  await source.waitFor(`${more} more count lines`, (out) => countLines(out).length >= before + more);
  expect(source.stdout).not.toMatch(/BAD/);
  expectContiguous(source.stdout, SETTINGS.every!);
}

/** What tsvmm said on stderr: one line, no stack trace (its start-up notes about the host aside). */
function expectOneLine(stderr: string): string {
  const lines = stderr.trim().split('\n').filter((l) => l.trim() !== '' && !l.startsWith('tsvmm: note:'));
  expect(lines, stderr).toHaveLength(1);
  expect(stderr).not.toMatch(/^\s+at /m);
  return lines[0]!;
}

/** A source counting (2 lines so far) and a destination waiting for it on a tcp port. */
async function sourceAndDestination(destinationArgs: string[] = []) {
  const port = await freePort();
  const uri = `tcp:127.0.0.1:${port}`;
  const qmp = qmpSocket();
  const source = new TsvmmProcess([...tsvmmCounterArgs(SETTINGS), '--qmp', qmp]);
  const destination = new TsvmmProcess([...tsvmmCounterArgs(SETTINGS), ...destinationArgs, '--incoming', uri]);
  const monitor = await source.monitor(qmp);
  await source.waitFor('2 count lines', (out) => countLines(out).length >= 2);
  return { source, destination, monitor, uri };
}

describe.skipIf(!hasKvm)('a live migration that does not finish', () => {
  it('migrate_cancel midway: the source runs on (cancelled, running, counting); the destination ends with one line', async () => {
    const { source, destination, monitor, uri } = await sourceAndDestination();
    try {
      await monitor.execute('migrate-set-capabilities', { capabilities: [{ capability: 'events', state: true }] });
      await monitor.execute('migrate-set-parameters', { 'max-bandwidth': SLOW });
      await monitor.execute('migrate', { uri });
      await migrationUntil(monitor, 'to be under way', midStream);
      await monitor.execute('migrate_cancel');
      const info = await migrationUntil(monitor, 'to end', ended);
      expect(info.status).toBe('cancelled');
      expect(info['error-desc']).toBeUndefined();
      expect(monitor.events.filter((e) => e.event === 'MIGRATION').map((e) => (e.data as { status: string }).status))
        .toEqual(['setup', 'active', 'cancelling', 'cancelled']);
      // Cancelled before stop-and-copy: the guest never stopped, so no STOP and no RESUME.
      expect(monitor.events.filter((e) => e.event !== 'MIGRATION')).toEqual([]);
      await expectStillCounting(source, monitor);

      const status = await destination.end();
      expect(status).not.toBe(0);
      expect(status).not.toBe(-1);
      expect(expectOneLine(destination.stderr)).toMatch(/^tsvmm: .*(truncated|ended|closed|reset)/i);
      expect(countLines(destination.stdout)).toHaveLength(0);
      expect(source.stderr).not.toMatch(/failed/);

      await monitor.execute('quit').catch(() => {});
      expect(await source.end()).toBe(0);
    } finally {
      source.kill();
      destination.kill();
    }
  });

  it('the destination killed midway: the source says so and runs on; a second migrate to a new destination completes', async () => {
    const { source, destination, monitor, uri } = await sourceAndDestination();
    const port = await freePort();
    const secondUri = `tcp:127.0.0.1:${port}`;
    const secondQmp = qmpSocket();
    const second = new TsvmmProcess([...tsvmmCounterArgs(SETTINGS), '--incoming', secondUri, '--qmp', secondQmp]);
    try {
      await monitor.execute('migrate-set-parameters', { 'max-bandwidth': SLOW });
      await monitor.execute('migrate', { uri });
      await migrationUntil(monitor, 'to be under way', midStream);
      destination.kill();
      const info = await migrationUntil(monitor, 'to fail', ended);
      expect(info.status).toBe('failed');
      expect(info['error-desc']).toEqual(expect.any(String));
      expect(info['error-desc']).not.toBe('');
      await expectStillCounting(source, monitor);
      expect(expectOneLine(source.stderr)).toMatch(new RegExp(`^tsvmm: migration to ${uri} failed: .*; the guest keeps running here$`));
      expect(monitor.events).toEqual([]);

      // Unlimited this time; the guest goes on counting over there.
      const secondMonitor = await second.monitor(secondQmp);
      expect(await secondMonitor.execute('query-status')).toMatchObject({ status: 'inmigrate' });
      await monitor.execute('migrate-set-parameters', { 'max-bandwidth': 0 });
      await monitor.execute('migrate', { uri: secondUri });
      expect(await migrationUntil(monitor, 'to complete', ended, 60_000)).toMatchObject({ status: 'completed' });
      expect(await monitor.execute('query-status')).toMatchObject({ running: false, status: 'postmigrate' });
      await second.waitFor('3 count lines on the destination', (out) => countLines(out).length >= 3);
      expect(source.stdout + second.stdout).not.toMatch(/BAD/);
      const counts = expectContiguous(source.stdout + second.stdout, SETTINGS.every!);
      expect(counts.length).toBeGreaterThan(countLines(source.stdout).length);
      await monitor.execute('quit').catch(() => {});
      expect(await source.end()).toBe(0);
    } finally {
      source.kill();
      destination.kill();
      second.kill();
    }
  });

  it('the source killed midway: the destination ends with one line (the stream was cut), status 2', async () => {
    const { source, destination, monitor, uri } = await sourceAndDestination();
    try {
      await monitor.execute('migrate-set-parameters', { 'max-bandwidth': SLOW });
      await monitor.execute('migrate', { uri });
      await migrationUntil(monitor, 'to be under way', midStream);
      source.kill();
      expect(await destination.end()).toBe(2);
      expect(expectOneLine(destination.stderr)).toMatch(/^tsvmm: .*truncated/i);
      expect(countLines(destination.stdout)).toHaveLength(0);
    } finally {
      source.kill();
      destination.kill();
    }
  });

  it('migrate to a tcp port nobody listens on: failed, with why; the source runs on', async () => {
    const port = await freePort();
    const qmp = qmpSocket();
    const source = new TsvmmProcess([...tsvmmCounterArgs(SETTINGS), '--qmp', qmp]);
    try {
      const monitor = await source.monitor(qmp);
      await source.waitFor('2 count lines', (out) => countLines(out).length >= 2);
      await monitor.execute('migrate', { uri: `tcp:127.0.0.1:${port}` });
      const info = await migrationUntil(monitor, 'to fail', ended);
      expect(info.status).toBe('failed');
      expect(info['error-desc']).toMatch(/refused|ECONNREFUSED/i);
      await expectStillCounting(source, monitor);
      await monitor.execute('quit').catch(() => {});
      expect(await source.end()).toBe(0);
    } finally {
      source.kill();
    }
  });

  it('--incoming into another machine (other --mem): the destination refuses with one line, status 2; the source runs on', async () => {
    const { source, destination, monitor, uri } = await sourceAndDestination(['--mem', '128M']);
    try {
      await monitor.execute('migrate', { uri });
      expect(await destination.end()).toBe(2);
      expect(expectOneLine(destination.stderr)).toMatch(/^tsvmm: .*does not match this one: RAM bytes 67108864 there, 134217728 here/);
      const info = await migrationUntil(monitor, 'to fail', ended);
      expect(info.status).toBe('failed');
      expect(info['error-desc']).toEqual(expect.any(String));
      await expectStillCounting(source, monitor);
      await monitor.execute('quit').catch(() => {});
      expect(await source.end()).toBe(0);
    } finally {
      source.kill();
      destination.kill();
    }
  });
});

describe.skipIf(!hasKvm)('the monitor on a real machine', () => {
  it('info registers, query-cpus-fast with the vCPU threads once started, query-block and info block for a --disk', async () => {
    const disk = join(scratch, 'disk.img');
    writeFileSync(disk, Buffer.alloc(2 ** 20));
    const qmp = qmpSocket();
    const vm = new TsvmmProcess([...tsvmmCounterArgs({ pages: 16, every: 4096 }), '--disk', disk, '-S', '--qmp', qmp]);
    try {
      const monitor = await vm.monitor(qmp);
      // Not started (-S): no vCPU thread has run yet.
      expect(await monitor.execute('query-cpus-fast')).toEqual([expect.objectContaining({ 'cpu-index': 0, 'thread-id': 0 })]);
      await monitor.execute('cont');
      await vm.waitFor('a count line', (out) => countLines(out).length >= 1);
      const cpus = await monitor.execute('query-cpus-fast') as { 'cpu-index': number; 'thread-id': number; target: string }[];
      expect(cpus).toHaveLength(1);
      expect(cpus[0]!['thread-id']).toBeGreaterThan(0);
      expect(cpus[0]!.target).toBe('x86_64');

      // The counter runs in 32-bit protected mode with paging off, from its kernel at 4 MiB.
      const registers = await monitor.execute('human-monitor-command', { 'command-line': 'info registers' }) as string;
      expect(registers).toMatch(/^EAX=[0-9a-f]{8} /m);
      const eip = Number.parseInt(/EIP=([0-9a-f]{8})/.exec(registers)![1]!, 16);
      expect(eip).toBeGreaterThanOrEqual(0x400000);
      expect(eip).toBeLessThan(0x800000);
      expect(registers).toMatch(/^CS =0008 00000000 ffffffff /m);
      expect(await monitor.execute('query-status')).toMatchObject({ status: 'running' });

      const blocks = await monitor.execute('query-block') as { device: string; inserted: { file: string; ro: boolean; drv: string; image: { 'virtual-size': number } } }[];
      expect(blocks).toHaveLength(1);
      expect(blocks[0]).toMatchObject({ device: 'virtio0', inserted: { file: disk, ro: false, drv: 'raw', image: { 'virtual-size': 2 ** 20 } } });
      expect(await monitor.execute('human-monitor-command', { 'command-line': 'info block' })).toMatch(new RegExp(`^virtio0: ${disk} \\(raw\\)`));

      await monitor.execute('quit').catch(() => {});
      expect(await vm.end()).toBe(0);
    } finally {
      vm.kill();
    }
  });

  it('system_powerdown on a flat guest, which has no ACPI power button: an error answer, and the guest runs on', async () => {
    const qmp = qmpSocket();
    const vm = new TsvmmProcess(['run', '--flat', firmwarePath('spin'), '--qmp', qmp]);
    try {
      const monitor = await vm.monitor(qmp);
      await expect(monitor.execute('system_powerdown')).rejects.toThrow(/^system_powerdown: .*no ACPI power button/);
      expect(monitor.events.map((e) => e.event)).not.toContain('POWERDOWN');
      expect(await monitor.execute('query-status')).toMatchObject({ running: true, status: 'running' });
      await monitor.execute('quit').catch(() => {});
      expect(await vm.end()).toBe(0);
    } finally {
      vm.kill();
    }
  });
});

describe.skipIf(!hasKvm)('a snapshot of two vCPUs', () => {
  it('--cpus 2 (the counter on the BSP, the AP waiting for its SIPI): saved, restored, and it counts on to its limit', async () => {
    const settings: CounterSettings = { pages: 1024, every: 8192, limit: 30 * 8192 };
    const snapshot = join(scratch, 'smp.snap');
    const qmp = qmpSocket();
    const source = new TsvmmProcess([...tsvmmCounterArgs(settings), '--cpus', '2', '--qmp', qmp]);
    let lastBeforeSave = 0;
    try {
      const monitor = await source.monitor(qmp);
      await source.waitFor('2 count lines', (out) => countLines(out).length >= 2);
      expect(await monitor.execute('query-cpus-fast')).toHaveLength(2);
      await monitor.execute('stop');
      await sleep(100);
      lastBeforeSave = countLines(source.stdout).at(-1)!.n;
      const saved = tsvmm(['snapshot', 'save', '--qmp', qmp, snapshot]);
      expect(saved.stderr).toMatch(/^tsvmm: saved /);
      expect(saved.status).toBe(0);
      await monitor.execute('quit').catch(() => {});
      expect(await source.end()).toBe(0);
    } finally {
      source.kill();
    }

    // A one-vCPU machine is another machine.
    const other = tsvmm([...tsvmmCounterArgs(settings), '--restore', snapshot]);
    expect(expectOneLine(other.stderr)).toMatch(/vCPUs 2 there, 1 here/);
    expect(other.status).toBe(2);

    const restored = tsvmm([...tsvmmCounterArgs(settings), '--cpus', '2', '--restore', snapshot], { timeoutMs: 60_000 });
    expect(restored.stdout).not.toMatch(/BAD|exception/);
    const counts = expectContiguous(restored.stdout, settings.every!);
    expect(counts[0]).toBe(lastBeforeSave + settings.every!);
    expect(restored.stdout.trimEnd().split('\n').at(-1)).toBe(`counter done n=${settings.limit}`);
    expect(restored.status).toBe(CounterStatus.DONE);
  });
});
