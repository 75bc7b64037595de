// The control plane on the default guest (Linux at its shell, with a
// virtio-blk disk), the way a QEMU user drives it. A boot costs 40–65 s on a
// PVM host, so the whole file shares one, and each step hands the running
// guest on to the next process:
//
//   boot A (raw disk) ─ stop/cont ─ live migration ─▶ B ─ snapshot save ─▶ FILE
//   FILE + a qcow2 overlay on the disk ─ tsvmm run --restore ─▶ C ─ system_powerdown
//
// At each hop the shell answers a command typed after it, the disk reads back
// (past the guest's page cache) what the previous process wrote, and a new
// write lands. The host then finds every write where it belongs: A's and B's
// in the raw image, C's only in the overlay.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultLinuxGuest } from '../../src/cli/guest.ts';
import type { QmpClient } from '../../src/cli/qmp-client.ts';
import { openDisk } from '../../src/storage/open-disk.ts';
import { createQcow2 } from '../../src/storage/qcow2/create.ts';
import { hasKvm } from '../helpers/kvm.ts';
import { freePort, qmpSockets, sleep, TsvmmProcess } from '../helpers/tsvmm-process.ts';

const BOOT_MS = 300_000;
const PROMPT = /tsvmm:\/# /;

const scratch = mkdtempSync(join(tmpdir(), 'tsvmm-control-linux-'));
const RAW = join(scratch, 'disk.raw');
const OVERLAY = join(scratch, 'after-snapshot.qcow2');
const SNAPSHOT = join(scratch, 'shell.snap');
const DISK_BYTES = 4 << 20;
/** Written by the host before the boot, at 1 MiB: the guest's first read. */
const PATTERN_SECTOR = 2048;
const pattern = randomBytes(512).toString('hex').slice(0, 64);
/** One sector per writer, so that each write can be found where it belongs. */
const SECTOR = { booted: 100, migrated: 101, restored: 102 } as const;
const marker = (who: keyof typeof SECTOR) => `written-by-${who}-guest`;

const qmpSocket = qmpSockets(scratch);
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;


/** The default guest with one disk and a monitor; every process of the chain gets the same machine. */
const guestArgs = (disk: string, qmp: string) => ['run', '--disk', `${disk},serial=control-disk`, '--qmp', qmp];

/** Types `command` into the guest's shell; the lines it printed. */
async function guestRun(vm: TsvmmProcess, command: string, timeoutMs = 60_000): Promise<string> {
  const id = Math.random().toString(36).slice(2, 8);
  // The shell builds the markers, so the console's echo of the typed line cannot match them.
  const answer = new RegExp(`<<1${id}\\r?\\n([\\s\\S]*?)${id}1>>`);
  vm.type(`echo "<<$((1))${id}"; ${command}; echo "${id}$((1))>>"\n`);
  await vm.waitFor(`the answer to: ${command}`, (out) => answer.test(out), timeoutMs);
  return answer.exec(vm.stdout)![1]!.replace(/\r/g, '');
}

/** What the guest reads from the disk's sector, past its page cache (a read the device must serve). */
async function guestReadSector(vm: TsvmmProcess, sector: number): Promise<string> {
  const out = await guestRun(vm, `echo 3 > /proc/sys/vm/drop_caches; echo "sector=$(dd if=/dev/vda bs=512 skip=${sector} count=1 2>/dev/null | tr -d '\\000')."`);
  return /^sector=(.*)\.$/m.exec(out)?.[1] ?? `(no answer in ${JSON.stringify(out)})`;
}

/** Writes `text` to the disk's sector from the guest and syncs. */
async function guestWriteSector(vm: TsvmmProcess, sector: number, text: string): Promise<void> {
  const out = await guestRun(vm, `echo "${text}" | dd of=/dev/vda bs=512 seek=${sector} conv=sync,fsync 2>/dev/null && sync && echo "wrote=ok"`);
  expect(out).toMatch(/^wrote=ok$/m);
}

/** The guest's uptime in seconds, read with shell builtins only (no fork). */
async function guestUptime(vm: TsvmmProcess): Promise<number> {
  const out = await guestRun(vm, 'read up _ < /proc/uptime; echo "up=$up"');
  return Number(/^up=([\d.]+)$/m.exec(out)![1]);
}

type MigrationInfo = {
  status: string;
  'total-time'?: number;
  downtime?: number;
  'error-desc'?: string;
  ram?: { transferred: number; total: number; 'dirty-sync-count': number };
};

/** Polls query-migrate until the migration ends, at most `timeoutMs`. */
async function migrationEnd(monitor: QmpClient, timeoutMs: number): Promise<MigrationInfo> {
  const deadline = Date.now() + timeoutMs;
  let info: MigrationInfo = { status: 'setup' };
  while (!['completed', 'failed', 'cancelled'].includes(info.status) && Date.now() < deadline) {
    await sleep(50);
    info = await monitor.execute('query-migrate') as MigrationInfo;
  }
  return info;
}

/** Polls query-status until it is `wanted`, at most `timeoutMs`; the last status seen. */
async function statusBecomes(monitor: QmpClient, wanted: string, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { status } = await monitor.execute('query-status') as { status: string };
    if (status === wanted || Date.now() > deadline) return status;
    await sleep(10);
  }
}

function hostSector(disk: string, format: 'raw' | 'qcow2', sector: number): string {
  const image = openDisk(disk, { format, readOnly: true });
  const bytes = new Uint8Array(512);
  image.read(sector * 512, bytes);
  image.close();
  return Buffer.from(bytes).toString('latin1').replace(/[\n\0]+$/, '');
}

const processes: TsvmmProcess[] = [];
function start(args: string[]): TsvmmProcess {
  const vm = new TsvmmProcess(args, { input: true });
  processes.push(vm);
  return vm;
}

afterAll(() => {
  for (const vm of processes) vm.kill();
  rmSync(scratch, { recursive: true, force: true });
});

describe.skipIf(!hasKvm)('the control plane on the default Linux guest with a disk (one boot)', () => {
  const timings: string[] = [];
  let booted: TsvmmProcess;
  let bootedMonitor: QmpClient;
  let bootMs = 0;
  let migrated: TsvmmProcess;
  let migratedMonitor: QmpClient;
  const migratedQmp = qmpSocket();

  beforeAll(async () => {
    // Built once before the boot (a kernel build: minutes), so the boot's time limit does not pay for it.
    await defaultLinuxGuest({ quiet: true });
    const raw = Buffer.alloc(DISK_BYTES);
    raw.write(pattern, PATTERN_SECTOR * 512, 'latin1');
    writeFileSync(RAW, raw);
  }, 30 * 60_000);

  afterAll(() => console.log(`control-plane-linux timings:\n  ${timings.join('\n  ')}`));

  it('boots to its shell with a raw disk and a QMP monitor; the guest reads the host\'s pattern and writes a sector', async () => {
    const qmp = qmpSocket();
    const started = Date.now();
    booted = start(guestArgs(`${RAW},format=raw`, qmp));
    bootedMonitor = await booted.monitor(qmp);
    await booted.waitFor('the shell', (out) => PROMPT.test(out), BOOT_MS);
    bootMs = Date.now() - started;
    timings.push(`boot to the shell: ${seconds(bootMs)}`);
    // busybox init starts acpid with the shell: wait for it now, so that the
    // power button the last step presses finds someone listening.
    const acpid = await guestRun(booted, 'for i in 1 2 3 4 5 6 7 8 9 10; do pidof acpid >/dev/null && break; sleep 1; done; echo "acpid=$(pidof acpid)."');
    expect(acpid).toMatch(/^acpid=\d+\.$/m);
    expect(await guestReadSector(booted, PATTERN_SECTOR)).toBe(pattern);
    await guestWriteSector(booted, SECTOR.booted, marker('booted'));
    expect(hostSector(RAW, 'raw', SECTOR.booted)).toBe(marker('booted'));
  }, BOOT_MS + 120_000);

  it('stop/cont: the guest is paused for 5 s, its clock does not jump by the pause, and the shell answers after cont', async () => {
    const before = await guestUptime(booted);
    const wallStart = Date.now();
    await bootedMonitor.execute('stop');
    const stoppedAt = Date.now();
    expect(await bootedMonitor.execute('query-status')).toMatchObject({ running: false, status: 'paused' });
    await sleep(5000);
    const contAt = Date.now();
    await bootedMonitor.execute('cont');
    expect(await bootedMonitor.execute('query-status')).toMatchObject({ running: true, status: 'running' });
    const after = await guestUptime(booted);
    const wallMs = Date.now() - wallStart;
    const guestMs = (after - before) * 1000;
    const pausedMs = contAt - stoppedAt;
    // What the guest's clock left out of the wall time: the pause, give or
    // take the console's latency between the guest reading /proc/uptime and
    // the test seeing the answer (up to a second or so on a loaded PVM host).
    const missedMs = wallMs - guestMs;
    timings.push(`stop/cont: ${seconds(wallMs)} of wall time with ${seconds(pausedMs)} paused, ${seconds(guestMs)} of guest uptime (the guest missed ${seconds(missedMs)})`);
    expect(guestMs).toBeGreaterThan(0);
    expect(missedMs).toBeGreaterThan(pausedMs - 2000);
    expect(bootedMonitor.events.map((e) => e.event)).toEqual(['STOP', 'RESUME']);
  }, 120_000);

  it('live migration over tcp:127.0.0.1 while the guest runs: the destination\'s console and disk work; the source ends postmigrate and quits with 0', async () => {
    const port = await freePort();
    const started = Date.now();
    migrated = start([...guestArgs(`${RAW},format=raw`, migratedQmp), '--incoming', `tcp:127.0.0.1:${port}`]);
    migratedMonitor = await migrated.monitor(migratedQmp);
    expect(await migratedMonitor.execute('query-status')).toMatchObject({ running: false, status: 'inmigrate' });

    await bootedMonitor.execute('migrate', { uri: `tcp:127.0.0.1:${port}` });
    const info = await migrationEnd(bootedMonitor, 180_000);
    expect(info.status, info['error-desc']).toBe('completed');
    timings.push(`live migration: total ${info['total-time']} ms, downtime ${info.downtime} ms, ${(info.ram!.transferred / 2 ** 20).toFixed(1)} MiB sent in ${info.ram!['dirty-sync-count']} passes; destination process start to running ${seconds(Date.now() - started)}`);
    expect(await bootedMonitor.execute('query-status')).toMatchObject({ running: false, status: 'postmigrate' });
    expect(await statusBecomes(migratedMonitor, 'running', 30_000)).toBe('running');

    expect(await guestRun(migrated, 'echo "migrated-$((6 * 7))"')).toMatch(/^migrated-42$/m);
    expect(await guestReadSector(migrated, SECTOR.booted)).toBe(marker('booted'));
    await guestWriteSector(migrated, SECTOR.migrated, marker('migrated'));
    expect(hostSector(RAW, 'raw', SECTOR.migrated)).toBe(marker('migrated'));

    await bootedMonitor.execute('quit').catch(() => {});
    expect(await booted.end(30_000)).toBe(0);
  }, 300_000);

  it('tsvmm snapshot save at the shell: the guest goes on running, and the source quits with 0', async () => {
    const save = new TsvmmProcess(['snapshot', 'save', '--qmp', migratedQmp, SNAPSHOT]);
    processes.push(save);
    expect(await save.end(120_000), save.stderr).toBe(0);
    expect(save.stderr).toMatch(/^tsvmm: saved .*shell\.snap/);
    const savedIn = /in (\d+) ms/.exec(save.stderr)?.[1];
    timings.push(`snapshot save: ${(statSync(SNAPSHOT).size / 2 ** 20).toFixed(1)} MiB in ${savedIn} ms`);
    expect(await migratedMonitor.execute('query-status')).toMatchObject({ running: true, status: 'running' });
    expect(await guestRun(migrated, 'echo "after-save-$((6 * 7))"')).toMatch(/^after-save-42$/m);
    await migratedMonitor.execute('quit').catch(() => {});
    expect(await migrated.end(30_000)).toBe(0);
  }, 180_000);

  let restored: TsvmmProcess;
  let restoredMonitor: QmpClient;

  it('tsvmm run --restore in a new process, the disk behind a qcow2 overlay made at snapshot time: the shell answers, the disk reads back, a new write lands in the overlay', async () => {
    // What the README asks of a disk at restore: the same file unchanged, or an overlay on it.
    createQcow2(OVERLAY, { size: DISK_BYTES, backingFile: RAW, backingFormat: 'raw' });
    const qmp = qmpSocket();
    const started = Date.now();
    restored = start([...guestArgs(`${OVERLAY},format=qcow2`, qmp), '--restore', SNAPSHOT]);
    restoredMonitor = await restored.monitor(qmp);
    // The monitor is up before the snapshot is read: tsvmm's own start-up.
    const monitorMs = Date.now() - started;
    expect(await statusBecomes(restoredMonitor, 'running', 60_000)).toBe('running');
    const runningMs = Date.now() - started;
    // The tty's echo of the typed line shows "$((6 * 7))": only the shell's answer shows 42.
    restored.type('echo "restored-$((6 * 7))"\n');
    await restored.waitFor('the restored shell\'s answer', (out) => /restored-42/.test(out), 60_000);
    const answerMs = Date.now() - started;
    timings.push(`restore: process start to its monitor ${seconds(monitorMs)}, to running ${seconds(runningMs)}, to the shell's answer ${seconds(answerMs)} (boot to the shell: ${seconds(bootMs)})`);
    expect(restored.stderr).not.toMatch(/error/i);

    expect(await guestReadSector(restored, SECTOR.booted)).toBe(marker('booted'));
    expect(await guestReadSector(restored, SECTOR.migrated)).toBe(marker('migrated'));
    await guestWriteSector(restored, SECTOR.restored, marker('restored'));
    expect(hostSector(OVERLAY, 'qcow2', SECTOR.restored)).toBe(marker('restored'));
    expect(hostSector(RAW, 'raw', SECTOR.restored)).toBe('');
  }, 180_000);

  it('system_powerdown on the restored guest: Linux powers off through ACPI, tsvmm ends with 0, QMP saw POWERDOWN and SHUTDOWN', async () => {
    await restoredMonitor.execute('system_powerdown');
    expect(await restored.end(120_000)).toBe(0);
    expect(restored.stderr).toMatch(/tsvmm: guest powered off\n$/);
    expect(restored.stdout).toMatch(/reboot: Power down/);
    const events = restoredMonitor.events.map((e) => e.event);
    expect(events).toContain('POWERDOWN');
    expect(events.indexOf('POWERDOWN')).toBeLessThan(events.indexOf('SHUTDOWN'));
    expect(restoredMonitor.events.find((e) => e.event === 'SHUTDOWN')!.data).toEqual({ guest: true, reason: 'guest-shutdown' });
  }, 180_000);

  it('the host finds each write where it belongs, and the overlay is a consistent qcow2 image', () => {
    expect(hostSector(RAW, 'raw', SECTOR.booted)).toBe(marker('booted'));
    expect(hostSector(RAW, 'raw', SECTOR.migrated)).toBe(marker('migrated'));
    expect(hostSector(RAW, 'raw', SECTOR.restored)).toBe('');
    expect(hostSector(OVERLAY, 'qcow2', SECTOR.restored)).toBe(marker('restored'));
    expect(hostSector(OVERLAY, 'qcow2', SECTOR.booted)).toBe(marker('booted'));
    const qemuImg = (() => {
      try {
        return execFileSync('qemu-img', ['check', OVERLAY], { encoding: 'utf8' });
      } catch (e) {
        return (e as { code?: string }).code === 'ENOENT' ? null : String((e as { stdout?: string }).stdout ?? e);
      }
    })();
    if (qemuImg !== null) expect(qemuImg).toMatch(/No errors were found/);
  });
});
