// virsh's storage verbs under tsvmm: pool-define-as, pool-build, pool-start,
// pool-list, pool-info, vol-create-as, vol-list, vol-clone, vol-resize,
// vol-upload... with virsh's option names and output layouts. Pools are
// directory pools (src/pool/): a definition in the state folder, volumes as
// image files in the pool's folder, no daemon.
import type { Command } from 'commander';
import { closeSync, existsSync, ftruncateSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { randomUUID } from 'node:crypto';
import { InputError } from '../errors.ts';
import { formatKeyValues, formatTable, stateFolders } from '../domain/index.ts';
import { isUsableName, NAME_RULE } from '../domain/parse.ts';
import { memoryBytes } from '../domain/units.ts';
import { ofdByteLocks } from '../kvm/index.ts';
import {
  buildPoolFolder, checkPoolFolder, checkVolumeName, createVolume, deleteVolume, findVolume, listVolumes, parsePoolXml, poolToXml, poolUsage, PoolStore,
  lookupVolume, parseVolumeXml, trimSlashes, volumeToXml, type PoolDefinition, type Volume,
} from '../pool/index.ts';
import type { DiskFormat } from '../storage/block-backend.ts';
import { describeFsError } from '../storage/host-file.ts';
import { ImageLock, type ByteLocks } from '../storage/image-lock.ts';
import { probeFormat } from '../storage/open-disk.ts';
import { resizeImage } from '../storage/resize.ts';
import { exitStatusOf } from './errors.ts';
import { imgConvert } from './img.ts';

const say = (text: string) => writeSync(1, text);

interface StateOption {
  stateDir?: string;
}

const poolStoreOf = (options: StateOption) => new PoolStore(stateFolders(options.stateDir));

/** A size as virsh reads one (vshVolSize): a whole number, bytes unless a libvirt unit follows ("10M", "1GiB", "5GB"). */
export function parseVolumeSize(text: string): number {
  const match = /^(\d+)\s*([A-Za-z]*)$/.exec(text.trim());
  const bytes = match ? memoryBytes(match[1]!, match[2] || 'b') : `"${text}" is not a whole number with an optional unit (10M, 1G)`;
  if (typeof bytes === 'string') throw new InputError(`malformed size ${text}: ${bytes}`);
  return bytes;
}

/** A size the way virsh prints one (vshPrettyCapacity): two decimals and a binary unit. */
export function prettyCapacity(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let unit = 0;
  while (unit < units.length - 1 && bytes >= 1024 ** (unit + 1)) unit++;
  return `${(bytes / 1024 ** unit).toFixed(2)} ${units[unit]}`;
}

function requireActive(store: PoolStore, pool: PoolDefinition): void {
  if (!store.isActive(pool.name)) throw new InputError(`storage pool '${pool.name}' is not active (pool-start it)`);
}

function requireInactive(store: PoolStore, pool: PoolDefinition, verb: string): void {
  if (store.isActive(pool.name)) throw new InputError(`cannot ${verb} pool '${pool.name}': it is active (pool-destroy it first)`);
}

/** An active pool by name or UUID. */
function activePool(store: PoolStore, key: string): PoolDefinition {
  const pool = store.find(key);
  requireActive(store, pool);
  return pool;
}

/** A volume as virsh finds one: by name in --pool, or by its path in whichever active pool holds it. */
function findVolumeOf(store: PoolStore, key: string, poolKey: string | undefined): { pool: PoolDefinition; volume: Volume } {
  if (poolKey !== undefined) {
    const pool = activePool(store, poolKey);
    return { pool, volume: findVolume(pool, key) };
  }
  const path = resolve(key);
  for (const pool of store.all().filter((p) => store.isActive(p.name) && p.path === dirname(path))) {
    const volume = lookupVolume(pool, basename(path));
    if (volume) return { pool, volume };
  }
  throw new InputError(`failed to get vol '${key}': no volume with this path in an active pool (name its pool with --pool)`);
}

// ---- pools -------------------------------------------------------------------------------------

function poolDefineAs(name: string, type: string, options: StateOption & { target?: string }): void {
  if (type !== 'dir') throw new InputError(`pool type '${type}': tsvmm has directory pools only (dir)`);
  if (!isUsableName(name)) throw new InputError(`"${name}" is not a pool name tsvmm can use: ${NAME_RULE}`);
  if (options.target === undefined) throw new InputError('pool-define-as NAME dir needs --target FOLDER');
  const store = poolStoreOf(options);
  if (store.lookup(name)) throw new InputError(`pool '${name}' is already defined`);
  store.define({ name, uuid: randomUUID(), type: 'dir', path: trimSlashes(resolve(options.target)) });
  say(`Pool ${name} defined\n\n`);
}

function readTextFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw new InputError(`${file}: cannot read (${describeFsError(e)})`);
  }
}

function poolDefine(file: string, options: StateOption): void {
  const store = poolStoreOf(options);
  const pool = parsePoolXml(readTextFile(file), file, (name) => store.lookup(name)?.uuid);
  store.define(pool);
  say(`Pool ${pool.name} defined from ${file}\n\n`);
}

function poolBuild(key: string, options: StateOption): void {
  const store = poolStoreOf(options);
  const pool = store.find(key);
  requireInactive(store, pool, 'build');
  buildPoolFolder(pool);
  say(`Pool ${pool.name} built\n\n`);
}

function poolStart(key: string, options: StateOption): void {
  const store = poolStoreOf(options);
  const pool = store.find(key);
  if (store.isActive(pool.name)) throw new InputError(`storage pool '${pool.name}' is already active`);
  checkPoolFolder(pool);
  store.setActive(pool.name, true);
  say(`Pool ${pool.name} started\n\n`);
}

function poolDestroy(key: string, options: StateOption): void {
  const store = poolStoreOf(options);
  const pool = activePool(store, key);
  store.setActive(pool.name, false);
  say(`Pool ${pool.name} destroyed\n\n`);
}

function poolUndefine(key: string, options: StateOption): void {
  const store = poolStoreOf(options);
  const pool = store.find(key);
  requireInactive(store, pool, 'undefine');
  store.undefine(pool.name);
  say(`Pool ${pool.name} has been undefined\n\n`);
}

function poolAutostart(key: string, options: StateOption & { disable?: boolean }): void {
  const store = poolStoreOf(options);
  const pool = store.find(key);
  store.setAutostart(pool.name, !options.disable);
  say(`Pool ${pool.name} ${options.disable ? 'unmarked' : 'marked'} as autostarted\n\n`);
}

function poolList(options: StateOption & { all?: boolean; inactive?: boolean; details?: boolean }): void {
  const store = poolStoreOf(options);
  const pools = store.all()
    .map((pool) => ({ pool, active: store.isActive(pool.name) }))
    .filter(({ active }) => (options.all ? true : options.inactive ? !active : active));
  const yesNo = (value: boolean) => (value ? 'yes' : 'no');
  if (!options.details) {
    say(formatTable(['Name', 'State', 'Autostart'], pools.map(({ pool, active }) => [pool.name, active ? 'active' : 'inactive', yesNo(store.autostart(pool.name))])));
    return;
  }
  say(formatTable(['Name', 'State', 'Autostart', 'Persistent', 'Capacity', 'Allocation', 'Available'], pools.map(({ pool, active }) => {
    const usage = active ? poolUsage(pool) : null;
    const size = (bytes: number | undefined) => (bytes === undefined ? '-' : prettyCapacity(bytes));
    return [pool.name, active ? 'running' : 'inactive', yesNo(store.autostart(pool.name)), 'yes', size(usage?.capacity), size(usage?.allocation), size(usage?.available)];
  })));
}

function poolInfo(key: string, options: StateOption & { bytes?: boolean }): void {
  const store = poolStoreOf(options);
  const pool = store.find(key);
  const active = store.isActive(pool.name);
  const pairs: [string, string][] = [
    ['Name', pool.name], ['UUID', pool.uuid], ['State', active ? 'running' : 'inactive'], ['Persistent', 'yes'],
    ['Autostart', store.autostart(pool.name) ? 'yes' : 'no'],
  ];
  if (active) {
    const usage = poolUsage(pool);
    const size = (bytes: number) => (options.bytes ? String(bytes) : prettyCapacity(bytes));
    pairs.push(['Capacity', size(usage.capacity)], ['Allocation', size(usage.allocation)], ['Available', size(usage.available)]);
  }
  say(formatKeyValues(pairs));
}

function poolDumpxml(key: string, options: StateOption & { inactive?: boolean }): void {
  const store = poolStoreOf(options);
  const pool = store.find(key);
  say(`${poolToXml(pool, store.isActive(pool.name) && !options.inactive ? poolUsage(pool) : null)}\n`);
}

/**
 * Starts every pool marked for autostart that is not active (before the
 * domains, whose disks may be its volumes); one line per failure. Returns
 * whether all started.
 */
export function startAutostartedPools(options: StateOption): boolean {
  const store = poolStoreOf(options);
  let ok = true;
  for (const pool of store.all().filter((p) => store.autostart(p.name) && !store.isActive(p.name))) {
    try {
      checkPoolFolder(pool);
      store.setActive(pool.name, true);
      say(`Pool ${pool.name} started\n`);
    } catch (e) {
      if (exitStatusOf(e) === null) throw e;
      writeSync(2, `tsvmm: ${(e as Error).message}\n`);
      ok = false;
    }
  }
  return ok;
}

// ---- volumes -----------------------------------------------------------------------------------

function parseFormat(text: string | undefined, option: string): DiskFormat | undefined {
  if (text === undefined || text === 'raw' || text === 'qcow2') return text;
  throw new InputError(`${option} ${text}: tsvmm's volumes are raw or qcow2`);
}

interface VolCreateOptions extends StateOption {
  format?: string;
  backingVol?: string;
  backingVolFormat?: string;
}

function volCreateAs(poolKey: string, name: string, capacity: string, options: VolCreateOptions): void {
  const store = poolStoreOf(options);
  const pool = activePool(store, poolKey);
  const format = parseFormat(options.format, '--format') ?? 'raw';
  let backing: { path: string; format: DiskFormat } | undefined;
  if (options.backingVolFormat !== undefined && options.backingVol === undefined) throw new InputError('--backing-vol-format needs --backing-vol');
  if (options.backingVol !== undefined) {
    // By name in this pool, as libvirt looks it up first; else by path.
    const path = lookupVolume(pool, options.backingVol)?.path ?? findVolumeOf(store, options.backingVol, undefined).volume.path;
    backing = { path, format: parseFormat(options.backingVolFormat, '--backing-vol-format') ?? probeFormat(path) };
  }
  createVolume(pool, { name, capacity: parseVolumeSize(capacity), format, ...(backing ? { backing } : {}) });
  say(`Vol ${name} created\n\n`);
}

function volCreate(poolKey: string, file: string, options: StateOption): void {
  const pool = activePool(poolStoreOf(options), poolKey);
  const volume = parseVolumeXml(readTextFile(file), file);
  createVolume(pool, volume);
  say(`Vol ${volume.name} created from ${file}\n\n`);
}

function volList(poolKey: string, options: StateOption & { details?: boolean }): void {
  const volumes = listVolumes(activePool(poolStoreOf(options), poolKey));
  if (!options.details) {
    say(formatTable(['Name', 'Path'], volumes.map((v) => [v.name, v.path])));
    return;
  }
  say(formatTable(['Name', 'Path', 'Type', 'Capacity', 'Allocation'],
    volumes.map((v) => [v.name, v.path, 'file', prettyCapacity(v.capacity), prettyCapacity(v.allocation)])));
}

interface VolOptions extends StateOption {
  pool?: string;
}

function volInfo(key: string, options: VolOptions & { bytes?: boolean }): void {
  const { volume } = findVolumeOf(poolStoreOf(options), key, options.pool);
  const size = (bytes: number) => (options.bytes ? `${bytes} bytes` : prettyCapacity(bytes));
  say(formatKeyValues([['Name', volume.name], ['Type', 'file'], ['Capacity', size(volume.capacity)], ['Allocation', size(volume.allocation)]]));
}

function volPath(key: string, options: VolOptions): void {
  say(`${findVolumeOf(poolStoreOf(options), key, options.pool).volume.path}\n\n`);
}

function volDumpxml(key: string, options: VolOptions): void {
  say(`${volumeToXml(findVolumeOf(poolStoreOf(options), key, options.pool).volume)}\n`);
}

function volDelete(key: string, options: VolOptions, locks: ByteLocks = ofdByteLocks): void {
  const { volume } = findVolumeOf(poolStoreOf(options), key, options.pool);
  deleteVolume(volume, locks);
  say(`Vol ${volume.name} deleted\n\n`);
}

/** A copy of the volume, in the same pool and format, its backing chain flattened (libvirt copies with qemu-img convert). */
async function volClone(key: string, newName: string, options: VolOptions): Promise<void> {
  const { pool, volume } = findVolumeOf(poolStoreOf(options), key, options.pool);
  checkVolumeName(newName);
  if (existsSync(join(pool.path, newName))) throw new InputError(`storage vol '${newName}' already exists in pool '${pool.name}'`);
  const result = await imgConvert(volume.path, join(pool.path, newName), { format: volume.format, outputFormat: volume.format });
  if (result.status !== 0) {
    writeSync(2, result.stderr);
    throw new InputError(`cannot clone vol '${volume.name}'`);
  }
  say(`Vol ${newName} cloned from ${volume.name}\n\n`);
}

/**
 * virsh vol-resize: CAPACITY is the new size; with --delta it is added; a
 * leading "-" (with --shrink) takes it away. A smaller size needs --shrink.
 */
function volResize(key: string, capacity: string, options: VolOptions & { delta?: boolean; shrink?: boolean }): void {
  const { volume } = findVolumeOf(poolStoreOf(options), key, options.pool);
  const negative = capacity.startsWith('-');
  if (negative && !options.shrink) throw new InputError('negative size requires --shrink');
  const bytes = parseVolumeSize(negative ? capacity.slice(1) : capacity);
  const size = negative ? volume.capacity - bytes : options.delta ? volume.capacity + bytes : bytes;
  if (size <= 0) throw new InputError(`vol-resize ${capacity}: the new capacity of vol '${volume.name}' would be ${size} bytes`);
  if (size < volume.capacity && !options.shrink) {
    throw new InputError(`cannot shrink vol '${volume.name}' below its capacity of ${volume.capacity} bytes without --shrink`);
  }
  resizeImage(volume.path, size, { format: volume.format, shrink: options.shrink ?? false, locks: ofdByteLocks });
  say(`Size of volume '${volume.name}' successfully changed to ${capacity}\n\n`);
}

interface TransferOptions extends VolOptions {
  offset?: string;
  length?: string;
}

const CHUNK = 2 ** 20;

function openFile(path: string, flags: string, what: string): number {
  try {
    return openSync(path, flags, 0o644);
  } catch (e) {
    throw new InputError(`cannot open ${what} ${path}: ${describeFsError(e)}`);
  }
}

/** Copies up to `length` bytes (all when undefined) from `from` at `fromOffset` to `to` at `toOffset`; returns the count. */
function copyBytes(from: number, fromOffset: number, to: number, toOffset: number, length: number | undefined): number {
  const buffer = Buffer.alloc(CHUNK);
  let copied = 0;
  for (;;) {
    const want = length === undefined ? CHUNK : Math.min(CHUNK, length - copied);
    if (want === 0) return copied;
    const got = readSync(from, buffer, 0, want, fromOffset + copied);
    if (got === 0) return copied;
    for (let done = 0; done < got;) done += writeSync(to, buffer, done, got - done, toOffset + copied + done);
    copied += got;
  }
}

function transferRange(options: TransferOptions): { offset: number; length: number | undefined } {
  return {
    offset: options.offset === undefined ? 0 : parseVolumeSize(options.offset),
    length: options.length === undefined ? undefined : parseVolumeSize(options.length),
  };
}

/**
 * The file's bytes become the volume's (at --offset, at most --length of
 * them); a whole-file upload makes the volume exactly the file. Refused
 * while a VM has the volume open.
 */
function volUpload(key: string, file: string, options: TransferOptions, locks: ByteLocks = ofdByteLocks): void {
  const { volume } = findVolumeOf(poolStoreOf(options), key, options.pool);
  const { offset, length } = transferRange(options);
  const lock = ImageLock.acquire(volume.path, 'write', locks);
  const source = openFile(file, 'r', 'the file to upload');
  try {
    const target = openFile(volume.path, 'r+', 'the volume');
    try {
      const copied = copyBytes(source, 0, target, offset, length);
      if (options.offset === undefined && options.length === undefined) ftruncateSync(target, copied);
    } finally {
      closeSync(target);
    }
  } finally {
    closeSync(source);
    lock.release();
  }
}

/** The volume's file (from --offset, at most --length bytes) into FILE, as libvirt streams it. */
function volDownload(key: string, file: string, options: TransferOptions, locks: ByteLocks = ofdByteLocks): void {
  const { volume } = findVolumeOf(poolStoreOf(options), key, options.pool);
  const { offset, length } = transferRange(options);
  const lock = ImageLock.acquire(volume.path, 'read', locks);
  const source = openFile(volume.path, 'r', 'the volume');
  try {
    const target = openFile(file, 'w', 'the file to download to');
    try {
      copyBytes(source, offset, target, 0, length);
    } finally {
      closeSync(target);
    }
  } finally {
    closeSync(source);
    lock.release();
  }
}

// ---- the command line --------------------------------------------------------------------------

export function registerPoolCommands(cli: Command): void {
  const verb = (name: string, description: string) => cli.command(name).description(description)
    .option('--state-dir <dir>', 'where definitions live (default: /var/lib/tsvmm and /run/tsvmm as root, the XDG folders otherwise; or $TSVMM_STATE_DIR)');
  const poolArgument = ['<pool>', 'pool name or UUID'] as const;
  const volArgument = ['<vol>', 'volume name (with --pool) or path'] as const;
  const volVerb = (name: string, description: string) => verb(name, description).argument(...volArgument).option('--pool <pool>', 'the pool the volume is in');

  verb('pool-define-as', 'define a storage pool (dir: a folder of image files)').argument('<name>').argument('<type>', 'dir')
    .option('--target <folder>', 'the pool\'s folder').action(poolDefineAs);
  verb('pool-define', 'define a storage pool from libvirt pool XML').argument('<file>').action(poolDefine);
  verb('pool-build', 'create the pool\'s folder').argument(...poolArgument).action(poolBuild);
  verb('pool-start', 'start (activate) a pool').argument(...poolArgument).action(poolStart);
  verb('pool-destroy', 'stop (deactivate) a pool; its volumes stay').argument(...poolArgument).action(poolDestroy);
  verb('pool-undefine', 'remove an inactive pool\'s definition; its folder stays').argument(...poolArgument).action(poolUndefine);
  verb('pool-autostart', 'mark a pool to be started by start-autostarted').argument(...poolArgument)
    .option('--disable', 'unmark it').action(poolAutostart);
  verb('pool-list', 'list pools').option('--all', 'include inactive pools').option('--inactive', 'only inactive pools')
    .option('--details', 'with capacity and allocation').action(poolList);
  verb('pool-info', 'pool information').argument(...poolArgument).option('--bytes', 'sizes in bytes').action(poolInfo);
  verb('pool-dumpxml', 'the pool\'s XML').argument(...poolArgument).option('--inactive', 'without the running pool\'s usage').action(poolDumpxml);

  verb('vol-create-as', 'create a volume (SIZE like 10M or 1G; bytes without a unit)').argument(...poolArgument).argument('<name>').argument('<capacity>')
    .option('--format <format>', 'raw (default) or qcow2').option('--backing-vol <vol>', 'a qcow2 overlay of this volume (name or path)')
    .option('--backing-vol-format <format>', 'the backing volume\'s format (probed when not given)').action(volCreateAs);
  verb('vol-create', 'create a volume from libvirt volume XML').argument(...poolArgument).argument('<file>').action(volCreate);
  verb('vol-list', 'list a pool\'s volumes').argument(...poolArgument).option('--details', 'with type, capacity and allocation').action(volList);
  volVerb('vol-info', 'volume information').option('--bytes', 'sizes in bytes').action(volInfo);
  volVerb('vol-path', 'the volume\'s path').action(volPath);
  volVerb('vol-dumpxml', 'the volume\'s XML').action(volDumpxml);
  volVerb('vol-delete', 'delete a volume (refused while a VM uses it)').action((key: string, o: VolOptions) => volDelete(key, o));
  volVerb('vol-clone', 'copy a volume in its pool (backing chain flattened)').argument('<newname>').action(volClone);
  volVerb('vol-resize', 'change a volume\'s capacity (--delta: add it; -SIZE with --shrink: take it away)').argument('<capacity>')
    .option('--delta', 'add CAPACITY to the current capacity').option('--shrink', 'allow a smaller capacity (data past it is lost)').action(volResize);
  volVerb('vol-upload', 'write a file\'s bytes into a volume').argument('<file>').option('--offset <bytes>', 'where in the volume')
    .option('--length <bytes>', 'at most this many bytes').action((key: string, file: string, o: TransferOptions) => volUpload(key, file, o));
  volVerb('vol-download', 'copy a volume\'s bytes into a file').argument('<file>').option('--offset <bytes>', 'where in the volume')
    .option('--length <bytes>', 'at most this many bytes').action((key: string, file: string, o: TransferOptions) => volDownload(key, file, o));
}
