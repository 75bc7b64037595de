// The product's main job, end to end: `tsvmm run` with no arguments boots the
// default guest (guests/default) to its shell on the console; a command typed
// into tsvmm's stdin runs in the guest and its output comes back; `poweroff`
// ends tsvmm with status 0. About 1.5 minutes on a PVM host: the one full boot
// of the default suite, so every check here shares it.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import { defaultLinuxGuest } from '../src/cli/guest.ts';
import { hasKvm, TSVMM } from './helpers/kvm.ts';

class Console {
  output = '';
  private waiters: { pattern: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];

  constructor(readonly child: ChildProcessWithoutNullStreams) {
    child.stdout.on('data', (d: Buffer) => {
      this.output += d.toString('latin1');
      this.waiters = this.waiters.filter((w) => {
        const m = this.output.match(w.pattern);
        if (m) w.resolve(m);
        return !m;
      });
    });
  }

  waitFor(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    const m = this.output.match(pattern);
    if (m) return Promise.resolve(m);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${pattern}; console so far:\n${this.output.slice(-2000)}`)), timeoutMs);
      this.waiters.push({ pattern, resolve: (found) => { clearTimeout(timer); resolve(found); } });
    });
  }

  type(text: string): void {
    this.child.stdin.write(text);
  }
}

describe.skipIf(!hasKvm)('the default guest', () => {
  let console_: Console;
  let stderr = '';
  let exited: Promise<number | null>;
  const started = Date.now();

  beforeAll(async () => {
    await defaultLinuxGuest({ quiet: true });
    const child = spawn(process.execPath, [TSVMM, 'run'], { stdio: ['pipe', 'pipe', 'pipe'] });
    child.stderr.on('data', (d) => (stderr += d));
    exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
    console_ = new Console(child);
  }, 30 * 60_000);

  it('boots to the banner: kernel release, virtio devices, boot time', async () => {
    // The guest's tty ends lines with \r\n.
    const m = await console_.waitFor(/tsvmm guest: Linux (\S+)\r?\nvirtio devices:([^\r\n]*)\r?\nboot time: ([\d.]+) s/, 240_000);
    expect(m[1]).toMatch(/^6\.1\.\d+-tsvmm$/);
    console.log(`default guest: banner after ${((Date.now() - started) / 1000).toFixed(0)} s of wall time, ${m[3]} s of guest uptime`);
  }, 300_000);

  it('runs a command typed into tsvmm\'s stdin and shows its output', async () => {
    await console_.waitFor(/tsvmm:\/# /, 60_000);
    console_.type('echo "sum=$((6 * 7))"; uname -r\n');
    const m = await console_.waitFor(/\nsum=42\r?\n(\S+)\r?\n/, 60_000);
    expect(m[1]).toMatch(/-tsvmm$/);
  }, 120_000);

  it('poweroff ends tsvmm with status 0', async () => {
    console_.type('poweroff\n');
    const status = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 120_000))]);
    expect(status).toBe(0);
    // No ACPI, so the guest ends by a reset through the i8042 (guests/default/rootfs/etc/inittab).
    expect(stderr).toMatch(/tsvmm: guest rebooted\n$/);
    expect(stderr).not.toMatch(/internal error|KVM internal/);
  }, 150_000);
});
