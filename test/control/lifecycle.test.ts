// The control plane through real KVM exits, the way a QEMU user drives it:
// a QMP monitor on a unix socket, -S, stop/cont, system_reset, quit,
// snapshots to a file and restores from one, and live migration between two
// tsvmm processes. The guest is the counter (firmware/multiboot/counter.S):
// it counts without a gap and checks every page of its buffer as it goes,
// so a lost, stale or repeated page, or a count that restarts, shows.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { countLines, CounterStatus, tsvmmCounterArgs, type CounterSettings } from '../../bench/lib/counter-guest.ts';
import { hasKvm, tsvmm } from '../helpers/kvm.ts';
import { freePort, qmpSockets, sleep, TsvmmProcess } from '../helpers/tsvmm-process.ts';

const scratch = mkdtempSync(join(tmpdir(), 'tsvmm-lifecycle-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const qmpSocket = qmpSockets(scratch);



/** Every count in `output`, checked to step by `every` from its first without a gap or a repeat. */
function expectContiguous(output: string, every: number): number[] {
  const counts = countLines(output).map((c) => c.n);
  expect(counts.length).toBeGreaterThan(0);
  counts.forEach((n, i) => expect(n).toBe(counts[0]! + i * every));
  return counts;
}

describe.skipIf(!hasKvm)('tsvmm run --qmp: the run states', () => {
  it('-S waits in prelaunch; cont runs; stop freezes the guest and its PIT time; cont goes on; quit ends with SHUTDOWN', async () => {
    const qmp = qmpSocket();
    const settings: CounterSettings = { pages: 16, every: 4096, ticks: true };
    const vm = new TsvmmProcess([...tsvmmCounterArgs(settings), '-S', '--qmp', qmp, '--name', 'counter-vm']);
    try {
      const monitor = await vm.monitor(qmp);
      expect(await monitor.execute('query-status')).toEqual({ running: false, singlestep: false, status: 'prelaunch' });
      expect(await monitor.execute('query-name')).toEqual({ name: 'counter-vm' });
      await sleep(300);
      expect(countLines(vm.stdout)).toHaveLength(0);

      await monitor.execute('cont');
      await vm.waitFor('3 count lines', (out) => countLines(out).length >= 3);
      expect(await monitor.execute('query-status')).toMatchObject({ running: true, status: 'running' });

      await monitor.execute('stop');
      expect(await monitor.execute('query-status')).toMatchObject({ running: false, status: 'paused' });
      await sleep(100); // console bytes the guest wrote before the pause
      const beforePause = countLines(vm.stdout);
      await sleep(1200);
      expect(countLines(vm.stdout)).toEqual(beforePause);

      await monitor.execute('cont');
      await vm.waitFor('3 more count lines', (out) => countLines(out).length >= beforePause.length + 3);
      const lines = countLines(vm.stdout);
      expectContiguous(vm.stdout, 4096);
      // The PIT stood still for the 1.2 s paused (120 ticks at 100 Hz): the
      // ticks across the pause are like those between any two other lines.
      const deltas = lines.slice(1).map((l, i) => l.ticks! - lines[i]!.ticks!);
      const acrossPause = deltas[beforePause.length - 1]!;
      const others = deltas.filter((_, i) => i !== beforePause.length - 1);
      expect(acrossPause).toBeLessThanOrEqual(Math.max(...others) * 2 + 5);
      expect(acrossPause).toBeLessThan(60);

      await monitor.execute('quit').catch(() => {});
      expect(await vm.end()).toBe(0);
      expect(monitor.events.map((e) => e.event)).toEqual(['RESUME', 'STOP', 'RESUME', 'SHUTDOWN']);
      expect(monitor.events.at(-1)!.data).toEqual({ guest: false, reason: 'host-qmp-quit' });
    } finally {
      vm.kill();
    }
  });

  it('system_reset boots the guest again from its image: the count starts over, with a RESET event', async () => {
    const qmp = qmpSocket();
    const vm = new TsvmmProcess([...tsvmmCounterArgs({ pages: 16, every: 4096 }), '--qmp', qmp]);
    try {
      const monitor = await vm.monitor(qmp);
      await vm.waitFor('2 count lines', (out) => countLines(out).length >= 2);
      await monitor.execute('system_reset');
      await vm.waitFor('the guest starting again', (out) => out.split('\n').filter((l) => l.startsWith('counter pages=')).length === 2);
      await vm.waitFor('a count after the reset', (out) => countLines(out.slice(out.lastIndexOf('counter pages='))).length >= 1);
      const afterReset = vm.stdout.slice(vm.stdout.lastIndexOf('counter pages='));
      expect(countLines(afterReset)[0]!.n).toBe(4096);
      expect(monitor.events.map((e) => e.event)).toContain('RESET');
      expect(monitor.events.find((e) => e.event === 'RESET')!.data).toEqual({ guest: false, reason: 'host-qmp-system-reset' });
      await monitor.execute('quit').catch(() => {});
      expect(await vm.end()).toBe(0);
    } finally {
      vm.kill();
    }
  });
});

describe.skipIf(!hasKvm)('snapshots: tsvmm snapshot save, tsvmm run --restore', () => {
  const settings: CounterSettings = { pages: 4096, every: 8192, limit: 40 * 8192 };
  const snapshot = join(scratch, 'counter.snap');
  let lastBeforeSave = 0;

  it('saves a paused counter guest to a file; restored in a new process it counts on from there to its limit', async () => {
    const qmp = qmpSocket();
    const source = new TsvmmProcess([...tsvmmCounterArgs(settings), '--qmp', qmp]);
    try {
      const monitor = await source.monitor(qmp);
      await source.waitFor('2 count lines', (out) => countLines(out).length >= 2);
      await monitor.execute('stop');
      await sleep(100);
      lastBeforeSave = countLines(source.stdout).at(-1)!.n;
      const saved = tsvmm(['snapshot', 'save', '--qmp', qmp, snapshot]);
      expect(saved.stderr).toMatch(/^tsvmm: saved .*counter\.snap/);
      expect(saved.status).toBe(0);
      // Saved while paused, it stays paused.
      expect(await monitor.execute('query-status')).toMatchObject({ running: false });
      await monitor.execute('quit').catch(() => {});
      expect(await source.end()).toBe(0);
    } finally {
      source.kill();
    }
    // Zero pages are not written: far less than the 64 MiB of RAM.
    expect(readFileSync(snapshot).length).toBeLessThan(24 * 2 ** 20);

    const restored = tsvmm([...tsvmmCounterArgs(settings), '--restore', snapshot], { timeoutMs: 60_000 });
    expect(restored.stderr).not.toMatch(/BAD/);
    const counts = expectContiguous(restored.stdout, 8192);
    expect(counts[0]).toBe(lastBeforeSave + 8192);
    expect(restored.stdout.trimEnd().split('\n').at(-1)).toBe(`counter done n=${settings.limit}`);
    expect(restored.status).toBe(CounterStatus.DONE);
  });

  it('-S with --restore comes up paused', async () => {
    const qmp = qmpSocket();
    const vm = new TsvmmProcess([...tsvmmCounterArgs(settings), '--restore', snapshot, '-S', '--qmp', qmp]);
    try {
      const monitor = await vm.monitor(qmp);
      // inmigrate while the file is read (as QEMU's -incoming), then paused.
      let status = await monitor.execute('query-status') as { status: string };
      for (let i = 0; i < 500 && status.status === 'inmigrate'; i++) {
        await sleep(20);
        status = await monitor.execute('query-status') as { status: string };
      }
      expect(status).toMatchObject({ running: false, status: 'paused' });
      await sleep(300);
      expect(countLines(vm.stdout)).toHaveLength(0);
      await monitor.execute('cont');
      await vm.waitFor('a count line', (out) => countLines(out).length >= 1);
      expect(countLines(vm.stdout)[0]!.n).toBe(lastBeforeSave + 8192);
      await monitor.execute('quit').catch(() => {});
      expect(await vm.end()).toBe(0);
    } finally {
      vm.kill();
    }
  });

  it('refuses a file that is not a snapshot, a damaged one, a truncated one, and one of another machine: one line, status 2', () => {
    const bytes = readFileSync(snapshot);
    const garbage = join(scratch, 'garbage.snap');
    writeFileSync(garbage, Buffer.from('this is not a snapshot at all\n'.repeat(100)));
    const damaged = join(scratch, 'damaged.snap');
    const flipped = Buffer.from(bytes);
    flipped[Math.floor(flipped.length / 2)]! ^= 0x40;
    writeFileSync(damaged, flipped);
    const truncated = join(scratch, 'truncated.snap');
    writeFileSync(truncated, bytes.subarray(0, Math.floor(bytes.length * 0.6)));
    const cases: [string, string[], RegExp][] = [
      [garbage, [], /not a tsvmm snapshot/i],
      [damaged, [], /checksum|crc/i],
      [truncated, [], /truncated|ended/i],
      [snapshot, ['--mem', '128M'], /RAM/],
      [join(scratch, 'absent.snap'), [], /no such file/],
    ];
    for (const [file, extra, message] of cases) {
      const r = tsvmm([...tsvmmCounterArgs(settings), ...extra, '--restore', file]);
      expect(r.stderr.trim().split('\n'), file).toHaveLength(1);
      expect(r.stderr, file).toMatch(message);
      expect(r.stdout, file).not.toMatch(/count/);
      expect(r.status, file).toBe(2);
    }
  });
});

describe.skipIf(!hasKvm)('live migration between two tsvmm processes', () => {
  it('moves a guest that dirties 16 MiB over and over: the destination counts on with no page lost; the source ends postmigrate', async () => {
    const settings: CounterSettings = { pages: 4096, every: 8192, limit: 60 * 8192 };
    const port = await freePort();
    const qmpSource = qmpSocket();
    const qmpDestination = qmpSocket();
    const source = new TsvmmProcess([...tsvmmCounterArgs(settings), '--qmp', qmpSource]);
    const destination = new TsvmmProcess([...tsvmmCounterArgs(settings), '--incoming', `tcp:127.0.0.1:${port}`, '--qmp', qmpDestination]);
    try {
      const monitor = await source.monitor(qmpSource);
      const destinationMonitor = await destination.monitor(qmpDestination);
      expect(await destinationMonitor.execute('query-status')).toMatchObject({ running: false, status: 'inmigrate' });
      await source.waitFor('2 count lines', (out) => countLines(out).length >= 2);
      await monitor.execute('migrate-set-capabilities', { capabilities: [{ capability: 'events', state: true }] });
      await monitor.execute('migrate', { uri: `tcp:127.0.0.1:${port}` });
      let info: { status: string; downtime?: number; ram?: { transferred: number; 'dirty-sync-count': number } } = { status: 'setup' };
      for (let i = 0; i < 1500 && !['completed', 'failed'].includes(info.status); i++) {
        await sleep(20);
        info = await monitor.execute('query-migrate') as typeof info;
      }
      expect(info.status).toBe('completed');
      expect(info.ram!.transferred).toBeGreaterThan(16 * 2 ** 20);
      expect(info.ram!['dirty-sync-count']).toBeGreaterThanOrEqual(2);
      expect(await monitor.execute('query-status')).toMatchObject({ running: false, status: 'postmigrate' });
      expect(monitor.events.filter((e) => e.event === 'MIGRATION').map((e) => (e.data as { status: string }).status)).toContain('completed');

      expect(await destination.end(90_000)).toBe(CounterStatus.DONE);
      expect(source.stdout + destination.stdout).not.toMatch(/BAD/);
      // What the source printed and what the destination printed are one count.
      const counts = expectContiguous(source.stdout + destination.stdout, 8192);
      expect(counts.at(-1)).toBe(settings.limit);
      expect(countLines(destination.stdout).length).toBeGreaterThan(0);
      await monitor.execute('quit').catch(() => {});
      expect(await source.end()).toBe(0);
    } finally {
      source.kill();
      destination.kill();
    }
  });
});

describe.skipIf(!hasKvm)('--incoming defer and migrate-incoming (how libvirt starts a destination)', () => {
  it('the destination waits for its URI in QMP, then takes the migration; a second migrate-incoming is refused', async () => {
    const settings: CounterSettings = { pages: 16, every: 4096, limit: 30 * 4096 };
    const port = await freePort();
    const qmpSource = qmpSocket();
    const qmpDestination = qmpSocket();
    const source = new TsvmmProcess([...tsvmmCounterArgs(settings), '--qmp', qmpSource]);
    const destination = new TsvmmProcess([...tsvmmCounterArgs(settings), '--incoming', 'defer', '--qmp', qmpDestination]);
    try {
      const monitor = await source.monitor(qmpSource);
      const destinationMonitor = await destination.monitor(qmpDestination);
      expect(await destinationMonitor.execute('query-status')).toMatchObject({ status: 'inmigrate' });
      await destinationMonitor.execute('migrate-incoming', { uri: `tcp:127.0.0.1:${port}` });
      await expect(destinationMonitor.execute('migrate-incoming', { uri: `tcp:127.0.0.1:${port}` })).rejects.toThrow(/already/);
      await source.waitFor('a count line', (out) => countLines(out).length >= 1);
      await monitor.execute('migrate', { uri: `tcp:127.0.0.1:${port}` });
      expect(await destination.end(60_000)).toBe(CounterStatus.DONE);
      expectContiguous(source.stdout + destination.stdout, 4096);
      await monitor.execute('quit').catch(() => {});
      expect(await source.end()).toBe(0);
    } finally {
      source.kill();
      destination.kill();
    }
  });

  it('quit while waiting for a migration ends tsvmm at once, status 0', async () => {
    for (const incoming of ['defer', `tcp:127.0.0.1:${await freePort()}`]) {
      const qmp = qmpSocket();
      const vm = new TsvmmProcess([...tsvmmCounterArgs({ pages: 16 }), '--incoming', incoming, '--qmp', qmp]);
      try {
        const monitor = await vm.monitor(qmp);
        await monitor.execute('quit').catch(() => {});
        expect(await vm.end(10_000), incoming).toBe(0);
        expect(vm.stderr, incoming).not.toMatch(/Error|at /);
      } finally {
        vm.kill();
      }
    }
  });
});
