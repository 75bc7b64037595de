// `tsvmm snapshot save --qmp ENDPOINT FILE`: the VM's state (not its disks)
// into a file, through its monitor, the way one does it with QEMU: stop,
// migrate to the file, and cont if it was running.
import { statSync, writeSync } from 'node:fs';
import { resolve } from 'node:path';
import { InputError } from '../errors.ts';
import { QmpClient } from './qmp-client.ts';

const POLL_MS = 20;
/** A snapshot that has not finished in this time has failed. */
const SAVE_TIMEOUT_MS = 10 * 60 * 1000;

export async function snapshotSaveCommand(endpoint: string, file: string): Promise<number> {
  const client = await QmpClient.open(endpoint);
  try {
    const status = await client.execute('query-status') as { running: boolean; status: string };
    if (status.status !== 'running' && status.status !== 'paused') throw new InputError(`the VM is ${status.status}: nothing to snapshot`);
    const started = Date.now();
    if (status.running) await client.execute('stop');
    await client.execute('migrate', { uri: `file:${resolve(file)}` });
    for (;;) {
      const info = await client.execute('query-migrate') as { status: string; 'error-desc'?: string };
      if (info.status === 'completed') break;
      if (info.status === 'failed' || info.status === 'cancelled') throw new InputError(`snapshot to ${file} failed: ${info['error-desc'] ?? info.status}`);
      if (Date.now() - started > SAVE_TIMEOUT_MS) throw new InputError(`snapshot to ${file} did not finish in ${SAVE_TIMEOUT_MS / 1000} s`);
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    const ms = Date.now() - started;
    if (status.running) await client.execute('cont');
    writeSync(2, `tsvmm: saved ${file} (${(statSync(file).size / 2 ** 20).toFixed(1)} MiB in ${ms} ms); restore with: tsvmm run <the same options> --restore ${file}\n`);
    return 0;
  } catch (e) {
    if (e instanceof InputError) throw e;
    throw new InputError((e as Error).message);
  } finally {
    client.close();
  }
}
