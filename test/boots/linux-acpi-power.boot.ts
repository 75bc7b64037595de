// ACPI power management end to end, on the default guest (two boots of ~1.5
// minutes each on a PVM host, so outside the default suite: `npm run
// test:boots`).
//
// - SIGTERM to tsvmm presses the power button (src/cli/shutdown.ts): the GED
//   interrupt reaches Linux, whose button driver reports KEY_POWER; busybox
//   acpid runs `poweroff`, init stops every process, and Linux writes S5 to
//   the sleep control register: tsvmm ends with "guest powered off", status 0.
// - `reboot` typed in the guest, with Linux told to reset through ACPI
//   (reboot=acpi after tsvmm's own reboot=k): tsvmm ends with "guest
//   rebooted" and status 0.
import { spawn } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import { defaultLinuxGuest } from '../../src/cli/guest.ts';
import { GuestConsole } from '../helpers/guest-console.ts';
import { hasKvm, TSVMM } from '../helpers/kvm.ts';

const BOOT_MS = 300_000;

beforeAll(async () => {
  // Built once before the boots (a kernel build: minutes), so no boot's time limit pays for it.
  if (hasKvm) await defaultLinuxGuest({ quiet: true });
}, 30 * 60_000);


/** `tsvmm run ARGS` on the default guest, its console and stderr collected. */
function startTsvmm(args: string[]) {
  const child = spawn(process.execPath, [TSVMM, 'run', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, console_: new GuestConsole(child), stderr: () => stderr, exited };
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: not within ${ms / 1000} s`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

describe.skipIf(!hasKvm)('ACPI power management on the default guest', () => {
  it('SIGTERM to tsvmm presses the power button: the guest shuts down cleanly and tsvmm ends with "guest powered off", status 0', async () => {
    // What `systemctl stop` or `kill` does to a unit running tsvmm. The
    // button's GED interrupt reaches Linux, whose button driver reports
    // KEY_POWER; busybox acpid runs `poweroff`, init stops every process, and
    // Linux writes S5 to the sleep control register.
    const { child, console_, stderr, exited } = startTsvmm([]);
    try {
      await console_.waitFor(/tsvmm:\/# /, BOOT_MS);
      // busybox init starts the shell and acpid together: wait until acpid
      // runs, so that the press finds someone listening.
      console_.type('for i in 1 2 3 4 5 6 7 8 9 10; do pidof acpid >/dev/null && break; sleep 1; done; echo "acpid=$(pidof acpid)."\n');
      await console_.waitFor(/acpid=\d+\./, 60_000);
      child.kill('SIGTERM');
      const status = await within(exited, 120_000, 'power-off after SIGTERM');
      expect(stderr()).toMatch(/tsvmm: SIGTERM: pressed the ACPI power button; the guest has 30 s to power off/);
      expect(stderr()).toMatch(/tsvmm: guest powered off\n$/);
      expect(status).toBe(0);
      // Through busybox init (every process stopped) and the kernel's ACPI power-off.
      expect(console_.output).toMatch(/The system is going down NOW!/);
      expect(console_.output).toMatch(/reboot: Power down/);
    } finally {
      child.kill('SIGKILL');
    }
  }, BOOT_MS + 200_000);

  it('`reboot` through the ACPI reset register ends tsvmm with "guest rebooted", status 0', async () => {
    const { child, console_, stderr, exited } = startTsvmm(['--append', 'reboot=acpi']);
    try {
      await console_.waitFor(/tsvmm:\/# /, BOOT_MS);
      console_.type('reboot\n');
      const status = await within(exited, 120_000, 'tsvmm ending after `reboot`');
      expect(status).toBe(0);
      expect(stderr()).toMatch(/tsvmm: guest rebooted\n$/);
      expect(console_.output).toMatch(/reboot: Restarting system/);
    } finally {
      child.kill('SIGKILL');
    }
  }, BOOT_MS + 200_000);
});
