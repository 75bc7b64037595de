// The PC platform devices driven by small guests through real exits: the
// i8254's channel 2 timed through port 0x61 (by tsvmm's PIT and by KVM's),
// the CMOS RTC's date and time, the i8042's reset line, and the 16550A's
// received-data interrupt delivered through KVM's 8259 to a halted guest.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { firmwarePath } from '../bench/lib/artifacts.ts';
import { spawn } from 'node:child_process';
import { hasKvm, TSVMM, tsvmm } from './helpers/kvm.ts';

function hostTscMhz(): number | null {
  const m = /^cpu MHz\s*:\s*([\d.]+)/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
  return m ? Number(m[1]) : null;
}

describe.skipIf(!hasKvm)('i8254 channel 2 through port 0x61 (firmware/pit-calibrate.S)', () => {
  it.each([
    ['tsvmm\'s TypeScript PIT', []],
    ['KVM\'s in-kernel PIT (--pit kernel)', ['--pit', 'kernel']],
  ])('%s: mode 0 counts of 29830 and 59659 take 25 and 50 ms of TSC time', (_who, flags) => {
    const r = tsvmm(['run', '--flat', firmwarePath('pit-calibrate'), ...flags]);
    expect(r.status).toBe(1);
    const m = /^pit 25ms=([0-9A-F]{16}) 50ms=([0-9A-F]{16}) polls=([0-9A-F]{8})$/m.exec(r.stdout);
    expect(m).not.toBeNull();
    const short = Number(BigInt(`0x${m![1]}`));
    const long = Number(BigInt(`0x${m![2]}`));
    // OUT2 rose only after the guest polled for a while: the count really ran.
    expect(parseInt(m![3]!, 16)).toBeGreaterThan(1);
    // Twice the count, twice the time: independent of the TSC's frequency.
    // (Loose: the first interval also pays for warming up tsvmm's exit path,
    // and on a busy 2-core host the vCPU thread can miss a few milliseconds.)
    expect(long / short).toBeGreaterThan(1.6);
    expect(long / short).toBeLessThan(2.4);
    // And about 50 ms against the host's nominal clock (loose: "cpu MHz" is not always the TSC's rate).
    const mhz = hostTscMhz();
    if (mhz) {
      const ms = long / (mhz * 1000);
      expect(ms).toBeGreaterThan(25);
      expect(ms).toBeLessThan(100);
    }
  });
});

describe.skipIf(!hasKvm)('CMOS RTC (firmware/rtc.S)', () => {
  it('reads the host\'s UTC date and time in BCD, and the same seconds in binary after DM is set', () => {
    const before = new Date();
    const r = tsvmm(['run', '--flat', firmwarePath('rtc')]);
    const after = new Date();
    expect(r.status).toBe(1);
    const m = /^rtc (\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d) b=([0-9A-F]{2})\nbin sec=([0-9A-F]{2})\n$/.exec(r.stdout);
    expect(m).not.toBeNull();
    const [, year, month, day, hours, minutes, seconds, regB, binSeconds] = m!;
    // Register B: 24-hour mode, BCD (DM clear).
    expect(parseInt(regB!, 16) & 0x06).toBe(0x02);
    const guest = Date.UTC(Number(year), Number(month) - 1, Number(day), Number(hours), Number(minutes), Number(seconds));
    expect(guest).toBeGreaterThanOrEqual(Math.floor(before.getTime() / 1000) * 1000 - 1000);
    expect(guest).toBeLessThanOrEqual(after.getTime());
    // The binary read comes a moment later: the same second or the next.
    const bin = parseInt(binSeconds!, 16);
    expect([Number(seconds), (Number(seconds) + 1) % 60]).toContain(bin);
  });
});

describe.skipIf(!hasKvm)('i8042 reset line (firmware/i8042-reset.S)', () => {
  it('command 0xFE to port 0x64 resets the machine: tsvmm ends with "guest rebooted" and status 0', () => {
    const r = tsvmm(['run', '--flat', firmwarePath('i8042-reset')]);
    expect(r.stdout).toBe('resetting\n');
    expect(r.stderr).toBe('tsvmm: guest rebooted\n');
    expect(r.status).toBe(0);
    // --reboot exit says the same explicitly; a wrong action is one line and status 2.
    expect(tsvmm(['run', '--flat', firmwarePath('i8042-reset'), '--reboot', 'exit']).stderr).toBe('tsvmm: guest rebooted\n');
    const wrong = tsvmm(['run', '--flat', firmwarePath('i8042-reset'), '--reboot', 'reset']);
    expect(wrong.status).toBe(2);
    expect(wrong.stderr).toBe('tsvmm: --reboot reset: expected "exit" (tsvmm ends, status 0) or "restart" (the guest boots again)\n');
  });

  it('--reboot restart boots the guest again after each reset, until tsvmm is stopped', async () => {
    // This guest resets at once every time: let it start three times, then stop tsvmm with SIGINT.
    const child = spawn(process.execPath, [TSVMM, 'run', '--flat', firmwarePath('i8042-reset'), '--reboot', 'restart'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const killer = setTimeout(() => child.kill('SIGKILL'), 50_000);
    await new Promise<void>((resolve) => {
      child.stdout.on('data', (d) => {
        stdout += d;
        if (stdout.split('resetting\n').length > 3) resolve();
      });
      child.on('exit', () => resolve());
    });
    child.kill('SIGINT');
    const status = await exited;
    clearTimeout(killer);
    expect(stdout.startsWith('resetting\nresetting\nresetting\n')).toBe(true);
    expect(stderr).toMatch(/^(\r\ntsvmm: guest rebooted: starting it again \(--reboot restart\)\r\n){2,}/);
    // The SIGINT stops it, also when it landed as the guest reset once more.
    expect(stderr.replace(/\r\ntsvmm: guest rebooted: starting it again \(--reboot restart\)\r\n/g, '')).toBe('tsvmm: stopped\n');
    expect(status).toBe(128 + 2);
  });
});

describe.skipIf(!hasKvm)('16550A received-data interrupt through the 8259 (firmware/uart-echo.S, --irqchip)', () => {
  it('bytes written to tsvmm\'s stdin raise IRQ 4 in a halted guest, which echoes them', async () => {
    // Type only once the guest is ready: enabling the FIFOs (FCR) empties them,
    // so bytes that arrived earlier would be lost, as on a real 16550.
    const child = spawn(process.execPath, [TSVMM, 'run', '--flat', firmwarePath('uart-echo'), '--irqchip'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (d) => {
      stdout += d;
      if (stdout === 'ready\n') child.stdin.end('hello, tsvmm.');
    });
    const status = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(status).toBe(1);
    const m = /^ready\nHELLO, TSVMM\.\nbye irqs=([0-9A-F]{4})\n$/.exec(stdout);
    expect(m).not.toBeNull();
    // The guest only sleeps in hlt: every byte it saw came through an interrupt.
    expect(parseInt(m![1]!, 16)).toBeGreaterThanOrEqual(1);
  });
});
