// Running domains: each is one `tsvmm run` process in its own session, with
// its QMP monitor and console on unix sockets in RUN/NAME (src/domain's
// DomainStore names the files). Whether it runs is its run lock
// (src/domain/run-lock.ts); what state it is in, its monitor says.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { InputError } from '../errors.ts';
import {
  checkDefinition, domainRunOptions, runArguments, runLockHeld, RunLock, stateOfRunState, takeDomainId,
  DomainStore, stateFolders, withVolumesResolved, type DomainDefinition, type DomainRunFiles, type DomainStateName,
} from '../domain/index.ts';
import { networkBridges, NetworkStore } from '../network/index.ts';
import { poolVolumeLookup } from '../pool/index.ts';
import { QmpClient } from './qmp-client.ts';

const POLL_MS = 20;
/** A domain's `tsvmm run` answers its monitor within this after it is spawned (tsx alone takes seconds on a busy host). */
const START_TIMEOUT_MS = 60_000;
/** How long a monitor may take to answer one question before the domain counts as unresponsive. */
const MONITOR_TIMEOUT_MS = 10_000;
/** After QMP quit (or SIGKILL), the process must be gone within this. */
const EXIT_TIMEOUT_MS = 10_000;

/** The option every domain verb takes. */
export interface StateOption {
  stateDir?: string;
}

export const storeOf = (options: StateOption) => {
  const folders = stateFolders(options.stateDir);
  return new DomainStore(folders, poolVolumeLookup(folders));
};

export interface RunningDomain {
  id: number;
  pid: number | null;
  state: DomainStateName;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function bounded<T>(what: string, work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new InputError(`${what}: no answer within ${ms / 1000} s`)), ms)));
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function readNumber(file: string): number | null {
  try {
    const value = Number(readFileSync(file, 'utf8'));
    return Number.isSafeInteger(value) && value > 0 ? value : null;
  } catch {
    return null;
  }
}

/** Removes what a domain's dead process left behind; its logs stay. Only while holding its run lock. */
function clearStaleFiles(files: DomainRunFiles): void {
  for (const file of [files.pid, files.id, files.qmp, files.console, files.incoming]) rmSync(file, { force: true });
}

/**
 * Clears a stopped domain's stale files under its run lock, so that a start
 * racing with this (which takes the lock first) never loses its new files.
 * When the lock is taken, a start is under way and owns the files.
 */
function clearIfStopped(files: DomainRunFiles): void {
  const lock = RunLock.tryAcquire(files.lock);
  if (!lock) return;
  try {
    clearStaleFiles(files);
  } finally {
    lock.close();
  }
}

/** Runs `work` on the domain's monitor, bounded in time. */
export async function withMonitor<T>(name: string, files: DomainRunFiles, work: (client: QmpClient) => Promise<T>, timeoutMs = MONITOR_TIMEOUT_MS): Promise<T> {
  const client = await bounded(`domain '${name}' monitor`, QmpClient.open(`unix:${files.qmp}`), MONITOR_TIMEOUT_MS);
  try {
    return await bounded(`domain '${name}' monitor`, work(client), timeoutMs);
  } finally {
    client.close();
  }
}

/** The domain's run state, or null when it is shut off (clearing what a killed process left). */
export async function runningDomain(store: DomainStore, definition: DomainDefinition): Promise<RunningDomain | null> {
  const files = store.runFiles(definition.name);
  if (!existsSync(files.folder)) return null;
  if (!runLockHeld(files.lock)) {
    clearIfStopped(files);
    return null;
  }
  let state: DomainStateName = 'no state';
  try {
    const status = await withMonitor(definition.name, files, (client) => client.execute('query-status')) as { status: string };
    state = stateOfRunState(status.status);
  } catch {
    // Starting, or its monitor is wedged: it runs, in no state libvirt could name.
  }
  return { id: readNumber(files.id) ?? 0, pid: readNumber(files.pid), state };
}

/** A domain by name, UUID, or (while it runs) id, as virsh looks domains up. */
export async function lookup(store: DomainStore, key: string): Promise<DomainDefinition> {
  try {
    return store.find(key);
  } catch (e) {
    if (!/^\d+$/.test(key)) throw e;
    for (const definition of store.all()) {
      if ((await runningDomain(store, definition))?.id === Number(key)) return definition;
    }
    throw e;
  }
}

/** The running domain, or virsh's error when it is not running. */
export async function requireRunning(store: DomainStore, definition: DomainDefinition): Promise<RunningDomain> {
  const running = await runningDomain(store, definition);
  if (!running) throw new InputError(`domain '${definition.name}' is not running`);
  return running;
}

export interface StartOptions {
  paused?: boolean;
  /** A state file (save, snapshot) to start from instead of booting. */
  restore?: string;
  /** Keeps the id the domain had (a snapshot restarts its process); a new one otherwise. */
  id?: number;
  /** Waits for a migration's state, its URI to come through QMP's migrate-incoming (`tsvmm run --incoming defer`). */
  incomingDeferred?: boolean;
}

function lastLogLine(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim().split('\n').at(-1)?.replace(/^tsvmm: /, '') ?? '';
  } catch {
    return '';
  }
}

/**
 * Starts the domain's `tsvmm run` in its own session, its output in its log,
 * holding the domain's run lock; returns once its monitor answers.
 */
export async function startDomain(store: DomainStore, given: DomainDefinition, options: StartOptions = {}): Promise<void> {
  // <disk type='volume'>: the volume's file, looked up now, as libvirt does when it starts a domain.
  const definition = withVolumesResolved(given, store.definitionFile(given.name), poolVolumeLookup(store.folders));
  checkDefinition(definition);
  const { name } = definition;
  const files = store.runFiles(name);
  mkdirSync(files.folder, { recursive: true });
  const lock = RunLock.tryAcquire(files.lock);
  if (!lock) throw new InputError(`cannot start domain '${name}': it is already active`);
  let child: ReturnType<typeof spawn> | null = null;
  try {
    clearStaleFiles(files);
    writeFileSync(files.id, `${options.id ?? takeDomainId(store.folders.run)}\n`);
    const args = [
      'run', ...runArguments(domainRunOptions(definition), networkBridges(new NetworkStore(store.folders))),
      '--qmp', `unix:${files.qmp},server=on,wait=off`,
      '--serial', `unix:${files.console},server=on,wait=off,logfile=${files.consoleLog}`,
      ...(options.paused ? ['-S'] : []),
      ...(options.restore !== undefined ? ['--restore', options.restore] : []),
      ...(options.incomingDeferred ? ['--incoming', 'defer'] : []),
    ];
    const log = openSync(files.log, 'a', 0o600);
    try {
      // fd 3 is the locked lock file: the domain's process holds the run lock for as long as it lives.
      child = spawn(process.execPath, [...process.execArgv, process.argv[1]!, ...args], { detached: true, stdio: ['ignore', log, log, lock.fd] });
    } finally {
      closeSync(log);
    }
    let exited = false;
    child.on('exit', () => (exited = true));
    child.unref();
    writeFileSync(files.pid, `${child.pid}\n`);
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (exited) throw new InputError(`domain '${name}' did not start: ${lastLogLine(files.log) || 'tsvmm ended'} (log: ${files.log})`);
      if (existsSync(files.qmp)) {
        try {
          await withMonitor(name, files, (client) => client.execute('query-status'));
          break;
        } catch {
          // Listening but not answering yet.
        }
      }
      if (Date.now() > deadline) throw new InputError(`domain '${name}' did not answer on its monitor within ${START_TIMEOUT_MS / 1000} s (log: ${files.log})`);
      await sleep(POLL_MS);
    }
  } catch (e) {
    if (child?.pid !== undefined && child.exitCode === null) child.kill('SIGKILL');
    throw e;
  } finally {
    lock.close();
  }
}

async function waitForExit(files: DomainRunFiles, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (runLockHeld(files.lock)) {
    if (Date.now() > deadline) return false;
    await sleep(POLL_MS);
  }
  return true;
}

/** The pid in the pid file, if that process is still this domain's tsvmm (pids are reused). */
function domainPid(files: DomainRunFiles, definition: DomainDefinition): number | null {
  const pid = readNumber(files.pid);
  if (pid === null) return null;
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return argv.includes('run') && argv.includes(definition.uuid) ? pid : null;
  } catch {
    return null;
  }
}

/** Ends the domain's process: QMP quit, then SIGKILL if it does not go. */
export async function destroyDomain(store: DomainStore, definition: DomainDefinition): Promise<void> {
  await requireRunning(store, definition);
  const files = store.runFiles(definition.name);
  try {
    await withMonitor(definition.name, files, (client) => client.execute('quit'));
  } catch {
    // No monitor to ask: the kill below ends it.
  }
  if (!(await waitForExit(files, EXIT_TIMEOUT_MS))) {
    const pid = domainPid(files, definition);
    if (pid !== null) process.kill(pid, 'SIGKILL');
    if (!(await waitForExit(files, EXIT_TIMEOUT_MS))) throw new InputError(`domain '${definition.name}' did not end (pid ${pid ?? 'unknown'})`);
  }
  clearIfStopped(files);
}

/** Waits (bounded) for a domain whose guest was asked to end to be gone. */
export async function waitForDomainExit(store: DomainStore, definition: DomainDefinition, ms = EXIT_TIMEOUT_MS): Promise<boolean> {
  const files = store.runFiles(definition.name);
  const gone = await waitForExit(files, ms);
  if (gone) clearIfStopped(files);
  return gone;
}

/** The CPU time the domain's process has used, in seconds (utime + stime from /proc). */
export function cpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 of proc(5), counted from the state (field 3) here; clock ticks are 1/100 s on Linux.
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}
