// Domain ids: a running domain's number in `virsh list`, 1, 2, 3... in the
// order domains start, as libvirt gives them. The counter is a file in the
// run folder (so a host reboot starts again at 1), read and advanced under an
// exclusive OFD lock, so two domains starting at once get different ids.
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { ofdByteLocks } from '../kvm/index.ts';
import { writeFileAtomic } from './atomic-file.ts';

/** Another start holds the counter for a moment only; waiting longer means something is wrong. */
const LOCK_WAIT_MS = 5_000;
const RETRY_MS = 5;

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

export function takeDomainId(runFolder: string): number {
  mkdirSync(runFolder, { recursive: true });
  const fd = openSync(join(runFolder, 'next-id.lock'), 'a+', 0o600);
  try {
    const deadline = Date.now() + LOCK_WAIT_MS;
    while (!ofdByteLocks.exclusive(fd, 0)) {
      if (Date.now() > deadline) throw new InputError(`${runFolder}/next-id.lock: still locked after ${LOCK_WAIT_MS / 1000} s`);
      sleepSync(RETRY_MS);
    }
    const counter = join(runFolder, 'next-id');
    let id = 1;
    try {
      const stored = Number(readFileSync(counter, 'utf8'));
      if (Number.isSafeInteger(stored) && stored > 0) id = stored;
    } catch {
      // No counter yet: the first domain since the host started.
    }
    writeFileAtomic(counter, `${id + 1}\n`);
    return id;
  } finally {
    closeSync(fd); // drops the lock
  }
}
