// Files that a crash leaves either old or new, never half written: the
// bytes go to a temporary file beside the target, are synced, and replace
// the target with rename(2), which is atomic within a file system; the
// folder is synced too, so the rename itself survives a power cut.
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

function syncFolder(folder: string): void {
  const fd = openSync(folder, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function writeFileAtomic(path: string, contents: string | Uint8Array): void {
  const folder = dirname(path);
  mkdirSync(folder, { recursive: true });
  const temporary = join(folder, `.${basename(path)}.${process.pid}.tmp`);
  const fd = openSync(temporary, 'w', 0o644);
  try {
    writeFileSync(fd, contents);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(temporary, { force: true });
    throw e;
  }
  closeSync(fd);
  renameSync(temporary, path);
  syncFolder(folder);
}

/** Removes a file and makes the removal durable; no error when it is already gone. */
export function removeFileDurably(path: string): void {
  rmSync(path, { force: true });
  syncFolder(dirname(path));
}
