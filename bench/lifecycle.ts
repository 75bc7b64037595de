// The lifecycle suite: what a snapshot, a restore and a live migration cost,
// for tsvmm and for QEMU on the same guest and host, all driven through QMP
// as a management layer would drive them (src/cli/qmp-client.ts, the client
// `tsvmm snapshot save` uses).
//
// The guest is firmware/multiboot/counter.S in 256 MiB of RAM: it counts, a
// line every COUNTER_EVERY steps, and rewrites one word in each page of a
// P-page buffer, checking the value it left there a pass before, so a page a
// snapshot or migration lost stops it with "counter BAD".
//   snapshot   `migrate` to "exec:cat > FILE" (QEMU's way to save to a file):
//              query-migrate's total-time and downtime, the file's size.
//   restore    `tsvmm run ... --restore FILE` (QEMU: -incoming "exec:cat FILE")
//              from spawn() to the guest's first `count` line after the
//              restore point, against a cold start of the same guest to its
//              first line, and tsvmm's own start-up (first KVM_RUN, as in the
//              startup suite). Goal: ≤ RESTORE_GOAL_MS beyond that start-up,
//              judged inside the process (TSVMM_TIMING's `run` mark, where the
//              machine is built and the restore begins, to the first line,
//              less a cold start's `run` to first KVM_RUN): Node's own
//              start-up, which varies by tens of ms between processes on a
//              busy host, drops out. tsvmm restores both the `migrate` file
//              and the one `tsvmm snapshot save` wrote (paused: each page once).
//   migration  pre-copy over tcp:127.0.0.1 to a second process started with
//              --incoming (QEMU: -incoming): query-migrate's total-time,
//              downtime and RAM figures, for an idle-ish buffer (16 pages) and
//              dirtying ones; the destination must go on counting from where
//              the source stopped. Goal: downtime ≤ the downtime-limit set.
// TSVMM_BENCH_DEFAULT_GUEST=1 adds the default Linux guest once: boot to its
// shell against restore to a shell that answers a command (minutes here).
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TSVMM_BIN } from './lib/artifacts.ts';
import { ensureCompiled } from './lib/compiled.ts';
import { counterKernel, parseCountLine, qemuCounterArgs, tsvmmCounterArgs, type CounterSettings } from './lib/counter-guest.ts';
import { findQemu } from './lib/peers.ts';
import { QmpClient } from '../src/cli/qmp-client.ts';
import { summarize, table, type Summary } from './lib/stats.ts';
import type { BenchOptions, ChartBar, ChartPanel } from './lib/suite.ts';
import { VmmProcess, type StampedLine } from './lib/vmm-process.ts';

const MEM_MIB = 256;
/**
 * Steps per line: small, so that a restored guest says so soon after the
 * restore point (64 steps take ~1.4 ms where ring 0 is emulated, as on PVM).
 */
const COUNTER_EVERY = 64;
/** The buffer of the snapshot and restore guest: 16 MiB that the guest keeps rewriting. */
const SNAPSHOT_PAGES = 4096;
const MIGRATION_LOADS = [16, 4096, 16384] as const;
const DOWNTIME_LIMIT_MS = 300;
/** max-bandwidth for both VMMs: no throttle on a loopback connection (QEMU 7.2's default is 128 MiB/s). */
const MAX_BANDWIDTH = 64 * 2 ** 30;
export const RESTORE_GOAL_MS = 10;
const GUEST_TIMEOUT_MS = 60_000;
const MIGRATION_TIMEOUT_MS = 180_000;
const MIB = 2 ** 20;

type VmmName = 'tsvmm' | 'QEMU';

interface Vmm {
  name: VmmName;
  /** null: not installed (the note says why). */
  command: string | null;
  note: string;
  /** The counter guest's command line, with a QMP socket and optionally an incoming migration or a snapshot to restore. */
  args(settings: CounterSettings, extra: { qmp?: string; incoming?: string; restore?: string }): string[];
  /** Collects TSVMM_TIMING marks. */
  timing: boolean;
}

function vmms(): Vmm[] {
  const qemu = findQemu();
  return [
    {
      name: 'tsvmm',
      command: process.execPath,
      note: 'compiled (dist/)',
      timing: true,
      args: (settings, extra) => [
        TSVMM_BIN, ...tsvmmCounterArgs(settings, MEM_MIB),
        ...(extra.qmp ? ['--qmp', `unix:${extra.qmp},server=on,wait=off`] : []),
        ...(extra.incoming ? ['--incoming', extra.incoming] : []),
        ...(extra.restore ? ['--restore', extra.restore] : []),
      ],
    },
    {
      name: 'QEMU',
      command: qemu.path,
      note: qemu.path ? `${qemu.version?.replace(/^QEMU emulator version (\S+).*/, 'QEMU $1') ?? 'QEMU'}, -M pc, -accel kvm` : qemu.note,
      timing: false,
      args: (settings, extra) => {
        const incoming = extra.incoming ?? (extra.restore ? `exec:cat ${extra.restore}` : undefined);
        return [
          ...qemuCounterArgs(settings, { memMiB: MEM_MIB }),
          ...(extra.qmp ? ['-qmp', `unix:${extra.qmp},server=on,wait=off`] : []),
          ...(incoming ? ['-incoming', incoming] : []),
        ];
      },
    },
  ];
}

/** A failed measurement: the row says why instead of a figure. */
interface Failed { error: string }

export interface SnapshotRow {
  /** The VMM, or "tsvmm snapshot save" (the command, timed from spawn to exit). */
  what: string;
  /** query-migrate's total-time, ms. */
  saveMs: Summary | null;
  downtimeMs: Summary | null;
  fileMiB: number | null;
  note: string;
  error?: string;
}

export interface RestoreRow {
  /** The VMM, and for tsvmm which snapshot file. */
  what: string;
  /** spawn() to the first count line after the restore point, ms. */
  restoreMs: Summary | null;
  /** spawn() to the first count line of a cold start of the same guest, ms. */
  coldMs: Summary | null;
  /** tsvmm: spawn() to the first KVM_RUN of the cold start (the startup suite's figure). */
  startupMs: Summary | null;
  /** tsvmm: what the restore adds to start-up, measured inside each process (the goal's figure). */
  beyondStartupMs: Summary | null;
  /** The snapshot file restored, MiB (median). */
  fileMiB: number | null;
  note: string;
  error?: string;
}

export interface MigrationRow {
  vmm: VmmName;
  pages: number;
  totalMs: Summary | null;
  downtimeMs: Summary | null;
  transferredMiB: Summary | null;
  /** dirty-sync-count: the passes over guest RAM. */
  passes: Summary | null;
  mbps: Summary | null;
  note: string;
  error?: string;
}

export interface DefaultGuestResult {
  bootToShellMs: number;
  saveMs: number;
  fileMiB: number;
  restoreToAnswerMs: number;
}

export interface LifecycleResult {
  runs: number;
  memMiB: number;
  every: number;
  downtimeLimitMs: number;
  restoreGoalMs: number;
  snapshot: SnapshotRow[];
  restore: RestoreRow[];
  migration: MigrationRow[];
  defaultGuest: DefaultGuestResult | Failed | null;
}

// ---- running one VMM with the counter guest ---------------------------------

interface Running {
  proc: VmmProcess;
  qmp: QmpClient;
}

/** A QMP command that must answer within `timeoutMs` (a monitor that hangs fails the measurement, not the bench). */
async function execute<T>(qmp: QmpClient, command: string, args?: Record<string, unknown>, timeoutMs = 30_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`QMP ${command}: no answer within ${timeoutMs} ms`)), timeoutMs)));
  try {
    return await Promise.race([qmp.execute(command, args) as Promise<T>, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Connects to the monitor at `path` once `proc` has made it, or fails when `proc` ends first or after `timeoutMs`. */
async function connectMonitor(proc: VmmProcess, path: string, timeoutMs: number): Promise<QmpClient> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (proc.describeExit() !== 'running') throw proc.failure(`ended (${proc.describeExit()}) before its QMP socket answered`);
    try {
      return await QmpClient.open(`unix:${path}`);
    } catch (error) {
      if (Date.now() > deadline) throw proc.failure(`has no QMP monitor at ${path} after ${timeoutMs} ms (${message(error)})`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function startCounter(vmm: Vmm, settings: CounterSettings, qmpPath: string, what: string, extra: { incoming?: string } = {}): Promise<Running> {
  const proc = new VmmProcess(`${vmm.name} ${what}`, vmm.command!, vmm.args(settings, { qmp: qmpPath, ...extra }), { timing: vmm.timing });
  try {
    return { proc, qmp: await connectMonitor(proc, qmpPath, GUEST_TIMEOUT_MS) };
  } catch (error) {
    await proc.kill();
    throw error;
  }
}

async function stop(running: Running | null): Promise<void> {
  if (!running) return;
  try {
    await execute(running.qmp, 'quit', undefined, 5000);
  } catch {
    // It may have ended already; the kill below makes sure.
  }
  running.qmp.close();
  await running.proc.finish(5000);
}

function isCount(line: string): boolean {
  return parseCountLine(line) !== null;
}

function countOf(line: StampedLine): number {
  return parseCountLine(line.text)!.n;
}

/** The last count line the guest printed so far. */
function lastCount(proc: VmmProcess): number | null {
  for (let i = proc.lines.length - 1; i >= 0; i--) {
    const c = parseCountLine(proc.lines[i]!.text);
    if (c) return c.n;
  }
  return null;
}

/** Waits until the guest has been over its whole buffer twice, so that every slot holds a value a lost page would betray. */
async function waitUntilBufferWritten(proc: VmmProcess, pages: number): Promise<void> {
  await proc.waitForLine((l) => (parseCountLine(l)?.n ?? 0) >= 2 * pages, GUEST_TIMEOUT_MS, 0, `count line past ${2 * pages}`);
}

/**
 * The source's last count line where it stopped, as bounds: the last line
 * seen before the save began and the last seen after it ended (equal for a
 * source that stays stopped; a source that went on after the save printed more).
 */
interface SourceLast { before: number | null; after: number | null }

/** Where the destination or restored guest must go on: past the source's last line before the save, at most a line or two past its last line after it. */
function checkContinues(proc: VmmProcess, first: StampedLine, source: SourceLast): void {
  const n = countOf(first);
  for (const line of proc.lines.slice(0, first.index)) {
    if (line.text.startsWith('counter ')) throw proc.failure(`printed ${JSON.stringify(line.text)}: it booted or failed instead of going on`);
  }
  if (source.before !== null && n <= source.before) throw proc.failure(`went on at count ${n}, but the source had already printed count ${source.before}`);
  if (source.after !== null && n > source.after + 2 * COUNTER_EVERY) throw proc.failure(`went on at count ${n}, but the source's last line was count ${source.after}`);
}

interface MigrateInfo {
  status: string;
  'total-time'?: number;
  downtime?: number;
  'error-desc'?: string;
  ram?: { transferred: number; total: number; 'dirty-sync-count': number; mbps: number };
}

/** Starts `migrate` and polls query-migrate until it has ended. */
async function migrate(qmp: QmpClient, uri: string): Promise<MigrateInfo> {
  await execute(qmp, 'migrate-set-parameters', { 'downtime-limit': DOWNTIME_LIMIT_MS, 'max-bandwidth': MAX_BANDWIDTH });
  await execute(qmp, 'migrate', { uri });
  const deadline = Date.now() + MIGRATION_TIMEOUT_MS;
  for (;;) {
    const info = await execute<MigrateInfo>(qmp, 'query-migrate');
    if (info.status === 'completed') return info;
    if (info.status === 'failed' || info.status === 'cancelled') throw new Error(`migrate ${uri}: ${info.status}${info['error-desc'] ? `: ${info['error-desc']}` : ''}`);
    if (Date.now() > deadline) throw new Error(`migrate ${uri}: still ${info.status} after ${MIGRATION_TIMEOUT_MS / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

/** Whether something listens on 127.0.0.1:port, from /proc/net/tcp: no probe connection, which an incoming VMM would take for the stream. */
function listening(port: number): boolean {
  const wanted = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return readFileSync('/proc/net/tcp', 'utf8').split('\n').some((line) => {
    const fields = line.trim().split(/\s+/);
    return fields[1] === wanted && fields[3] === '0A';
  });
}

async function waitListening(proc: VmmProcess, port: number): Promise<void> {
  const deadline = Date.now() + GUEST_TIMEOUT_MS;
  while (!listening(port)) {
    if (proc.describeExit() !== 'running') throw proc.failure(`ended (${proc.describeExit()}) before it listened on port ${port}`);
    if (Date.now() > deadline) throw proc.failure(`did not listen on port ${port} within ${GUEST_TIMEOUT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

// ---- the measurements -------------------------------------------------------

interface SnapshotRun { saveMs: number; downtimeMs: number; bytes: number; file: string; sourceLast: SourceLast }

async function snapshotOnce(vmm: Vmm, dir: string, run: number): Promise<SnapshotRun> {
  const settings = { pages: SNAPSHOT_PAGES, every: COUNTER_EVERY };
  const file = join(dir, `${vmm.name}-${run}.snapshot`);
  const source = await startCounter(vmm, settings, join(dir, `${vmm.name}-snapshot.qmp`), 'snapshot source');
  try {
    await waitUntilBufferWritten(source.proc, SNAPSHOT_PAGES);
    const info = await migrate(source.qmp, `exec:cat > ${file}`);
    // The source stays stopped (postmigrate): every line it printed comes before the snapshot's point.
    const last = lastCount(source.proc);
    const sourceLast = { before: last, after: last };
    return { saveMs: info['total-time'] ?? NaN, downtimeMs: info.downtime ?? NaN, bytes: statSync(file).size, file, sourceLast };
  } finally {
    await stop(source);
  }
}

/** `tsvmm snapshot save --qmp unix:PATH FILE`, the command a user types, from spawn to its exit. The caller removes the file. */
async function snapshotCommandOnce(vmm: Vmm, dir: string, run: number): Promise<SnapshotRun> {
  const settings = { pages: SNAPSHOT_PAGES, every: COUNTER_EVERY };
  const file = join(dir, `snapshot-command-${run}.snapshot`);
  const qmpPath = join(dir, 'snapshot-command.qmp');
  const source = await startCounter(vmm, settings, qmpPath, 'snapshot source');
  try {
    await waitUntilBufferWritten(source.proc, SNAPSHOT_PAGES);
    const before = lastCount(source.proc);
    const save = new VmmProcess('tsvmm snapshot save', process.execPath, [TSVMM_BIN, 'snapshot', 'save', '--qmp', `unix:${qmpPath}`, file]);
    const exit = await save.finish(MIGRATION_TIMEOUT_MS);
    if (exit.status !== 0) throw save.failure(`ended with ${save.describeExit()}`);
    const savedNs = save.now();
    // The command resumed the guest: it went on counting past the snapshot, so only bounds are known.
    return { saveMs: savedNs / 1e6, downtimeMs: NaN, bytes: statSync(file).size, file, sourceLast: { before, after: lastCount(source.proc) } };
  } catch (error) {
    rmSync(file, { force: true });
    throw error;
  } finally {
    await stop(source);
  }
}

interface RestoreRun {
  restoreMs: number;
  coldMs: number;
  startupMs: number | null;
  /** What restoring adds to start-up, inside the process (see the head of this file); tsvmm only. */
  beyondStartupMs: number | null;
}

/** Restores `snapshot` to its first count line, then cold-starts the same guest: a pair, so both meet the host in the same state. */
async function restoreOnce(vmm: Vmm, snapshot: SnapshotRun): Promise<RestoreRun> {
  const settings = { pages: SNAPSHOT_PAGES, every: COUNTER_EVERY };
  const restored = new VmmProcess(`${vmm.name} restore`, vmm.command!, vmm.args(settings, { restore: snapshot.file }), { timing: vmm.timing });
  let restoreMs: number;
  let restoreFromRunMs: number | null;
  try {
    const first = await restored.waitForLine(isCount, GUEST_TIMEOUT_MS, 0, 'count line after the restore');
    checkContinues(restored, first, snapshot.sourceLast);
    restoreMs = first.atNs / 1e6;
    const run = restored.marks.run;
    restoreFromRunMs = run === undefined ? null : (first.atNs - run) / 1e6;
  } finally {
    await restored.kill();
  }
  const cold = new VmmProcess(`${vmm.name} cold start`, vmm.command!, vmm.args(settings, {}), { timing: vmm.timing });
  try {
    const first = await cold.waitForLine(isCount, GUEST_TIMEOUT_MS, 0, 'first count line');
    const { run, 'first-kvm-run': startup } = cold.marks;
    const coldFromRunMs = run === undefined || startup === undefined ? null : (startup - run) / 1e6;
    return {
      restoreMs,
      coldMs: first.atNs / 1e6,
      startupMs: startup === undefined ? null : startup / 1e6,
      beyondStartupMs: restoreFromRunMs === null || coldFromRunMs === null ? null : restoreFromRunMs - coldFromRunMs,
    };
  } finally {
    await cold.kill();
  }
}

interface MigrationRun { totalMs: number; downtimeMs: number; transferredMiB: number; passes: number; mbps: number }

async function migrateOnce(vmm: Vmm, pages: number, dir: string): Promise<MigrationRun> {
  const settings = { pages, every: COUNTER_EVERY };
  const port = await freePort();
  const uri = `tcp:127.0.0.1:${port}`;
  let destination: Running | null = null;
  let source: Running | null = null;
  try {
    destination = await startCounter(vmm, settings, join(dir, `${vmm.name}-destination.qmp`), 'migration destination', { incoming: uri });
    await waitListening(destination.proc, port);
    source = await startCounter(vmm, settings, join(dir, `${vmm.name}-source.qmp`), 'migration source');
    await waitUntilBufferWritten(source.proc, pages);
    const info = await migrate(source.qmp, uri);
    const last = lastCount(source.proc);
    const sourceLast = { before: last, after: last };
    const first = await destination.proc.waitForLine(isCount, GUEST_TIMEOUT_MS, 0, 'count line after the migration');
    checkContinues(destination.proc, first, sourceLast);
    const state = await execute<{ status: string }>(source.qmp, 'query-status');
    if (state.status !== 'postmigrate') throw new Error(`${vmm.name} migration source: status ${state.status} after the migration, expected postmigrate`);
    return {
      totalMs: info['total-time'] ?? NaN,
      downtimeMs: info.downtime ?? NaN,
      transferredMiB: (info.ram?.transferred ?? NaN) / MIB,
      passes: info.ram?.['dirty-sync-count'] ?? NaN,
      mbps: info.ram?.mbps ?? NaN,
    };
  } finally {
    await stop(source);
    await stop(destination);
  }
}

/** The default Linux guest once: boot to its shell, save it at the prompt, restore it and have the shell answer. */
async function defaultGuestOnce(dir: string, log: (line: string) => void): Promise<DefaultGuestResult> {
  const { defaultLinuxGuest } = await import('../src/cli/guest.ts');
  await defaultLinuxGuest({ quiet: false });
  const qmpPath = join(dir, 'default.qmp');
  const file = join(dir, 'default.snapshot');
  const boot = new VmmProcess('tsvmm default guest', process.execPath, [TSVMM_BIN, 'run', '--qmp', `unix:${qmpPath},server=on,wait=off`]);
  let qmp: QmpClient | null = null;
  let bootToShellMs: number;
  let saveMs: number;
  try {
    qmp = await connectMonitor(boot, qmpPath, GUEST_TIMEOUT_MS);
    const deadline = Date.now() + 600_000;
    // Not anchored at the end: ash follows its prompt with a terminal query (ESC [6n).
    while (!/tsvmm:\/# /.test(boot.pendingText)) {
      if (boot.describeExit() !== 'running' || Date.now() > deadline) throw boot.failure('did not reach its shell prompt');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    bootToShellMs = boot.now() / 1e6;
    log(`  default guest: shell after ${(bootToShellMs / 1000).toFixed(1)} s; saving it`);
    const info = await migrate(qmp, `exec:cat > ${file}`);
    saveMs = info['total-time'] ?? NaN;
  } finally {
    await stop(qmp ? { proc: boot, qmp } : null);
    await boot.kill();
  }
  const restored = new VmmProcess('tsvmm default guest restore', process.execPath, [TSVMM_BIN, 'run', '--restore', file]);
  try {
    // Typed at once: the pipe holds it until the restored guest's UART takes it.
    restored.type('echo "sum=$((6 * 7))"\n');
    const answer = await restored.waitForLine((l) => l === 'sum=42', GUEST_TIMEOUT_MS, 0, 'answer of the shell');
    return { bootToShellMs, saveMs, fileMiB: statSync(file).size / MIB, restoreToAnswerMs: answer.atNs / 1e6 };
  } finally {
    await restored.kill();
  }
}

// ---- the suite ----------------------------------------------------------------

const summary = (values: number[]): Summary | null => (values.length ? summarize(values) : null);
const message = (error: unknown) => (error instanceof Error ? error.message : String(error));

export async function benchLifecycle(options: BenchOptions): Promise<LifecycleResult> {
  await ensureCompiled(options.log);
  counterKernel(); // built before anything is timed
  const dir = mkdtempSync(join(tmpdir(), 'tsvmm-bench-lifecycle-'));
  try {
    const all = vmms();
    const present = all.filter((v) => v.command);

    const snapshots = new Map<VmmName, SnapshotRun[]>(present.map((v) => [v.name, []]));
    const restores = new Map<VmmName, RestoreRun[]>(present.map((v) => [v.name, []]));
    const commandSnapshots: SnapshotRun[] = [];
    const commandRestores: RestoreRun[] = [];
    const errors = new Map<string, string>();
    const failed = (key: string, error: unknown) => {
      if (!errors.has(key)) options.log(`  ${key}: ${message(error)}`);
      errors.set(key, message(error));
    };
    for (let run = 0; run < options.runs; run++) {
      for (const vmm of present) {
        if (errors.has(`${vmm.name} snapshot`)) continue;
        try {
          const snapshot = await snapshotOnce(vmm, dir, run);
          snapshots.get(vmm.name)!.push(snapshot);
          if (errors.has(`${vmm.name} restore`)) continue;
          try {
            restores.get(vmm.name)!.push(await restoreOnce(vmm, snapshot));
          } catch (error) {
            failed(`${vmm.name} restore`, error);
          } finally {
            rmSync(snapshot.file, { force: true });
          }
        } catch (error) {
          failed(`${vmm.name} snapshot`, error);
        }
      }
      const tsvmm = present.find((v) => v.name === 'tsvmm')!;
      if (!errors.has('tsvmm snapshot save')) {
        try {
          const snapshot = await snapshotCommandOnce(tsvmm, dir, run);
          commandSnapshots.push(snapshot);
          try {
            if (!errors.has('tsvmm snapshot save restore')) commandRestores.push(await restoreOnce(tsvmm, snapshot));
          } catch (error) {
            failed('tsvmm snapshot save restore', error);
          } finally {
            rmSync(snapshot.file, { force: true });
          }
        } catch (error) {
          failed('tsvmm snapshot save', error);
        }
      }
      const last = (name: VmmName) => {
        const s = snapshots.get(name)?.[run];
        const r = restores.get(name)?.[run];
        return `${name} save ${s ? s.saveMs.toFixed(0) : '—'} ms, restore ${r ? r.restoreMs.toFixed(1) : '—'} ms (cold ${r ? r.coldMs.toFixed(1) : '—'}${r?.beyondStartupMs != null ? `, ${r.beyondStartupMs.toFixed(1)} beyond start-up` : ''})`;
      };
      const command = commandRestores[run];
      const commandLine = command ? `; snapshot save file: restore ${command.restoreMs.toFixed(1)} ms, ${command.beyondStartupMs?.toFixed(1) ?? '—'} beyond start-up` : '';
      options.log(`  snapshot run ${run + 1}/${options.runs}: ${present.map((v) => last(v.name)).join('; ')}${commandLine}`);
    }

    const migrations = new Map<string, MigrationRun[]>();
    for (const pages of MIGRATION_LOADS) {
      for (let run = 0; run < options.runs; run++) {
        for (const vmm of present) {
          const key = `${vmm.name} migration pages=${pages}`;
          if (errors.has(key)) continue;
          try {
            const result = await migrateOnce(vmm, pages, dir);
            migrations.set(key, [...(migrations.get(key) ?? []), result]);
            options.log(`  ${key} run ${run + 1}/${options.runs}: total ${result.totalMs} ms, downtime ${result.downtimeMs} ms, ${result.transferredMiB.toFixed(1)} MiB in ${result.passes} passes`);
          } catch (error) {
            failed(key, error);
          }
        }
      }
    }

    let defaultGuest: DefaultGuestResult | Failed | null = null;
    if (process.env.TSVMM_BENCH_DEFAULT_GUEST === '1') {
      try {
        defaultGuest = await defaultGuestOnce(dir, options.log);
      } catch (error) {
        defaultGuest = { error: message(error) };
        options.log(`  default guest: ${message(error)}`);
      }
    }

    const snapshotRow = (what: string, runs: SnapshotRun[], note: string, error: string | undefined): SnapshotRow => ({
      what,
      saveMs: summary(runs.map((r) => r.saveMs)),
      downtimeMs: summary(runs.map((r) => r.downtimeMs).filter((v) => !Number.isNaN(v))),
      fileMiB: runs.length ? summarize(runs.map((r) => r.bytes / MIB)).median : null,
      note,
      ...(error ? { error } : {}),
    });
    const snapshotRows = [
      ...all.map((vmm) => snapshotRow(vmm.name, snapshots.get(vmm.name) ?? [], vmm.note, errors.get(`${vmm.name} snapshot`))),
      snapshotRow('tsvmm snapshot save', commandSnapshots, 'the command: spawn to exit, QMP connection included', errors.get('tsvmm snapshot save')),
    ];
    const known = (values: (number | null)[]) => summary(values.filter((v): v is number => v !== null));
    const restoreRow = (what: string, runs: RestoreRun[], files: SnapshotRun[], note: string, error: string | undefined): RestoreRow => ({
      what,
      restoreMs: summary(runs.map((r) => r.restoreMs)),
      coldMs: summary(runs.map((r) => r.coldMs)),
      startupMs: known(runs.map((r) => r.startupMs)),
      beyondStartupMs: known(runs.map((r) => r.beyondStartupMs)),
      fileMiB: files.length ? summarize(files.map((r) => r.bytes / MIB)).median : null,
      note,
      ...(error ? { error } : {}),
    });
    const restoreRows = [
      ...all.map((vmm) => restoreRow(`${vmm.name}${vmm.name === 'tsvmm' ? ', migrate file' : ''}`, restores.get(vmm.name) ?? [], snapshots.get(vmm.name) ?? [], vmm.note,
        errors.get(`${vmm.name} restore`) ?? errors.get(`${vmm.name} snapshot`))),
      restoreRow('tsvmm, snapshot save file', commandRestores, commandSnapshots, 'saved paused: each page once', errors.get('tsvmm snapshot save restore') ?? errors.get('tsvmm snapshot save')),
    ];
    const migrationRows = MIGRATION_LOADS.flatMap((pages) => all.map((vmm): MigrationRow => {
      const key = `${vmm.name} migration pages=${pages}`;
      const runs = migrations.get(key) ?? [];
      return {
        vmm: vmm.name,
        pages,
        totalMs: summary(runs.map((r) => r.totalMs)),
        downtimeMs: summary(runs.map((r) => r.downtimeMs)),
        transferredMiB: summary(runs.map((r) => r.transferredMiB)),
        passes: summary(runs.map((r) => r.passes)),
        mbps: summary(runs.map((r) => r.mbps)),
        note: vmm.note,
        ...(errors.has(key) ? { error: errors.get(key)! } : {}),
      };
    }));
    return {
      runs: options.runs, memMiB: MEM_MIB, every: COUNTER_EVERY, downtimeLimitMs: DOWNTIME_LIMIT_MS, restoreGoalMs: RESTORE_GOAL_MS,
      snapshot: snapshotRows, restore: restoreRows, migration: migrationRows, defaultGuest,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- report -------------------------------------------------------------------

const range = (s: Summary | null, digits = 1) => (s ? `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}–${s.max.toFixed(digits)})` : '—');

/** The row's cells, or its failure (or absence) across them. */
function cells(row: { error?: string; note: string }, figures: string[], present: boolean): string[] {
  if (row.error) return [...figures.map(() => '—'), `failed: ${row.error}`];
  if (!present) return [...figures.map(() => '—'), `not installed: ${row.note}`];
  return [...figures, row.note];
}

export function formatLifecycle(result: LifecycleResult): string {
  const guest = `counter guest, ${result.memMiB} MiB RAM`;
  const snapshot = table(
    ['VMM', 'save ms', 'downtime ms', 'file MiB', 'note'],
    result.snapshot.map((r) => [r.what, ...cells(r, [range(r.saveMs), range(r.downtimeMs), r.fileMiB === null ? '—' : r.fileMiB.toFixed(1)], r.saveMs !== null)]),
  );
  const restore = table(
    ['VMM', 'file MiB', 'restore → first line ms', 'cold start → first line ms', 'first KVM_RUN ms', 'beyond start-up ms', 'note'],
    result.restore.map((r) => [r.what, ...cells(r, [r.fileMiB === null ? '—' : r.fileMiB.toFixed(1), range(r.restoreMs), range(r.coldMs), range(r.startupMs), range(r.beyondStartupMs)], r.restoreMs !== null)]),
  );
  const migration = table(
    ['VMM', 'buffer pages', 'total ms', 'downtime ms', 'sent MiB', 'passes', 'Mbit/s', 'note'],
    result.migration.map((r) => [r.vmm, String(r.pages), ...cells(r, [range(r.totalMs, 0), range(r.downtimeMs, 0), range(r.transferredMiB), range(r.passes, 0), range(r.mbps, 0)], r.totalMs !== null)]),
  );
  const lines = [
    `Snapshot to a file (migrate to "exec:cat > FILE"), ${guest}, ${SNAPSHOT_PAGES} pages being rewritten:`, snapshot, '',
    `Restore from that file to the guest's first line after the restore point (a line every ${result.every} steps), against a cold start:`, restore, '',
  ];
  lines.push("beyond start-up: inside each process, the restore's `run` mark to its first line, less the cold start's `run` mark to its first KVM_RUN (Node's start-up drops out).");
  for (const r of result.restore.filter((row) => row.what.startsWith('tsvmm') && row.beyondStartupMs)) {
    const beyond = r.beyondStartupMs!.median;
    const across = r.restoreMs && r.startupMs ? `; across processes, restore to first line less cold start to first KVM_RUN: ${(r.restoreMs.median - r.startupMs.median).toFixed(1)} ms` : '';
    lines.push(`${r.what}: the restored guest runs ${beyond.toFixed(1)} ms beyond tsvmm's own start-up: goal ≤ ${result.restoreGoalMs} ms, ${beyond <= result.restoreGoalMs ? 'met' : 'not met'}${across}.`);
  }
  lines.push('');
  lines.push(`Live migration over tcp:127.0.0.1, ${guest}, downtime-limit ${result.downtimeLimitMs} ms (query-migrate on the source):`, migration);
  const tsvmmMigrations = result.migration.filter((r) => r.vmm === 'tsvmm' && r.downtimeMs);
  if (tsvmmMigrations.length) {
    const worst = Math.max(...tsvmmMigrations.map((r) => r.downtimeMs!.max));
    lines.push('', `tsvmm's longest downtime: ${worst.toFixed(0)} ms: goal ≤ ${result.downtimeLimitMs} ms, ${worst <= result.downtimeLimitMs ? 'met' : 'not met'}.`);
  }
  if (result.defaultGuest) {
    lines.push('');
    if ('error' in result.defaultGuest) {
      lines.push(`Default guest: failed: ${result.defaultGuest.error}`);
    } else {
      const d = result.defaultGuest;
      lines.push(`Default guest (one run): boot to its shell ${(d.bootToShellMs / 1000).toFixed(1)} s; saved in ${d.saveMs.toFixed(0)} ms to ${d.fileMiB.toFixed(1)} MiB; restored to a shell that answered a command in ${d.restoreToAnswerMs.toFixed(0)} ms.`);
    }
  }
  return lines.join('\n');
}

export function chartLifecycle(result: LifecycleResult): ChartPanel[] {
  const bar = (series: string, s: Summary | null): ChartBar[] => (s ? [{ series, value: s.median, min: s.min, max: s.max }] : [{ series, value: 0, missing: 'not measured' }]);
  return [
    {
      title: `restore vs cold start, counter guest (${result.memMiB} MiB), from spawn()`,
      unit: 'ms',
      better: 'lower',
      groups: result.restore.map((r) => ({ label: r.what, bars: [...bar('restore', r.restoreMs), ...bar('cold start', r.coldMs)] })),
    },
    {
      title: `live migration downtime (limit ${result.downtimeLimitMs} ms), counter guest (${result.memMiB} MiB)`,
      unit: 'ms',
      better: 'lower',
      groups: MIGRATION_LOADS.map((pages) => ({
        label: `${pages} pages dirtied`,
        bars: result.migration.filter((r) => r.pages === pages).flatMap((r) => bar(r.vmm, r.downtimeMs)),
      })),
    },
  ];
}

