// ACPI power management end to end, on the default guest (two boots of ~1.5
// minutes each on a PVM host, so outside the default suite: `npm run
// test:boots`).
//
// - The host presses the power button through the machine API: the GED
//   interrupt reaches Linux, whose button driver reports KEY_POWER; busybox
//   acpid runs `poweroff`, init stops every process, and Linux writes S5 to
//   the sleep control register: run() ends with "guest powered off".
// - `reboot` typed in the guest, with Linux told to reset through ACPI
//   (reboot=acpi after tsvmm's own reboot=k): tsvmm ends with "guest
//   rebooted" and status 0.
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultLinuxGuest, type BuiltGuest } from '../../src/cli/guest.ts';
import { configFromOptions } from '../../src/cli/run.ts';
import { Machine, type MachineResult } from '../../src/machine/machine.ts';
import { GuestConsole } from '../helpers/guest-console.ts';
import { hasKvm, TSVMM } from '../helpers/kvm.ts';

const BOOT_MS = 300_000;
const dir = mkdtempSync(join(tmpdir(), 'tsvmm-acpi-'));
let guest: BuiltGuest;

beforeAll(async () => {
  if (hasKvm) guest = await defaultLinuxGuest({ quiet: true });
}, 30 * 60_000);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Waits until the file holds a match of `pattern`, looking every 200 ms for at most `timeoutMs`. */
async function waitInFile(path: string, pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = readFileSync(path, 'latin1').match(pattern);
    if (m) return m;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}; console so far:\n${readFileSync(path, 'latin1').slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: not within ${ms / 1000} s`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

describe.skipIf(!hasKvm)('ACPI power management on the default guest', () => {
  it('Machine.pressPowerButton(): the guest shuts down cleanly and run() ends with "guest powered off"', async () => {
    const consolePath = join(dir, 'console.txt');
    const consoleFd = openSync(consolePath, 'w+');
    const machine = Machine.create({
      ...configFromOptions({ kernel: guest.kernel, initrd: guest.initrd, systemMap: guest.systemMap }),
      consoleFd,
    });
    try {
      const running = machine.run();
      let ended: MachineResult | null = null;
      void running.then((r) => { ended = r; }, () => {});
      await waitInFile(consolePath, /tsvmm:\/# /, BOOT_MS);
      // busybox init starts the shell and acpid together: wait until acpid
      // runs, so that the press finds someone listening.
      machine.sendInput(Buffer.from('for i in 1 2 3 4 5 6 7 8 9 10; do pidof acpid >/dev/null && break; sleep 1; done; echo "acpid=$(pidof acpid)."\n'));
      await waitInFile(consolePath, /acpid=\d+\./, 60_000);
      expect(ended).toBeNull();

      expect(machine.pressPowerButton()).toBe(true);
      const result = await within(running, 120_000, 'power-off after the button press');
      expect(result.stop).toEqual({ cause: 'poweroff', status: 0, message: 'guest powered off' });
      const console_ = readFileSync(consolePath, 'latin1');
      // Through busybox init (every process stopped) and the kernel's ACPI power-off.
      expect(console_).toMatch(/The system is going down NOW!/);
      expect(console_).toMatch(/reboot: Power down/);
    } finally {
      machine.close();
      closeSync(consoleFd);
    }
  }, BOOT_MS + 200_000);

  it('`reboot` through the ACPI reset register ends tsvmm with "guest rebooted", status 0', async () => {
    const child = spawn(process.execPath, [TSVMM, 'run', '--append', 'reboot=acpi'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const console_ = new GuestConsole(child);
    try {
      await console_.waitFor(/tsvmm:\/# /, BOOT_MS);
      console_.type('reboot\n');
      const status = await within(exited, 120_000, 'tsvmm ending after `reboot`');
      expect(status).toBe(0);
      expect(stderr).toMatch(/tsvmm: guest rebooted\n$/);
      expect(console_.output).toMatch(/reboot: Restarting system/);
    } finally {
      child.kill('SIGKILL');
    }
  }, BOOT_MS + 200_000);
});
