// User networking needs no privilege: tsvmm runs as nobody, with no
// capabilities and only /dev/kvm to use (test/helpers/unprivileged.ts), and
// `--net user,hostfwd=...` still gives its guest a network: tsvmm starts
// passt, which runs as nobody too and listens on the forwarded host port.
// The guest is the counter (a multiboot guest with a virtio-net device it
// does not drive): this checks the privileges, the Linux guest's DHCP and
// traffic as nobody are test/boots/network-user.boot.ts.
import { readFileSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { counterKernel } from '../bench/lib/counter-guest.ts';
import { hasKvm } from './helpers/kvm.ts';
import { freePort } from './helpers/tsvmm-process.ts';
import { childPids, NOBODY, processCredentials, unprivilegedUnavailable, UnprivilegedTsvmm } from './helpers/unprivileged.ts';

const unavailable = !hasKvm ? 'no /dev/kvm'
  : spawnSync('passt', ['--version']).error !== undefined ? 'passt is not installed (Debian package passt)'
    : unprivilegedUnavailable;
if (unavailable) console.warn(`unprivileged user networking test: skipped: ${unavailable}`);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** 'open' when 127.0.0.1:port accepts a connection, else the error's code. */
function probe(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port, timeout: 5000 }, () => {
      socket.destroy();
      resolve('open');
    });
    socket.on('timeout', () => {
      socket.destroy();
      resolve('ETIMEDOUT');
    });
    socket.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
  });
}

/** Polls `check` every 100 ms until it returns a value, for at most `ms`. */
async function waitFor<T>(check: () => T | null | Promise<T | null>, ms: number): Promise<T | null> {
  for (const deadline = Date.now() + ms; Date.now() < deadline; await sleep(100)) {
    const value = await check();
    if (value !== null) return value;
  }
  return null;
}

describe.skipIf(unavailable !== null)('--net user as an unprivileged user', () => {
  const kvmBefore = statSync('/dev/kvm');
  let runner: UnprivilegedTsvmm;
  let tsvmm: ReturnType<UnprivilegedTsvmm['spawn']>;
  let output = '';
  let exited: Promise<number | null>;
  let port: number;

  beforeAll(async () => {
    runner = new UnprivilegedTsvmm();
    port = await freePort();
    tsvmm = runner.spawn(['run', '--kernel', runner.share(counterKernel()), '-p', 'every=65536', '--net', `user,hostfwd=tcp:127.0.0.1:${port}-:80`]);
    tsvmm.stdout.on('data', (d) => (output += d));
    tsvmm.stderr.on('data', (d) => (output += d));
    exited = new Promise((resolve) => tsvmm.on('exit', (code) => resolve(code)));
  });

  afterAll(async () => {
    if (tsvmm?.exitCode === null) {
      tsvmm.kill('SIGKILL');
      await exited;
    }
    runner?.dispose();
  });

  it('runs the guest on KVM as nobody, with no capabilities', async () => {
    expect(await waitFor(() => (/count \d+/.test(output) ? true : null), 60_000), output).toBe(true);
    expect(processCredentials(tsvmm.pid!)).toEqual({ uid: NOBODY, capEff: 0n });
  }, 70_000);

  it('starts passt as nobody, listening on the forwarded host port', async () => {
    const passt = await waitFor(() => childPids(tsvmm.pid!).find((pid) => /passt/.test(readComm(pid))) ?? null, 10_000);
    expect(passt, `tsvmm's children: ${childPids(tsvmm.pid!).map(readComm).join(', ')}`).not.toBeNull();
    expect(processCredentials(passt!)).toEqual({ uid: NOBODY, capEff: 0n });
    expect(await waitFor(async () => ((await probe(port)) === 'open' ? 'open' : null), 10_000)).toBe('open');
  }, 30_000);

  it('ends on SIGINT with passt, closing the port, and leaves the host\'s /dev/kvm as it was', async () => {
    tsvmm.kill('SIGINT');
    const status = await Promise.race([exited, sleep(30_000).then(() => 'timeout')]);
    expect(status, output).not.toBe('timeout');
    expect(output).not.toMatch(/internal error|passt ended|EACCES|permission denied/i);
    expect(await waitFor(async () => ((await probe(port)) === 'ECONNREFUSED' ? 'closed' : null), 10_000)).toBe('closed');
    const kvmAfter = statSync('/dev/kvm');
    expect([kvmAfter.mode, kvmAfter.uid, kvmAfter.gid]).toEqual([kvmBefore.mode, kvmBefore.uid, kvmBefore.gid]);
  }, 40_000);
});

function readComm(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '(gone)';
  }
}
