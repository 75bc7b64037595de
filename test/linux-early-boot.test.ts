// Linux's early boot on tsvmm (earlyprintk=ttyS0): the kernel's own report of
// the command line tsvmm passed and of the e820 map tsvmm built, for RAM below
// and across the MMIO gap. A stock kernel is enough: these lines come long
// before anything PVM's emulator cannot run. tsvmm is stopped once they appear.
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { hasKvm, TSVMM } from './helpers/kvm.ts';
import { stockKernel } from './helpers/stock-kernel.ts';
import { detectVirtualization } from '../src/kvm/index.ts';
import { defaultLinuxGuest } from '../src/cli/guest.ts';

const kernel = hasKvm ? stockKernel() : { unavailable: 'no /dev/kvm' };
const reason = 'unavailable' in kernel ? kernel.unavailable : null;
if (reason) console.warn(`tsvmm tests: skipping the Linux early-boot tests: ${reason}`);

/** Boots until `until` matches the console output, then stops tsvmm with SIGINT. */
function bootUntil(args: string[], until: RegExp, timeoutMs: number): Promise<{ stdout: string; stderr: string; status: number | null }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [TSVMM, 'run', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let stopping = false;
    const stop = () => {
      if (!stopping) child.kill('SIGINT');
      stopping = true;
    };
    const timer = setTimeout(stop, timeoutMs);
    child.stdout.on('data', (d) => {
      stdout += d;
      if (until.test(stdout)) stop();
    });
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (status) => {
      clearTimeout(timer);
      resolve({ stdout, stderr, status });
    });
  });
}

// The kernel prints its e820 map, then switches its early console on.
const E820_DONE = /printk: bootconsole \[earlyser0\] enabled/;

describe.skipIf(reason !== null)('Linux early boot', () => {
  const vmlinux = 'vmlinux' in kernel ? kernel.vmlinux : '';

  it.each([
    ['256M', ['0x0000000000100000-0x000000000fffffff] usable']],
    ['3584M', ['0x0000000000100000-0x00000000cfffffff] usable', '0x0000000100000000-0x000000010fffffff] usable']],
    ['5G', ['0x0000000000100000-0x00000000cfffffff] usable', '0x0000000100000000-0x000000016fffffff] usable']],
  ])('--mem %s: the kernel reports tsvmm\'s command line and e820 map', async (mem, ramLines) => {
    const append = `earlyprintk=ttyS0 tsvmm.test=${mem}`;
    const r = await bootUntil(['-k', vmlinux, '-m', mem, '-p', append], E820_DONE, 120_000);
    expect(r.stdout).toMatch(/Linux version \d+\.\d+/);
    const cmdline = /Command line: (.*)/.exec(r.stdout)?.[1]?.trim();
    expect(cmdline).toMatch(/^console=ttyS0 .*earlyprintk=ttyS0 tsvmm\.test=\S+$/);
    expect(cmdline!.endsWith(append)).toBe(true);
    expect(r.stdout).toContain('BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable');
    expect(r.stdout).toContain('BIOS-e820: [mem 0x000000000009fc00-0x00000000000fffff] reserved');
    for (const line of ramLines) expect(r.stdout).toContain(`BIOS-e820: [mem ${line}`);
    expect(r.stdout.match(/BIOS-e820:/g)).toHaveLength(2 + ramLines.length);
    expect(r.stderr).toMatch(/tsvmm: stopped/);
  }, 150_000);
});

// On PVM a stock kernel (without the default guest's changes) stops at its
// int3 self-test, which KVM's emulator cannot run. tsvmm must say so, with
// RIP and the instruction, rather than hang. About a minute here.
describe.skipIf(reason !== null || detectVirtualization().kind !== 'pvm')('a stock kernel on a PVM host', () => {
  const vmlinux = 'vmlinux' in kernel ? kernel.vmlinux : '';

  it('ends with the emulation failure named: RIP, instruction and bytes', async () => {
    const r = await bootUntil(['-k', vmlinux, '-m', '256M'], /$^/, 240_000);
    expect(r.status).toBe(4);
    expect(r.stdout).toMatch(/Linux version/);
    expect(r.stderr).toMatch(/^tsvmm: KVM internal error: the instruction emulator could not emulate an instruction \(KVM_EXIT_INTERNAL_ERROR suberror 1\) at RIP 0xffffffff[0-9a-f]{8} \(CS 0x10, linear 0xffffffff[0-9a-f]{8}\); instruction: int3 \(bytes cc( [0-9a-f]{2})+\)$/m);
  }, 300_000);
});

// The 64-bit boot protocol entry, with a real bzImage: the default guest's.
// Its decompressor runs first (about 45 s under PVM's emulator).
describe.skipIf(!hasKvm)('a bzImage through the 64-bit entry', () => {
  it('the kernel reports tsvmm\'s command line and e820 map from boot_params', async () => {
    const guest = await defaultLinuxGuest({ quiet: true });
    const r = await bootUntil(['-k', guest.bzImage, '-m', '3584M', '-p', 'earlyprintk=ttyS0 tsvmm.entry=64'], E820_DONE, 240_000);
    expect(r.stdout).toMatch(/Linux version 6\.1\.\d+-tsvmm/);
    expect(/Command line: (.*)/.exec(r.stdout)?.[1]?.trim()).toMatch(/^console=ttyS0 .*earlyprintk=ttyS0 tsvmm\.entry=64$/);
    expect(r.stdout).toContain('BIOS-e820: [mem 0x0000000000100000-0x00000000cfffffff] usable');
    expect(r.stdout).toContain('BIOS-e820: [mem 0x0000000100000000-0x000000010fffffff] usable');
  }, 30 * 60_000);
});
