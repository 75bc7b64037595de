// A snapshot file's RAM as a file of its own, page for page: FILE.ram beside
// FILE. Restoring maps it into the guest's RAM (private, copy on write)
// instead of reading it, so a restore costs the same whatever the RAM size:
// a page is read from the file when the guest first touches it (Firecracker's
// memory file). Zero pages are holes. Only a snapshot taken with the machine
// paused into a file uses it; a migration and `exec:` stream their RAM.
import { closeSync, fsyncSync, ftruncateSync, openSync, renameSync, statSync, writeSync } from 'node:fs';
import { InputError } from '../errors.ts';
import { mapFilePrivateOver } from '../kvm/index.ts';
import type { GuestMemory } from '../memory/index.ts';
import type { RamDescriptor } from '../memory/host-ram.ts';
import { PAGE_SIZE } from './format.ts';
import { nonZeroPages } from './ram-pages.ts';

/** Where each RAM range sits in the RAM file: what the snapshot stream records about it. */
export interface RamFileLayout {
  /** The file's name, beside the snapshot file. */
  file: string;
  /** Its size in bytes. */
  size: number;
  ranges: { guestAddress: number; size: number; offset: number }[];
}

/** Writes `memory`'s non-zero pages to `path` (atomically: a temporary name, then rename); returns its layout and the bytes written. */
export function writeRamFile(path: string, name: string, memory: GuestMemory): { layout: RamFileLayout; bytesWritten: number } {
  let offset = 0;
  const ranges = memory.ranges.map((r) => {
    const range = { guestAddress: r.guestAddress, size: r.size, offset };
    offset += r.size;
    return range;
  });
  const temporary = `${path}.tmp-${process.pid}`;
  const fd = openSync(temporary, 'w', 0o600);
  let bytesWritten = 0;
  try {
    ftruncateSync(fd, offset);
    for (const address of nonZeroPages(memory)) {
      const range = ranges.find((r) => address >= r.guestAddress && address < r.guestAddress + r.size)!;
      let at = range.offset + (address - range.guestAddress);
      for (const part of memory.slices(address, PAGE_SIZE)) {
        writeSync(fd, part, 0, part.length, at);
        at += part.length;
      }
      bytesWritten += PAGE_SIZE;
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temporary, path);
  return { layout: { file: name, size: offset, ranges }, bytesWritten };
}

/**
 * Maps the RAM file at `path` over the machine's RAM (not yet run), after
 * checking it is the file the snapshot describes: its size, and one range
 * per RAM range at the same guest addresses.
 */
export function mapRamFile(path: string, layout: RamFileLayout, ram: readonly RamDescriptor[]): void {
  let size: number;
  try {
    size = statSync(path).size;
  } catch (e) {
    throw new InputError(`${path}: the snapshot's RAM file cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): it must stay beside the snapshot`);
  }
  if (size !== layout.size) throw new InputError(`${path}: the snapshot's RAM file has ${size} bytes, expected ${layout.size} (truncated or replaced)`);
  const fits = layout.ranges.length === ram.length && layout.ranges.every((r, i) => r.guestAddress === ram[i]!.guestAddress && r.size === ram[i]!.size
    && Number.isSafeInteger(r.offset) && r.offset % PAGE_SIZE === 0 && r.offset + r.size <= size);
  if (!fits) throw new InputError(`${path}: the snapshot's RAM layout does not match this machine's RAM (damaged snapshot)`);
  const fd = openSync(path, 'r');
  try {
    layout.ranges.forEach((r, i) => mapFilePrivateOver(ram[i]!.hostAddress, r.size, fd, r.offset));
  } finally {
    // The mappings keep the file open.
    closeSync(fd);
  }
}
