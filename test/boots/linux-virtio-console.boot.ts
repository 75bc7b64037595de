// A second boot of the default guest, outside the default suite (each Linux
// boot costs ~1.5 minutes on a PVM host): `npm run test:boots`.
// `tsvmm run --console virtio` makes hvc0 (virtio-console) the guest's
// console: the banner and the shell come back through the console's transmit
// queue, and what is typed into tsvmm's stdin goes to the guest through its
// receive queue.
import { spawn } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import { defaultLinuxGuest } from '../../src/cli/guest.ts';
import { GuestConsole } from '../helpers/guest-console.ts';
import { hasKvm, TSVMM } from '../helpers/kvm.ts';

describe.skipIf(!hasKvm)('the default guest on a virtio console', () => {
  let guest: GuestConsole;
  let stderr = '';
  let exited: Promise<number | null>;

  beforeAll(async () => {
    await defaultLinuxGuest({ quiet: true });
    const child = spawn(process.execPath, [TSVMM, 'run', '--console', 'virtio'], { stdio: ['pipe', 'pipe', 'pipe'] });
    child.stderr.on('data', (d) => (stderr += d));
    exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
    guest = new GuestConsole(child);
  }, 30 * 60_000);

  it('boots to the banner and a shell on hvc0', async () => {
    await guest.waitFor(/tsvmm guest: Linux \S+/, 240_000);
    await guest.waitFor(/tsvmm:\/# /, 60_000);
  }, 320_000);

  it('runs a command typed into stdin: the shell\'s terminal is hvc0 and the kernel was told so', async () => {
    guest.type('echo "sum=$((6 * 7)) tty=$(readlink /proc/self/fd/0)"; cat /proc/cmdline\n');
    const m = await guest.waitFor(/\nsum=42 tty=(\S+)\r?\n([^\r\n]*)\r?\n/, 60_000);
    expect(m[1]).toBe('/dev/hvc0');
    expect(m[2]).toMatch(/console=hvc0/);
  }, 120_000);

  it('poweroff ends tsvmm with status 0', async () => {
    guest.type('poweroff\n');
    const status = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 120_000))]);
    expect(status).toBe(0);
    expect(stderr).not.toMatch(/internal error|KVM internal/);
  }, 150_000);
});
