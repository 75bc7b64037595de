// Whether a domain runs, told by the kernel rather than by a pid file. The
// starter takes an exclusive OFD lock on byte 0 of the domain's lock file and
// hands the locked descriptor to the domain's `tsvmm run` process, which
// keeps it open for its whole life: the lock is held exactly as long as that
// process lives (a SIGKILL releases it), and of two racing starts only one
// can take it.
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { ofdByteLocks } from '../kvm/index.ts';

const RUNNING_BYTE = 0;

function openLockFile(path: string): number {
  mkdirSync(dirname(path), { recursive: true });
  return openSync(path, 'a+', 0o600);
}

/** The held lock of a domain being started; its fd goes to the domain's process. */
export class RunLock {
  private constructor(readonly fd: number) {}

  /** Takes the lock, or null when the domain runs (or is being started) already. */
  static tryAcquire(path: string): RunLock | null {
    const fd = openLockFile(path);
    if (ofdByteLocks.exclusive(fd, RUNNING_BYTE)) return new RunLock(fd);
    closeSync(fd);
    return null;
  }

  /** Closes this process's descriptor: the lock stays held while the domain's process keeps its copy. */
  close(): void {
    closeSync(this.fd);
  }
}

/** True while some process holds the domain's lock: it runs, or is being started. */
export function runLockHeld(path: string): boolean {
  const fd = openLockFile(path);
  try {
    return ofdByteLocks.heldElsewhere(fd, RUNNING_BYTE);
  } finally {
    closeSync(fd);
  }
}
