// virsh migrate: a running domain moves to another host (or another scope of
// this one). The stream goes through the connection itself, as libvirt's
// tunnelled migration does: the source's `tsvmm run` migrates to an exec:
// command that is `ssh HOST tsvmm migrate-receive NAME`, so no port is
// opened between the hosts and the memory travels encrypted.
//
//   source (this host)                      destination (DEST)
//   define DEST < the domain's XML    ──▶   define /dev/stdin
//   QMP migrate exec:"ssh DEST tsvmm migrate-receive NAME"
//                                     ──▶   start NAME --incoming defer
//                                           QMP migrate-incoming unix:RUN/NAME/incoming.sock
//     pre-copy, stop-and-copy ═══ ssh ═══▶  stdin → incoming.sock → the new tsvmm run
//   quit the source (postmigrate)           the guest runs on
//   --undefinesource: undefine here
//
// Without --copy-storage-all, disks are not copied: both hosts must see them
// at the same paths (shared storage), as libvirt's migration assumes. With
// it, each writable disk image is created at the destination (same path,
// format and virtual size, no backing file: the chain is flattened, as
// libvirt's full copy does) unless it is there already with that size, and
// QMP migrate's `blk` sends the disks in the stream before the memory.
// Read-only disks are not copied: they must be there.
import { spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { InputError } from '../errors.ts';
import { domainToXml, parseConnectUri, stateFolders, type Connection, type DomainDefinition, type DomainRunFiles } from '../domain/index.ts';
import type { QmpClient } from './qmp-client.ts';
import { destroyDomain, lookup, requireRunning, startDomain, storeOf, withMonitor, type StateOption } from './domain-runtime.ts';
import { shellQuote, sshArguments } from './remote.ts';

const POLL_MS = 100;
/** The destination's stream socket appears within this after migrate-incoming. */
const LISTEN_TIMEOUT_MS = 30_000;
/** After its stream ended, the destination runs within this (the last pages and the devices are loaded by then). */
const RESUME_TIMEOUT_MS = 60_000;

/** A whole migration, pre-copy rounds and all: far more than any that converges (a timer's limit is 2^31 ms). */
const MIGRATION_TIMEOUT_MS = 24 * 3600_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface MigrateOptions extends StateOption {
  live?: boolean;
  persistent?: boolean;
  undefinesource?: boolean;
  copyStorageAll?: boolean;
}

/** `tsvmm ARGS` at `destination` as an argv: through ssh, or this tsvmm with -c for another scope here. */
function verbArgv(destination: Connection, uri: string, args: string[]): string[] {
  if (destination.kind === 'ssh') return ['ssh', ...sshArguments(destination, args)];
  return [process.execPath, ...process.execArgv, process.argv[1]!, '-c', uri, ...args];
}

/** Runs a verb at the destination with `input` on its stdin; its output, or its one-line error. */
async function runVerbAt(destination: Connection, uri: string, args: string[], input = ''): Promise<string> {
  const [file, ...argv] = verbArgv(destination, uri, args);
  const child = spawn(file!, argv, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (t: string) => (stdout += t));
  child.stderr.setEncoding('utf8').on('data', (t: string) => (stderr += t));
  child.stdin.end(input);
  const status = await new Promise<number | null>((resolve, reject) => {
    child.once('error', (e) => reject(new InputError(`${uri}: cannot run ${file}: ${(e as NodeJS.ErrnoException).code ?? e.message}`)));
    child.once('close', resolve);
  });
  if (status !== 0) {
    const last = stderr.trim().split('\n').pop()?.replace(/^tsvmm: /, '').trim() || `status ${status}`;
    throw new InputError(`${uri}: ${args[0]}: ${last}`);
  }
  return stdout;
}

/** A disk of the running source as query-block describes it. */
interface SourceDisk {
  device: string;
  file: string;
  format: 'raw' | 'qcow2';
  readOnly: boolean;
  virtualSize: number;
}

async function sourceDisks(client: QmpClient): Promise<SourceDisk[]> {
  const entries = await client.execute('query-block') as Array<{
    device: string; inserted: { file: string; ro: boolean; drv: 'raw' | 'qcow2'; image: { 'virtual-size': number } };
  }>;
  return entries.map(({ device, inserted }) => ({
    device, file: inserted.file, format: inserted.drv, readOnly: inserted.ro, virtualSize: inserted.image['virtual-size'],
  }));
}

/** The virtual size of the image at `path` on the destination, or null when there is no file there. */
async function destinationImageSize(destination: Connection, uri: string, path: string): Promise<number | null> {
  try {
    const info = JSON.parse(await runVerbAt(destination, uri, ['img', 'info', '--output', 'json', path])) as { 'virtual-size': number };
    return info['virtual-size'];
  } catch (e) {
    if (e instanceof InputError && e.message.includes('ENOENT')) return null;
    throw e;
  }
}

/**
 * --copy-storage-all's preparation at the destination, before anything is
 * started there: each writable disk is created there unless it exists with
 * the source's virtual size; a read-only disk must be there already.
 */
async function prepareDestinationDisks(destination: Connection, uri: string, disks: SourceDisk[]): Promise<void> {
  for (const disk of disks) {
    const size = await destinationImageSize(destination, uri, disk.file);
    if (size === null && disk.readOnly) {
      throw new InputError(`--copy-storage-all: ${disk.file} (${disk.device}) is read-only and not copied, and ${uri} has no such file`);
    }
    if (size === null) {
      try {
        await runVerbAt(destination, uri, ['img', 'create', '-f', disk.format, disk.file, String(disk.virtualSize)]);
      } catch (e) {
        throw new InputError(`--copy-storage-all: cannot create ${disk.file} (${disk.device}) at ${uri}: ${(e as Error).message.replace(`${uri}: img: `, '')}`);
      }
    } else if (size !== disk.virtualSize) {
      throw new InputError(`--copy-storage-all: ${disk.file} (${disk.device}) is ${size} bytes at ${uri} and ${disk.virtualSize} bytes here: a copy needs the same virtual size`);
    }
  }
}

export async function migrate(key: string, destinationUri: string, options: MigrateOptions): Promise<void> {
  const destination = parseConnectUri(destinationUri);
  const store = storeOf(options);
  const definition = await lookup(store, key);
  await requireRunning(store, definition);
  if (destination.kind === 'local' && options.stateDir === undefined && !process.env.TSVMM_STATE_DIR
    && stateFolders(undefined, { ...process.env, TSVMM_DEFAULT_URI: destinationUri }).data === store.folders.data) {
    throw new InputError(`${destinationUri}: the domain is there already`);
  }
  const files = store.runFiles(definition.name);
  if (options.copyStorageAll) {
    const disks = await withMonitor(definition.name, files, sourceDisks);
    await prepareDestinationDisks(destination, destinationUri, disks);
  }
  await runVerbAt(destination, destinationUri, ['define', '/dev/stdin'], domainToXml(definition));
  const receive = verbArgv(destination, destinationUri, ['migrate-receive', definition.name]).map(shellQuote).join(' ');
  const outcome = await withMonitor(definition.name, files, async (client) => {
    // Without --live the guest stops first, as libvirt's offline-to-the-guest migration does.
    if (!options.live) await client.execute('stop');
    await client.execute('migrate', { uri: `exec:${receive}`, ...(options.copyStorageAll ? { blk: true } : {}) });
    for (;;) {
      const info = await client.execute('query-migrate') as { status?: string; 'error-desc'?: string };
      if (info.status === 'completed') return null;
      if (info.status === 'failed' || info.status === 'cancelled') return info['error-desc'] ?? info.status;
      await sleep(POLL_MS);
    }
  }, MIGRATION_TIMEOUT_MS);
  if (outcome !== null) {
    if (!options.live) await withMonitor(definition.name, files, (client) => client.execute('cont'));
    throw new InputError(`migration of domain '${definition.name}' to ${destinationUri} failed: ${outcome}; it runs on here`);
  }
  // The stream is all sent; as libvirt's Finish phase, wait until the guest runs there, then end it here.
  await waitForDestination(destination, destinationUri, definition.name);
  await destroyDomain(store, definition);
  if (options.undefinesource) store.undefine(definition.name);
}

/** Polls the destination's `domstate` until the migrated guest runs there (bounded). */
async function waitForDestination(destination: Connection, uri: string, name: string): Promise<void> {
  const deadline = Date.now() + RESUME_TIMEOUT_MS;
  for (;;) {
    const state = (await runVerbAt(destination, uri, ['domstate', name])).trim();
    if (state === 'running' || state === 'paused') return;
    if (state === 'shut off') throw new InputError(`migration of domain '${name}' to ${uri}: the destination ended it; it is stopped here as the migration left it (tsvmm resume runs it on)`);
    if (Date.now() > deadline) throw new InputError(`migration of domain '${name}' to ${uri}: it did not run there within ${RESUME_TIMEOUT_MS / 1000} s (state: ${state})`);
    await sleep(POLL_MS * 5);
  }
}

/**
 * The destination's half (run by the source through the connection): starts
 * the defined domain waiting for a migration, and feeds it the stream that
 * arrives on stdin. Ends once the guest runs here; on any failure the
 * half-started domain is destroyed.
 */
export async function migrateReceive(key: string, options: StateOption): Promise<void> {
  const store = storeOf(options);
  const definition = await lookup(store, key);
  const files = store.runFiles(definition.name);
  await startDomain(store, definition, { incomingDeferred: true });
  try {
    await withMonitor(definition.name, files, (client) => client.execute('migrate-incoming', { uri: `unix:${files.incoming}` }));
    const socket = await connectWhenListening(files.incoming);
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.once('close', () => resolve());
      process.stdin.pipe(socket);
    });
    await waitUntilRunning(definition, files);
  } catch (e) {
    await destroyDomain(store, definition).catch(() => {});
    throw e instanceof InputError ? e : new InputError(`receiving domain '${definition.name}': ${(e as Error).message}`);
  }
}

async function connectWhenListening(path: string): Promise<Socket> {
  const deadline = Date.now() + LISTEN_TIMEOUT_MS;
  for (;;) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const socket = connect(path, () => resolve(socket));
        socket.once('error', reject);
      });
    } catch (e) {
      if (Date.now() > deadline) throw new InputError(`${path}: the domain did not listen for its migration (${(e as NodeJS.ErrnoException).code})`);
      await sleep(POLL_MS);
    }
  }
}

async function waitUntilRunning(definition: DomainDefinition, files: DomainRunFiles): Promise<void> {
  const deadline = Date.now() + RESUME_TIMEOUT_MS;
  for (;;) {
    const { status } = await withMonitor(definition.name, files, (client) => client.execute('query-status')) as { status: string };
    if (status === 'running' || status === 'paused') return;
    if (status !== 'inmigrate') throw new InputError(`domain '${definition.name}' is ${status} after its migration`);
    if (Date.now() > deadline) throw new InputError(`domain '${definition.name}' did not resume within ${RESUME_TIMEOUT_MS / 1000} s of its stream's end`);
    await sleep(POLL_MS);
  }
}
