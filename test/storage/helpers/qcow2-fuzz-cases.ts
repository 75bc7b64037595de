// The cases of the qcow2 fuzz target (test/storage/qcow2-fuzz.test.ts). They
// run in a worker thread, so that the test can stop one that never ends; each
// case is replayable from its own seed.
//
// - shadow: random writes, reads, flushes and reopens of a fresh image,
//   compared byte for byte with a plain buffer; some end with `qemu-img check`.
// - corrupt: random bytes of a small image's metadata (header fields, L1 and
//   L2 tables, refcount table and blocks) changed, then random requests.
//   Anything tsvmm throws must be one of its one-line errors (an InputError,
//   or an ImageIoError where a corrupt offset makes the host refuse a write),
//   never a TypeError or a RangeError, and no request may change
//   the header's first 72 bytes (the refcount table's place, bytes 48-59,
//   excepted: a legitimate move when it fills up).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { workerData, parentPort } from 'node:worker_threads';
import { InputError } from '../../../src/errors.ts';
import { ImageIoError } from '../../../src/storage/errors.ts';
import { createQcow2 } from '../../../src/storage/qcow2/create.ts';
import { Qcow2Image } from '../../../src/storage/qcow2/qcow2-image.ts';
import { readBytes, readU64, writeBytes } from './patch.ts';
import { randomInt, seededRandom } from './images.ts';

export type CaseKind = 'shadow' | 'corrupt';

/** Which kind a case seed runs: one in three corrupts metadata. */
export function kindOf(seed: number): CaseKind {
  return seed % 3 === 0 ? 'corrupt' : 'shadow';
}

export interface FuzzRun {
  firstSeed: number;
  cases: number;
  /** Shadow cases whose index is a multiple of this end with `qemu-img check`. */
  qemuCheckEvery: number;
  /** Int32 [0]: the seed of the case in progress, for the watchdog's message. */
  progress: SharedArrayBuffer;
}

class FuzzFailure extends Error {}

function fail(message: string): never {
  throw new FuzzFailure(message);
}

const OFFSET_MASK = 0x00fffffffffffe00n;

function newImage(dir: string, random: () => number, size: number): { path: string; clusterSize: number; version: 2 | 3 } {
  const path = join(dir, `case.qcow2`);
  rmSync(path, { force: true });
  const clusterSize = [512, 4096, 65536][randomInt(random, 3)]!;
  const version = random() < 0.5 ? 2 : 3;
  createQcow2(path, { size, clusterSize, version });
  return { path, clusterSize, version };
}

/** A request of random place and length: sector-aligned mostly, any byte sometimes. */
function randomRange(random: () => number, size: number, clusterSize: number): { offset: number; length: number } {
  const aligned = random() < 0.9;
  const unit = aligned ? 512 : 1;
  const length = Math.max(1, randomInt(random, (3 * clusterSize) / unit) * unit || unit);
  const capped = Math.min(length, size);
  const offset = randomInt(random, Math.floor((size - capped) / unit) + 1) * unit;
  return { offset, length: capped };
}

function randomBytes(random: () => number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  // Runs of one value, and zeros now and then: zero and partial clusters both happen.
  const value = random() < 0.15 ? 0 : 1 + randomInt(random, 255);
  bytes.fill(value);
  for (let i = 0; i < length; i += 512) bytes[i] = randomInt(random, 256);
  return bytes;
}

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

export function shadowCase(seed: number, dir: string, qemuCheck: boolean): void {
  const random = seededRandom(seed);
  const size = (1 + randomInt(random, 16)) * 128 * 1024;
  const { path, clusterSize } = newImage(dir, random, size);
  const shadow = new Uint8Array(size);
  const corruption = (message: string) => fail(`reported corruption of a sound image: ${message}`);
  let image = new Qcow2Image(path, { onCorruption: corruption });
  try {
    const operations = 5 + randomInt(random, 40);
    for (let op = 0; op < operations; op++) {
      const choice = random();
      const { offset, length } = randomRange(random, size, clusterSize);
      if (choice < 0.55) {
        const data = randomBytes(random, length);
        image.write(offset, data);
        shadow.set(data, offset);
      } else if (choice < 0.9) {
        const got = new Uint8Array(length);
        image.read(offset, got);
        const at = firstDifference(got, shadow.subarray(offset, offset + length));
        if (at >= 0) fail(`operation ${op}: byte ${offset + at} reads ${got[at]}, wrote ${shadow[offset + at]}`);
      } else if (choice < 0.95) {
        image.flush();
      } else {
        image.close();
        image = new Qcow2Image(path, { onCorruption: corruption });
      }
    }
    const all = new Uint8Array(size);
    image.read(0, all);
    const at = firstDifference(all, shadow);
    if (at >= 0) fail(`at the end: byte ${at} reads ${all[at]}, wrote ${shadow[at]}`);
  } finally {
    image.close();
  }
  if (qemuCheck) {
    const check = spawnSync('qemu-img', ['check', path], { encoding: 'utf8' });
    if (check.status !== 0) fail(`qemu-img check: exit ${check.status}: ${check.stderr}${check.stdout}`);
  }
}

/** [offset, length] of each metadata structure of a small image, from its header and tables. */
function metadataRegions(path: string, clusterSize: number, version: number): [number, number][] {
  const regions: [number, number][] = [[24, version === 3 ? 80 : 48]];  // size .. header_length (v3) or .. snapshots
  const l1 = Number(readU64(path, 40));
  const l1Size = new DataView(readBytes(path, 36, 4).buffer).getUint32(0);
  regions.push([l1, l1Size * 8]);
  for (let i = 0; i < l1Size; i++) {
    const l2 = Number(readU64(path, l1 + i * 8) & OFFSET_MASK);
    if (l2) regions.push([l2, clusterSize]);
  }
  const table = Number(readU64(path, 48));
  regions.push([table, clusterSize]);
  for (let i = 0; i < clusterSize / 8; i++) {
    const block = Number(readU64(path, table + i * 8) & OFFSET_MASK);
    if (block) regions.push([block, clusterSize]);
  }
  return regions;
}

/** The header's first 72 bytes, bar the refcount table's place (48-59), which may move legitimately. */
function guardedHeader(path: string): Uint8Array {
  const bytes = readBytes(path, 0, 72);
  bytes.fill(0, 48, 60);
  return bytes;
}

export function corruptCase(seed: number, dir: string): void {
  const random = seededRandom(seed);
  const size = (1 + randomInt(random, 8)) * 128 * 1024;
  const { path, clusterSize, version } = newImage(dir, random, size);
  const writer = new Qcow2Image(path);
  for (let i = 0, n = 1 + randomInt(random, 8); i < n; i++) {
    const { offset, length } = randomRange(random, size, clusterSize);
    writer.write(offset, randomBytes(random, length));
  }
  writer.close();

  const regions = metadataRegions(path, clusterSize, version);
  for (let i = 0, n = 1 + randomInt(random, 4); i < n; i++) {
    const [start, length] = regions[randomInt(random, regions.length)]!;
    const at = start + randomInt(random, length);
    const value = random() < 0.5 ? (readBytes(path, at, 1)[0]! ^ (1 << randomInt(random, 8))) : randomInt(random, 256);
    writeBytes(path, at, Uint8Array.of(value));
  }
  const header = guardedHeader(path);
  const expectOwnError = (what: string, e: unknown) => {
    if (!(e instanceof InputError) && !(e instanceof ImageIoError)) fail(`${what} threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}, not an InputError or ImageIoError`);
  };
  const checkHeader = (what: string) => {
    const at = firstDifference(guardedHeader(path), header);
    if (at >= 0) fail(`${what} changed header byte ${at}`);
  };

  let image: Qcow2Image;
  try {
    image = new Qcow2Image(path, { onCorruption: () => {}, readOnly: random() < 0.2 });
  } catch (e) {
    expectOwnError('opening', e);
    return;
  }
  try {
    for (let op = 0, n = 1 + randomInt(random, 12); op < n; op++) {
      const { offset, length } = randomRange(random, size, clusterSize);
      const choice = random();
      const what = `operation ${op}`;
      try {
        if (choice < 0.5) image.write(offset, randomBytes(random, length));
        else if (choice < 0.85) image.read(offset, new Uint8Array(length));
        else if (choice < 0.95) image.blockStatus(offset, length);
        else image.flush();
      } catch (e) {
        expectOwnError(what, e);
      }
      checkHeader(what);
    }
  } finally {
    try {
      image.close();
    } catch (e) {
      expectOwnError('closing', e);
    }
  }
  checkHeader('closing');
}

/** Runs in the worker: the cases of `run`, reporting the first failure. */
function runCases(run: FuzzRun): void {
  const progress = new Int32Array(run.progress);
  const dir = mkdtempSync(join(tmpdir(), 'tsvmm-fuzz-'));
  try {
    for (let i = 0; i < run.cases; i++) {
      const seed = run.firstSeed + i;
      Atomics.store(progress, 0, seed);
      try {
        if (kindOf(seed) === 'corrupt') corruptCase(seed, dir);
        else shadowCase(seed, dir, run.qemuCheckEvery > 0 && i % run.qemuCheckEvery === 0);
      } catch (e) {
        const message = e instanceof Error ? `${e.name === 'FuzzFailure' ? '' : `${e.name}: `}${e.message}` : String(e);
        parentPort!.postMessage({ kind: 'failed', seed, caseKind: kindOf(seed), message });
        return;
      }
    }
    parentPort!.postMessage({ kind: 'done' });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (parentPort && workerData && (workerData as FuzzRun).progress) runCases(workerData as FuzzRun);
