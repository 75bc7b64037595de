// The firmware guests as files: builds them with build.sh (binutils only)
// when they are missing or older than their sources.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../src/project-root.ts';

export const FIRMWARE_SOURCE_DIR = join(PROJECT_ROOT, 'firmware');
export const FIRMWARE_BUILD_DIR = join(FIRMWARE_SOURCE_DIR, 'build');

function newestSource(): number {
  const files = [
    ...readdirSync(FIRMWARE_SOURCE_DIR).filter((f) => f.endsWith('.S') || f.endsWith('.ld')).map((f) => join(FIRMWARE_SOURCE_DIR, f)),
    ...readdirSync(join(FIRMWARE_SOURCE_DIR, 'include')).map((f) => join(FIRMWARE_SOURCE_DIR, 'include', f)),
    ...readdirSync(join(FIRMWARE_SOURCE_DIR, 'multiboot')).map((f) => join(FIRMWARE_SOURCE_DIR, 'multiboot', f)),
    join(FIRMWARE_SOURCE_DIR, 'build.sh'),
  ];
  return Math.max(...files.map((f) => statSync(f).mtimeMs));
}

/** Builds every guest (bash firmware/build.sh); its errors (missing binutils) surface as they are. */
export function buildFirmware(): void {
  execFileSync('bash', [join(FIRMWARE_SOURCE_DIR, 'build.sh')], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** The path of firmware/build/<name>.bin, built first when absent or stale. */
export function firmwarePath(name: string): string {
  return builtFirmware(`firmware/${name}.S`, `${name}.bin`);
}

/** The path of firmware/build/<name>.elf for firmware/multiboot/<name>.S, a multiboot kernel. */
export function multibootFirmwarePath(name: string): string {
  return builtFirmware(`firmware/multiboot/${name}.S`, `${name}.elf`);
}

function builtFirmware(source: string, file: string): string {
  const path = join(FIRMWARE_BUILD_DIR, file);
  if (!existsSync(path) || statSync(path).mtimeMs < newestSource()) buildFirmware();
  if (!existsSync(path)) throw new Error(`${source} did not build to ${path}`);
  return path;
}
