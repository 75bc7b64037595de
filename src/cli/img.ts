// tsvmm img: create, inspect, convert and check disk images, with
// qemu-img's command names, options and output where it makes sense.
//
//   tsvmm img create [-f raw|qcow2] [-b BACKING [-F fmt]] [-o cluster_size=N,compat=1.1] FILE [SIZE]
//   tsvmm img info [-f fmt] [--output json] FILE
//   tsvmm img convert [-f fmt] [-O fmt] [-o cluster_size=N,compat=1.1] [-U] SRC DST
//   tsvmm img check [-f fmt] [-r leaks|all] FILE
//   tsvmm img snapshot [-f fmt] -l | -c NAME | -a NAME | -d NAME FILE
//   tsvmm img resize [-f fmt] [--shrink] FILE [+|-]SIZE
//                                       exit 0 clean, 2 corruption, 3 leaked clusters only (after any repair)
import type { Command } from 'commander';
import { realpathSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { InputError } from '../errors.ts';
import { ofdByteLocks } from '../kvm/index.ts';
import { ImageIoError, openDisk, type BlockBackend, type DiskFormat } from '../storage/block-backend.ts';
import { imageInfo, snapshotJson, type ImageInfo, type SnapshotJson } from '../storage/image-info.ts';
import {
  applyInternalSnapshot, createInternalSnapshot, deleteInternalSnapshot, listInternalSnapshots,
} from '../storage/internal-snapshots.ts';
import { ImageLock, identityOf, lockImageChain, type ByteLocks } from '../storage/image-lock.ts';
import { probeFormat } from '../storage/open-disk.ts';
import { resizeImage, virtualSize } from '../storage/resize.ts';
import { checkExitStatus, checkQcow2, formatCheckReport } from '../storage/qcow2/check.ts';
import { repairQcow2, type RepairMode } from '../storage/qcow2/repair.ts';
import { checkClusterSize, createQcow2, DEFAULT_CLUSTER_SIZE } from '../storage/qcow2/create.ts';
import { createRaw } from '../storage/raw.ts';

/** What a command prints and its exit status. */
export interface ImgOutput {
  status: number;
  stdout: string;
  stderr: string;
}

const done = (stdout = '', status = 0, stderr = ''): ImgOutput => ({ status, stdout, stderr });

const SIZE_UNITS: Record<string, number> = { '': 1, B: 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40, P: 2 ** 50 };

/** A disk size as qemu-img reads it: bytes, or with a K/M/G/T/P suffix ("64M", "1.5G"). */
export function parseImageSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:i?B)?\s*$/i.exec(text);
  const bytes = m ? Number(m[1]) * SIZE_UNITS[m[2]!.toUpperCase()]! : NaN;
  if (!Number.isFinite(bytes) || bytes > Number.MAX_SAFE_INTEGER) {
    throw new InputError(`"${text}" is not a disk size (bytes, or a number with K, M, G or T: 64M, 1.5G)`);
  }
  return Math.floor(bytes);
}

function parseFormat(text: string | undefined, what: string): DiskFormat | undefined {
  if (text === undefined || text === 'raw' || text === 'qcow2') return text;
  throw new InputError(`${what} "${text}" is not a format tsvmm knows: raw or qcow2`);
}

interface CreateSettings {
  clusterSize: number;
  version: 2 | 3;
}

/** -o cluster_size=64K,compat=1.1: the qcow2 creation options tsvmm supports. */
function parseCreateOptions(list: string | undefined, format: DiskFormat): CreateSettings {
  const settings: CreateSettings = { clusterSize: DEFAULT_CLUSTER_SIZE, version: 3 };
  for (const item of list ? list.split(',') : []) {
    const [key, value] = item.split('=', 2) as [string, string | undefined];
    if (format !== 'qcow2') throw new InputError(`-o ${item}: raw images have no options`);
    if (key === 'cluster_size' && value) {
      settings.clusterSize = parseImageSize(value);
      checkClusterSize(settings.clusterSize);
    } else if (key === 'compat' && value) {
      if (value === '1.1' || value === 'v3') settings.version = 3;
      else if (value === '0.10' || value === 'v2') settings.version = 2;
      else throw new InputError(`-o compat=${value}: use 0.10 (version 2) or 1.1 (version 3)`);
    } else {
      throw new InputError(`-o ${item}: tsvmm knows cluster_size=SIZE and compat=0.10|1.1`);
    }
  }
  return settings;
}

/** Sizes are rounded up to whole 512-byte sectors, as qemu-img does. */
const roundToSector = (bytes: number) => Math.ceil(bytes / 512) * 512;

export interface CreateOptions {
  format?: string;
  backing?: string;
  backingFormat?: string;
  options?: string;
}

export function imgCreate(file: string, sizeText: string | undefined, options: CreateOptions): ImgOutput {
  const format = parseFormat(options.format ?? 'raw', '-f')!;
  const settings = parseCreateOptions(options.options, format);
  let size = sizeText === undefined ? undefined : roundToSector(parseImageSize(sizeText));
  let backingFormat = parseFormat(options.backingFormat, '-F');
  if (options.backingFormat && !options.backing) throw new InputError('-F names the format of a backing file: give one with -b');
  if (options.backing) {
    if (format !== 'qcow2') throw new InputError('a backing file (-b) needs -f qcow2');
    // The name is stored as given; relative names are relative to the new image's directory.
    const backingPath = isAbsolute(options.backing) ? options.backing : join(dirname(file), options.backing);
    if (resolve(backingPath) === resolve(file)) throw new InputError('an image cannot be its own backing file');
    backingFormat ??= probeFormat(backingPath);
    const backing = openDisk(backingPath, { format: backingFormat, readOnly: true });
    size ??= backing.size;
    backing.close();
  }
  if (size === undefined) throw new InputError('img create needs a SIZE (e.g. 64M), or a backing file (-b) to take it from');

  let details = `fmt=${format}`;
  // An image in use (by a VM here or in QEMU) is not emptied under its user.
  const lock = identityOf(file) === null ? null : ImageLock.acquire(file, 'write', ofdByteLocks);
  try {
    if (format === 'raw') {
      createRaw(file, size);
    } else {
      createQcow2(file, {
        size,
        clusterSize: settings.clusterSize,
        version: settings.version,
        ...(options.backing ? { backingFile: options.backing, backingFormat: backingFormat! } : {}),
      });
      details += ` cluster_size=${settings.clusterSize} compat=${settings.version === 3 ? '1.1' : '0.10'}`;
      if (options.backing) details += ` backing_file=${options.backing} backing_fmt=${backingFormat}`;
    }
  } finally {
    lock?.release();
  }
  return done(`Formatting '${file}', ${details} size=${size}\n`);
}

/** A size the way qemu-img prints one: three significant digits and a binary unit ("388 KiB"). */
export function formatImageSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  // qemu switches unit at 1000 of the smaller one, not 1024: 1000 KiB is "0.977 MiB".
  const exponent = bytes > 0 ? Math.floor(Math.log2(bytes * 1.024)) + 1 : 0;
  const unit = Math.max(0, Math.floor((exponent - 1) / 10));
  return `${Number((bytes / 2 ** (10 * unit)).toPrecision(3))} ${units[unit]}`;
}

export function formatImageInfo(info: ImageInfo): string {
  const lines = [
    `image: ${info.filename}`,
    `file format: ${info.format}`,
    `virtual size: ${formatImageSize(info['virtual-size'])} (${info['virtual-size']} bytes)`,
    `disk size: ${formatImageSize(info['actual-size'])}`,
  ];
  if (info['cluster-size'] !== undefined) lines.push(`cluster_size: ${info['cluster-size']}`);
  const backing = info['backing-filename'];
  if (backing !== undefined) {
    const full = info['full-backing-filename'];
    lines.push(`backing file: ${backing}${full !== undefined && full !== backing ? ` (actual path: ${full})` : ''}`);
  }
  if (info['backing-filename-format'] !== undefined) lines.push(`backing file format: ${info['backing-filename-format']}`);
  if (info.snapshots) lines.push('Snapshot list:', ...formatSnapshotTable(info.snapshots));
  const specific = info['format-specific']?.data;
  if (specific) {
    lines.push('Format specific information:');
    for (const [key, value] of Object.entries(specific)) lines.push(`    ${key.replace(/-/g, ' ')}: ${value}`);
  }
  return `${lines.join('\n')}\n`;
}

const two = (n: number) => String(n).padStart(2, '0');

/** The snapshot table as qemu-img prints it (bdrv_snapshot_dump): a heading line, then one line per snapshot, dates in local time. */
export function formatSnapshotTable(snapshots: readonly SnapshotJson[]): string[] {
  const lines = [`${'ID'.padEnd(10)}${'TAG'.padEnd(17)}${'VM SIZE'.padStart(8)}${'DATE'.padStart(20)}${'VM CLOCK'.padStart(13)}${'ICOUNT'.padStart(11)}`];
  for (const s of snapshots) {
    const d = new Date(s['date-sec'] * 1000);
    const date = `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
    const secs = s['vm-clock-sec'];
    const clock = `${two(Math.floor(secs / 3600))}:${two(Math.floor(secs / 60) % 60)}:${two(secs % 60)}.${String(Math.floor(s['vm-clock-nsec'] / 1e6)).padStart(3, '0')}`;
    lines.push(`${s.id.padEnd(9)} ${s.name.padEnd(16)} ${formatImageSize(s['vm-state-size']).padStart(8)}`
      + `${date.padStart(20)}${clock.padStart(13)}${(s.icount === undefined ? '' : String(s.icount)).padStart(11)}`);
  }
  return lines;
}

export function imgInfo(file: string, options: { format?: string; output?: string }): ImgOutput {
  const output = options.output ?? 'human';
  if (output !== 'human' && output !== 'json') throw new InputError(`--output ${output}: use human or json`);
  const info = imageInfo(file, parseFormat(options.format, '-f'));
  return done(output === 'json' ? `${JSON.stringify(info, null, 4)}\n` : formatImageInfo(info));
}

const COPY_CHUNK = 2 ** 20;
/** Chunks copied between two looks at the event loop (for SIGINT and SIGTERM). */
const CHUNKS_PER_YIELD = 16;

/**
 * Copies the virtual disk `src` into the new, empty image `dst`. Only what
 * the source's block status calls data is read (a backend without block
 * status is all data); all-zero grains in it are left out too, so zeros stay
 * holes in a raw file and unallocated clusters in a qcow2 one.
 */
export async function copyDisk(src: BlockBackend, dst: BlockBackend, options: { grain: number; interrupted?: () => boolean }): Promise<void> {
  const { grain } = options;
  const chunkSize = Math.max(grain, COPY_CHUNK);
  const chunk = new Uint8Array(chunkSize);
  const zeros = Buffer.alloc(grain);
  let chunks = 0;
  for (let offset = 0; offset < src.size;) {
    if (++chunks % CHUNKS_PER_YIELD === 0) {
      await new Promise((resolve) => setImmediate(resolve));
      if (options.interrupted?.()) throw new ConvertInterrupted();
    }
    const status = src.blockStatus(offset, src.size - offset);
    const extent = Math.min(Math.max(status.length, 1), src.size - offset);
    if (status.kind === 'zero') {
      offset += extent;
      continue;
    }
    const length = Math.min(chunkSize, extent);
    src.read(offset, chunk.subarray(0, length));
    // Consecutive grains with data go out in one write.
    let run: { start: number; end: number } | null = null;
    for (let at = 0; at < length; at += grain) {
      const end = Math.min(at + grain, length);
      if (!Buffer.from(chunk.buffer, at, end - at).equals(zeros.subarray(0, end - at))) {
        if (run) run.end = end;
        else run = { start: at, end };
        continue;
      }
      if (run) dst.write(offset + run.start, chunk.subarray(run.start, run.end));
      run = null;
    }
    if (run) dst.write(offset + run.start, chunk.subarray(run.start, run.end));
    offset += length;
  }
}

class ConvertInterrupted extends Error {}

export interface ConvertOptions {
  format?: string;
  outputFormat?: string;
  options?: string;
  /** -U: read the source even while a VM writes it (what it reads may be inconsistent). */
  forceShare?: boolean;
}

/** Catches SIGINT and SIGTERM while installed, so a convert can remove its half-written file. */
function catchStopSignals(): { caught: () => NodeJS.Signals | null; remove: () => void } {
  let caught: NodeJS.Signals | null = null;
  const onSignal = (signal: NodeJS.Signals) => { caught ??= signal; };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    caught: () => caught,
    remove: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

const SIGNAL_STATUS: Partial<Record<NodeJS.Signals, number>> = { SIGINT: 130, SIGTERM: 143 };

/**
 * qemu-img convert: the source (and its backing chain) locked for reading,
 * the destination written under a temporary name beside it and renamed over
 * it at the end, so a failed or interrupted convert leaves the user's file
 * as it was and no half-written one.
 */
export async function imgConvert(srcPath: string, dstPath: string, options: ConvertOptions, locks: ByteLocks = ofdByteLocks): Promise<ImgOutput> {
  const outputFormat = parseFormat(options.outputFormat ?? 'raw', '-O')!;
  const settings = parseCreateOptions(options.options, outputFormat);
  const format = parseFormat(options.format, '-f');
  const sourceLocks = lockImageChain(srcPath, { ...(format ? { format } : {}), readOnly: true, locks, forceShare: options.forceShare ?? false });
  let src: BlockBackend | null = null;
  let dstLock: ImageLock | null = null;
  let temporary: string | null = null;
  const signals = catchStopSignals();
  try {
    src = openDisk(srcPath, { ...(format ? { format } : {}), readOnly: true });
    const chain = sourceLocks.files;
    // Compared by device and inode: a symlink or a hard link is the same file.
    const dstIdentity = identityOf(dstPath);
    const same = chain.find((file) => file.identity === dstIdentity);
    if (same) {
      throw new InputError(same === chain[0]
        ? `convert: ${dstPath} is the source image ${srcPath} itself`
        : `convert: ${dstPath} is ${same.path}, a backing file of ${srcPath}`);
    }
    // Through a symlink, the file it points to is replaced; while another user has it open, nothing is.
    const target = dstIdentity === null ? dstPath : realpathSync(dstPath);
    if (dstIdentity !== null) {
      if (!statSync(target).isFile()) throw new InputError(`convert: ${dstPath} exists and is not a regular file`);
      dstLock = ImageLock.acquire(target, 'write', locks);
    }
    temporary = join(dirname(target), `.${basename(target)}.tsvmm-convert-${process.pid}`);
    if (outputFormat === 'raw') createRaw(temporary, src.size);
    else createQcow2(temporary, { size: src.size, clusterSize: settings.clusterSize, version: settings.version });
    const dst = openDisk(temporary, { format: outputFormat });
    try {
      await copyDisk(src, dst, {
        grain: outputFormat === 'qcow2' ? settings.clusterSize : 4096,
        interrupted: () => signals.caught() !== null,
      });
      dst.flush();
    } finally {
      dst.close();
    }
    if (signals.caught()) throw new ConvertInterrupted();
    renameSync(temporary, target);
    temporary = null;
  } catch (e) {
    if (!(e instanceof ConvertInterrupted)) throw e;
    const signal = signals.caught()!;
    return done('', SIGNAL_STATUS[signal] ?? 1, `tsvmm: img convert: stopped by ${signal}; ${dstPath} was not written\n`);
  } finally {
    signals.remove();
    if (temporary !== null) removeQuietly(temporary);
    dstLock?.release();
    src?.close();
    sourceLocks.release();
  }
  return done();
}

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new ImageIoError(`${path}: cannot remove the unfinished image: ${(e as Error).message}`);
  }
}

export function imgCheck(file: string, options: { format?: string; repair?: string }): ImgOutput {
  const repair = options.repair;
  if (repair !== undefined && repair !== 'leaks' && repair !== 'all') throw new InputError(`-r ${repair}: use leaks or all`);
  const format = parseFormat(options.format, '-f') ?? probeFormat(file);
  if (format === 'raw') return done(`${file} is a raw image: it has no metadata to check.\n`);
  if (repair !== undefined) return imgRepair(file, repair);
  const report = checkQcow2(file);
  const { problems, summary } = formatCheckReport(report);
  return done(summary, checkExitStatus(report), problems);
}

/** qemu-img check -r: the problems and the repairs on stderr; what was repaired and the double check on stdout. */
function imgRepair(file: string, mode: RepairMode): ImgOutput {
  const result = repairQcow2(file, mode);
  const first = formatCheckReport(result.before);
  const stderr = first.problems + result.actions.map((line) => `${line}\n`).join('');
  const after = formatCheckReport(result.after);
  if (result.leaksFixed + result.corruptionsFixed === 0) {
    return done(after.summary, checkExitStatus(result.after), stderr + after.problems);
  }
  const repaired = [
    'The following inconsistencies were found and repaired:',
    '',
    `    ${result.leaksFixed} leaked clusters`,
    `    ${result.corruptionsFixed} corruptions`,
    '',
    'Double checking the fixed image now...',
    '',
  ].join('\n');
  return done(repaired + after.summary, checkExitStatus(result.after), stderr + after.problems);
}

export interface SnapshotCommandOptions {
  format?: string;
  list?: boolean;
  create?: string;
  apply?: string;
  delete?: string;
}

/** qemu-img snapshot: list, create, apply or delete an image's internal snapshots (one at a time). */
export function imgSnapshot(file: string, options: SnapshotCommandOptions, locks: ByteLocks = ofdByteLocks): ImgOutput {
  const actions = [options.list && '-l', options.create !== undefined && '-c', options.apply !== undefined && '-a', options.delete !== undefined && '-d']
    .filter((a) => a !== false && a !== undefined);
  if (actions.length !== 1) throw new InputError('img snapshot needs exactly one of -l, -c NAME, -a NAME, -d NAME');
  const format = parseFormat(options.format, '-f');
  const settings = { ...(format ? { format } : {}), locks };
  if (options.create !== undefined) createInternalSnapshot(file, options.create, settings);
  else if (options.apply !== undefined) applyInternalSnapshot(file, options.apply, settings);
  else if (options.delete !== undefined) deleteInternalSnapshot(file, options.delete, settings);
  else {
    const snapshots = listInternalSnapshots(file, settings);
    return done(snapshots.length > 0 ? `${['Snapshot list:', ...formatSnapshotTable(snapshots.map(snapshotJson))].join('\n')}\n` : '');
  }
  return done();
}

/**
 * A new size as qemu-img resize reads it: SIZE, or +SIZE / -SIZE relative to
 * the current one (`tsvmm img resize FILE -- -1G`, as with qemu-img).
 */
export function parseNewSize(text: string, currentSize: number): number {
  const sign = text.startsWith('+') ? 1 : text.startsWith('-') ? -1 : 0;
  const bytes = parseImageSize(sign === 0 ? text : text.slice(1));
  const size = sign === 0 ? bytes : currentSize + sign * bytes;
  if (size <= 0) throw new InputError(`img resize: the new size must be positive (${text} makes it ${size} bytes)`);
  return size;
}

export interface ResizeCommandOptions {
  format?: string;
  shrink?: boolean;
}

/** qemu-img resize: grow an image, or shrink it when --shrink says the data past the new end may go. */
export function imgResize(file: string, sizeText: string, options: ResizeCommandOptions, locks: ByteLocks = ofdByteLocks): ImgOutput {
  const format = parseFormat(options.format, '-f') ?? probeFormat(file);
  const size = parseNewSize(sizeText, virtualSize(file, format));
  resizeImage(file, size, { format, shrink: options.shrink ?? false, locks });
  return done('Image resized.\n');
}

export function registerImgCommand(cli: Command, setStatus: (status: number) => void): void {
  const print = (output: ImgOutput) => {
    if (output.stderr) writeSync(2, output.stderr);
    if (output.stdout) writeSync(1, output.stdout);
    setStatus(output.status);
  };
  const img = cli.command('img').description('create, inspect, convert and check disk images (raw, qcow2)');

  img.command('create')
    .description('create a disk image (SIZE like 64M or 1G; with -b, the backing file\'s size by default)')
    .argument('<file>')
    .argument('[size]')
    .option('-f, --format <fmt>', 'raw (default) or qcow2')
    .option('-b, --backing <file>', 'backing file (qcow2 only); a relative name is relative to FILE\'s directory')
    .option('-F, --backing-format <fmt>', 'the backing file\'s format (probed when not given)')
    .option('-o, --options <list>', 'qcow2 options: cluster_size=SIZE, compat=0.10|1.1')
    .action((file: string, size: string | undefined, options: CreateOptions) => print(imgCreate(file, size, options)));

  img.command('info')
    .description('show an image\'s format, sizes and backing file')
    .argument('<file>')
    .option('-f, --format <fmt>', 'raw or qcow2 (probed when not given)')
    .option('--output <fmt>', 'human (default) or json')
    .action((file: string, options: { format?: string; output?: string }) => print(imgInfo(file, options)));

  img.command('convert')
    .description('copy an image into a new one, flattening its backing chain; all-zero clusters are left out')
    .argument('<src>')
    .argument('<dst>')
    .option('-f, --format <fmt>', 'the source format (probed when not given)')
    .option('-O, --output-format <fmt>', 'raw (default) or qcow2')
    .option('-o, --options <list>', 'qcow2 options: cluster_size=SIZE, compat=0.10|1.1')
    .option('-U, --force-share', 'read the source even while a VM writes it (the copy may be inconsistent)')
    .action(async (src: string, dst: string, options: ConvertOptions) => print(await imgConvert(src, dst, options)));

  img.command('check')
    .description('check a qcow2 image\'s refcounts against its references (exit 0 clean, 2 corruption, 3 leaks only)')
    .argument('<file>')
    .option('-f, --format <fmt>', 'raw or qcow2 (probed when not given)')
    .option('-r, --repair <leaks|all>', 'repair leaked clusters, or all refcount errors too (then clears the corrupt bit)')
    .action((file: string, options: { format?: string; repair?: string }) => print(imgCheck(file, options)));

  img.command('snapshot')
    .description('list, create, apply or delete the internal snapshots of a qcow2 image (NAME: a snapshot\'s tag, or its ID)')
    .argument('<file>')
    .option('-f, --format <fmt>', 'qcow2 (probed when not given; raw images have no snapshots)')
    .option('-l, --list', 'list the snapshots')
    .option('-c, --create <name>', 'take a snapshot of the disk as it is now')
    .option('-a, --apply <name>', 'bring the disk back to a snapshot (the snapshot stays)')
    .option('-d, --delete <name>', 'delete a snapshot')
    .action((file: string, options: SnapshotCommandOptions) => print(imgSnapshot(file, options)));

  img.command('resize')
    .description('change an image\'s virtual size: SIZE, +SIZE or -SIZE (put -- before a negative one)')
    .argument('<file>')
    .argument('<size>')
    .option('-f, --format <fmt>', 'raw or qcow2 (probed when not given)')
    .option('--shrink', 'allow a smaller size: the data past the new end is deleted')
    .action((file: string, size: string, options: ResizeCommandOptions) => print(imgResize(file, size, options)));
}
