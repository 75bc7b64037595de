// Linux's early boot on tsvmm (earlyprintk=ttyS0): the kernel's own report of
// the command line tsvmm passed and of the e820 map tsvmm built, for RAM below
// and across the MMIO gap. A stock kernel is enough: these lines come long
// before anything PVM's emulator cannot run. tsvmm is stopped once they appear.
// (A stock kernel run to its end and a bzImage's decompressor take minutes
// each here: they are in test/boots/linux-stock-kernel.boot.ts.)
import { describe, expect, it } from 'vitest';
import { bootUntil, E820_DONE } from './helpers/boot-until.ts';
import { hasKvm } from './helpers/kvm.ts';
import { stockKernel } from './helpers/stock-kernel.ts';

const kernel = hasKvm ? stockKernel() : { unavailable: 'no /dev/kvm' };
const reason = 'unavailable' in kernel ? kernel.unavailable : null;
if (reason) console.warn(`tsvmm tests: skipping the Linux early-boot tests: ${reason}`);

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
