// The verbs that keep a domain's state in a file: `save` / `restore`, and
// memory snapshots (`snapshot-create-as`, -list, -dumpxml, -revert, -delete).
// The state goes through the domain's monitor with QMP `migrate file:`, as a
// libvirt-driven QEMU writes it; docs/domains.md says what is kept where.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { InputError } from '../errors.ts';
import {
  domainToXml, formatTable, parseDomainXml, readDefinitionFile, snapshotToXml, writeFileAtomic, type DomainDefinition, type DomainStore,
} from '../domain/index.ts';
import { destroyDomain, lookup, requireRunning, runningDomain, startDomain, storeOf, waitForDomainExit, withMonitor, type StateOption } from './domain-runtime.ts';
import { ofdByteLocks } from '../kvm/index.ts';
import { applyInternalSnapshot, createInternalSnapshot, deleteInternalSnapshot, listInternalSnapshots } from '../storage/internal-snapshots.ts';
import type { QmpClient } from './qmp-client.ts';

const say = (text: string) => writeSync(1, text);

/** A state file written through `migrate file:` must be complete before the domain goes on. */
const MIGRATE_TIMEOUT_MS = 10 * 60 * 1000;
const POLL_MS = 20;

/**
 * Runs `work` with the domain's vCPUs stopped, writing its state to `file`
 * through `migrate file:` first; the vCPUs run again afterwards only if they
 * ran before and `resume` says so, or if saving failed. Says whether they ran.
 */
async function withStateSaved(client: QmpClient, file: string, resume: boolean): Promise<boolean> {
  const { running } = await client.execute('query-status') as { running: boolean };
  if (running) await client.execute('stop');
  try {
    mkdirSync(dirname(file), { recursive: true });
    await client.execute('migrate', { uri: `file:${file}` });
    for (;;) {
      const info = await client.execute('query-migrate') as { status: string; 'error-desc'?: string };
      if (info.status === 'completed') break;
      if (info.status === 'failed' || info.status === 'cancelled') throw new InputError(`saving the state to ${file} failed: ${info['error-desc'] ?? info.status}`);
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
  } catch (e) {
    if (running) await client.execute('cont');
    throw e;
  }
  if (running && resume) await client.execute('cont');
  return running;
}

/** The definition a save file was made with: FILE.xml beside it (the state stream has no room for it). */
const definitionBeside = (file: string) => `${file}.xml`;

/** virsh save: the domain's state into FILE, then the domain ends (restore FILE brings it back). */
export async function save(key: string, file: string, options: StateOption): Promise<void> {
  const store = storeOf(options);
  const definition = await lookup(store, key);
  await requireRunning(store, definition);
  const target = resolve(file);
  writeFileAtomic(definitionBeside(target), domainToXml(definition));
  const files = store.runFiles(definition.name);
  await withMonitor(definition.name, files, async (client) => {
    await withStateSaved(client, target, false);
    await client.execute('quit');
  }, MIGRATE_TIMEOUT_MS);
  if (!(await waitForDomainExit(store, definition))) await destroyDomain(store, definition);
  say(`\nDomain '${definition.name}' saved to ${file}\n\n`);
}

/** virsh restore: starts the domain saved in FILE from its state (defining it from FILE.xml if it is not). */
export async function restore(file: string, options: StateOption & { paused?: boolean }): Promise<void> {
  const store = storeOf(options);
  const source = resolve(file);
  if (!existsSync(source)) throw new InputError(`${file}: no such file`);
  if (!existsSync(definitionBeside(source))) throw new InputError(`${file}: no ${definitionBeside(file)} beside it: not a file tsvmm save wrote`);
  const saved = readDefinitionFile(definitionBeside(source));
  const defined = store.all().find((d) => d.uuid === saved.uuid);
  if (!defined) store.define(saved);
  await startDomain(store, saved, { restore: source, paused: options.paused ?? false });
  say(`Domain restored from ${file}\n\n`);
}

interface SnapshotRecord {
  name: string;
  description?: string;
  /** virsh's snapshot states: the domain's state when it was taken. */
  state: 'running' | 'paused' | 'shutoff';
  /** Seconds since the epoch. */
  creationTime: number;
  /** The domain's definition then. */
  domainXml: string;
}

const SNAPSHOT_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.+:-]{0,99}$/;

function snapshotFiles(store: DomainStore, domain: string, snapshot: string): { record: string; state: string } {
  if (!SNAPSHOT_NAME.test(snapshot)) throw new InputError(`"${snapshot}" is not a snapshot name tsvmm can use: letters, digits and _ . + : -`);
  const folder = store.snapshotFolder(domain);
  return { record: join(folder, `${snapshot}.json`), state: join(folder, `${snapshot}.state`) };
}

function readSnapshot(store: DomainStore, domain: string, snapshot: string): SnapshotRecord {
  const { record } = snapshotFiles(store, domain, snapshot);
  if (!existsSync(record)) throw new InputError(`domain '${domain}' has no snapshot '${snapshot}'`);
  return JSON.parse(readFileSync(record, 'utf8')) as SnapshotRecord;
}

/** The disks a snapshot must keep: the writable ones (read-only disks never change). */
const snapshotDisks = (definition: DomainDefinition) => definition.devices.disks.filter((d) => !d.readOnly);

/** Raw images have no snapshots (libvirt refuses them too); qcow2 images keep them inside (internal snapshots). */
function checkSnapshotDisks(definition: DomainDefinition): void {
  const raw = snapshotDisks(definition).find((d) => d.format === 'raw');
  if (raw) throw new InputError(`domain '${definition.name}': disk ${raw.target} is a raw image, which cannot take a snapshot (use qcow2)`);
}

const imageLocking = { format: 'qcow2', locks: ofdByteLocks } as const;

/** Takes internal snapshot `snapshot` of every disk, or of none (the ones taken are deleted again on a failure). */
function snapshotAllDisks(definition: DomainDefinition, snapshot: string): void {
  const taken: string[] = [];
  try {
    for (const disk of snapshotDisks(definition)) {
      createInternalSnapshot(disk.path, snapshot, imageLocking);
      taken.push(disk.path);
    }
  } catch (e) {
    for (const path of taken) deleteInternalSnapshot(path, snapshot, imageLocking);
    throw e;
  }
}

/**
 * A running domain's snapshot: memory and disks at one instant. Its
 * `tsvmm run` has the disk images open, so the domain is stopped, its state
 * written, its process ended (images closed), the disks snapshotted, and the
 * domain started again from that state with the same id: the guest does not
 * see the gap. Without writable disks the process goes on as it is.
 */
async function snapshotRunning(store: DomainStore, definition: DomainDefinition, snapshot: string, stateFile: string, id: number): Promise<boolean> {
  const files = store.runFiles(definition.name);
  if (snapshotDisks(definition).length === 0) {
    return await withMonitor(definition.name, files, (client) => withStateSaved(client, stateFile, true), MIGRATE_TIMEOUT_MS);
  }
  const wasRunning = await withMonitor(definition.name, files, async (client) => {
    const running = await withStateSaved(client, stateFile, false);
    await client.execute('quit');
    return running;
  }, MIGRATE_TIMEOUT_MS);
  if (!(await waitForDomainExit(store, definition))) await destroyDomain(store, definition);
  try {
    snapshotAllDisks(definition, snapshot);
  } finally {
    // With or without its disk snapshots, the domain goes on from where it stopped.
    await startDomain(store, definition, { restore: stateFile, paused: !wasRunning, id });
  }
  return wasRunning;
}

export async function snapshotCreateAs(key: string, snapshot: string, options: StateOption & { description?: string }): Promise<void> {
  const store = storeOf(options);
  const definition = await lookup(store, key);
  checkSnapshotDisks(definition);
  const files = snapshotFiles(store, definition.name, snapshot);
  if (existsSync(files.record)) throw new InputError(`domain '${definition.name}' already has a snapshot '${snapshot}'`);
  const running = await runningDomain(store, definition);
  let state: SnapshotRecord['state'] = 'shutoff';
  if (running) {
    state = (await snapshotRunning(store, definition, snapshot, files.state, running.id)) ? 'running' : 'paused';
  } else {
    snapshotAllDisks(definition, snapshot);
  }
  const record: SnapshotRecord = {
    name: snapshot, ...(options.description !== undefined ? { description: options.description } : {}),
    state, creationTime: Math.floor(Date.now() / 1000), domainXml: domainToXml(definition),
  };
  writeFileAtomic(files.record, `${JSON.stringify(record, null, 2)}\n`);
  say(`Domain snapshot ${snapshot} created\n`);
}

/** "2026-12-01 10:22:29 +0000", virsh's creation time, in the local time zone. */
function creationTimeText(seconds: number): string {
  const date = new Date(seconds * 1000);
  const offset = -date.getTimezoneOffset();
  const local = new Date(date.getTime() + offset * 60_000).toISOString().replace('T', ' ').slice(0, 19);
  const sign = offset < 0 ? '-' : '+';
  const hours = String(Math.floor(Math.abs(offset) / 60)).padStart(2, '0');
  return `${local} ${sign}${hours}${String(Math.abs(offset) % 60).padStart(2, '0')}`;
}

export async function snapshotList(key: string, options: StateOption): Promise<void> {
  const store = storeOf(options);
  const definition = await lookup(store, key);
  const folder = store.snapshotFolder(definition.name);
  const records = existsSync(folder)
    ? readdirSync(folder).filter((f) => f.endsWith('.json') && !f.startsWith('.')).map((f) => readSnapshot(store, definition.name, f.slice(0, -'.json'.length)))
    : [];
  records.sort((a, b) => a.creationTime - b.creationTime || (a.name < b.name ? -1 : 1));
  say(formatTable(['Name', 'Creation Time', 'State'], records.map((r) => [r.name, creationTimeText(r.creationTime), r.state])));
}

export async function snapshotDumpxml(key: string, snapshot: string, options: StateOption): Promise<void> {
  const store = storeOf(options);
  const definition = await lookup(store, key);
  const record = readSnapshot(store, definition.name, snapshot);
  const memoryFile = record.state === 'shutoff' ? {} : { memoryFile: snapshotFiles(store, definition.name, snapshot).state };
  say(snapshotToXml({ ...record, ...memoryFile }));
}

export async function snapshotRevert(key: string, snapshot: string, options: StateOption): Promise<void> {
  const store = storeOf(options);
  const definition = await lookup(store, key);
  const record = readSnapshot(store, definition.name, snapshot);
  const then = parseDomainXml(record.domainXml, `snapshot ${snapshot}`);
  if (await runningDomain(store, definition)) await destroyDomain(store, definition);
  for (const disk of snapshotDisks(then)) applyInternalSnapshot(disk.path, snapshot, imageLocking);
  store.define(then);
  if (record.state !== 'shutoff') {
    await startDomain(store, then, { restore: snapshotFiles(store, definition.name, snapshot).state, paused: record.state === 'paused' });
  }
  say(`Domain snapshot ${snapshot} reverted\n\n`);
}

export async function snapshotDelete(key: string, snapshot: string, options: StateOption): Promise<void> {
  const store = storeOf(options);
  const definition = await lookup(store, key);
  const record = readSnapshot(store, definition.name, snapshot);
  const disks = snapshotDisks(parseDomainXml(record.domainXml, `snapshot ${snapshot}`));
  if (disks.length && await runningDomain(store, definition)) {
    throw new InputError(`cannot delete snapshot '${snapshot}' of domain '${definition.name}' while it runs: its disks are open (tsvmm cannot change a running domain's images)`);
  }
  for (const disk of disks) {
    if (existsSync(disk.path) && listInternalSnapshots(disk.path, imageLocking).some((s) => s.name === snapshot)) deleteInternalSnapshot(disk.path, snapshot, imageLocking);
  }
  const files = snapshotFiles(store, definition.name, snapshot);
  rmSync(files.record);
  rmSync(files.state, { force: true });
  say(`Domain snapshot ${snapshot} deleted\n\n`);
}
