// Shared by the storage tests: scratch directories, a seeded random number
// generator, and qemu-img / qemu-io (the tests that need them are skipped,
// with the reason printed, where qemu-utils is not installed).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { openDisk, type BlockBackend } from '../../../src/storage/block-backend.ts';
import { checkQcow2 } from '../../../src/storage/qcow2/check.ts';

function runs(command: string): boolean {
  return spawnSync(command, ['--version'], { encoding: 'utf8' }).status === 0;
}

export const hasQemu = runs('qemu-img') && runs('qemu-io');
if (!hasQemu) console.warn('tsvmm storage tests: qemu-img/qemu-io not found (apt-get install qemu-utils): skipping the QEMU interop tests');

export interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function run(command: string, args: string[], options: { cwd?: string } = {}): Run {
  const result = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 64 * 2 ** 20, ...options });
  if (result.error) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** qemu-img, which must succeed unless `allowFailure`. */
export function qemuImg(args: string[], options: { allowFailure?: boolean; cwd?: string } = {}): Run {
  const result = run('qemu-img', args, options);
  if (!options.allowFailure && result.status !== 0) throw new Error(`qemu-img ${args.join(' ')}: ${result.stderr || result.stdout}`);
  return result;
}

/** Runs qemu-io commands ("write -P 0xab 0 64k") on an image. */
export function qemuIo(file: string, commands: string[], format = 'qcow2'): void {
  const result = run('qemu-io', ['-f', format, ...commands.flatMap((c) => ['-c', c]), file]);
  if (result.status !== 0 || /error|failed/i.test(result.stdout + result.stderr)) {
    throw new Error(`qemu-io ${commands.join('; ')}: ${result.stderr || result.stdout}`);
  }
}

/** A fresh directory under the system's temporary directory, and how to remove it. */
export function scratchDir(): { dir: string; path: (name: string) => string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'tsvmm-storage-'));
  return { dir, path: (name) => join(dir, name), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** mulberry32: the same sequence for the same seed, so a failure can be replayed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

export function randomInt(random: () => number, below: number): number {
  return Math.floor(random() * below);
}

export function filled(length: number, byte: number): Uint8Array {
  return new Uint8Array(length).fill(byte);
}

/** Bytes that differ from sector to sector, so a misplaced sector shows. */
export function pattern(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  const random = seededRandom(seed);
  for (let i = 0; i < length; i += 4) new DataView(bytes.buffer).setUint32(i, (random() * 2 ** 32) >>> 0);
  return bytes;
}

/** The whole virtual disk, read through its backend. */
export function readAll(disk: BlockBackend): Uint8Array {
  const bytes = new Uint8Array(disk.size);
  disk.read(0, bytes);
  return bytes;
}

/** The whole virtual disk of the image at `path`, as tsvmm reads it (opened read-only, then closed). */
export function readImage(path: string): Uint8Array {
  const disk = openDisk(path, { readOnly: true });
  try {
    return readAll(disk);
  } finally {
    disk.close();
  }
}

/** Asserts equal bytes, naming the first difference instead of dumping megabytes. */
export function expectSame(actual: Uint8Array, expected: Uint8Array): void {
  expect(firstDifference(actual, expected), 'first differing byte').toBe(-1);
}

export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  if (Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length))) return -1;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/** tsvmm's check finds nothing at all in the qcow2 image, and so does qemu-img check where it is installed. */
export function expectClean(path: string): void {
  const report = checkQcow2(path);
  expect([...report.errors, ...report.leaks]).toEqual([]);
  if (!hasQemu) return;
  const check = qemuImg(['check', path], { allowFailure: true });
  expect(check.stdout + check.stderr).toMatch(/No errors were found on the image/);
  expect(check.status).toBe(0);
}
