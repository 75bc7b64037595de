// Builds what tests and benchmarks run: the firmware guests and the C
// baseline runner, each by its own shell script (binutils, cc).
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildFirmware, firmwarePath } from '../../firmware/firmware.ts';
import { PROJECT_ROOT } from '../../src/project-root.ts';

export { firmwarePath };

export const ROOT = PROJECT_ROOT;
export const C_RUNNER = join(ROOT, 'bench', 'c', 'build', 'kvm-flat');

let built = false;

/** Builds the firmware and the C runner (idempotent, cheap when up to date). */
export function buildArtifacts(): void {
  if (built) return;
  buildFirmware();
  execFileSync('bash', [join(ROOT, 'bench', 'c', 'build.sh')], { stdio: ['ignore', 'ignore', 'inherit'] });
  built = true;
}

/** exitloop's parameter block (firmware/exitloop.S): at file offset 8. */
export const ExitLoopOp = { OUT8: 0, IN8: 1, MMIO_WRITE32: 2, MMIO_READ32: 3, OUT32: 4, OUT16: 5 } as const;

export interface ExitLoopParams {
  iterations: number;
  op: number;
  port?: number;
  mmioAddress?: number;
  value?: number;
  /** Privilege level of the loop: 3 (default) or 0. On PVM an exit from ring 0 is ~7× cheaper. */
  cpl?: 0 | 3;
}

export const EXIT_LOOP_PORT = 0x520;
export const EXIT_LOOP_MMIO = 0xd000_0000;

/** A copy of exitloop.bin with its parameter block set; returns the copy's path. */
export function exitLoopImage(params: ExitLoopParams): string {
  const image = Buffer.from(readFileSync(firmwarePath('exitloop')));
  if (image.readUInt32LE(8) !== 0x50565354) throw new Error('exitloop.bin: parameter block magic not found');
  image.writeUInt32LE(params.iterations, 12);
  image.writeUInt32LE(params.op, 16);
  image.writeUInt32LE(params.port ?? EXIT_LOOP_PORT, 20);
  image.writeBigUInt64LE(BigInt(params.mmioAddress ?? EXIT_LOOP_MMIO), 24);
  image.writeUInt32LE(params.value ?? 0x2a, 32);
  image.writeUInt32LE(params.cpl ?? 3, 36);
  const path = join(mkdtempSync(join(tmpdir(), 'tsvmm-exitloop-')), 'exitloop.bin');
  writeFileSync(path, image);
  return path;
}

/** serial-flood's parameter block (firmware/serial-flood.S): at file offset 8. */
export interface SerialFloodParams {
  /** Bytes to write to COM1. */
  count: number;
  /** The byte (default '.'). */
  byte?: number;
  /** After the last byte: exit (default), or spin until killed. */
  end?: 'exit' | 'spin';
}

/** A copy of serial-flood.bin with its parameter block set, written into `dir`; returns its path. */
export function serialFloodImage(dir: string, params: SerialFloodParams): string {
  const image = Buffer.from(readFileSync(firmwarePath('serial-flood')));
  if (image.readUInt32LE(8) !== 0x53565354) throw new Error('serial-flood.bin: parameter block magic not found');
  image.writeUInt32LE(params.count, 12);
  image.writeUInt32LE(params.byte ?? 0x2e, 16);
  image.writeUInt32LE(params.end === 'spin' ? 1 : 0, 20);
  const path = join(dir, `serial-flood-${params.count}-${params.end ?? 'exit'}.bin`);
  writeFileSync(path, image);
  return path;
}

/** The tsvmm command as a user runs it: node and the bin (compiled when dist/ is current). */
export const TSVMM_BIN = join(ROOT, 'src', 'cli', 'tsvmm.mjs');
