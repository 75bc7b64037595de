// Boots too long for the default suite (minutes each under PVM's emulator):
// a stock kernel run until the instruction PVM cannot emulate, and the
// default guest's bzImage through the 64-bit boot protocol entry, its
// decompressor first.
import { describe, expect, it } from 'vitest';
import { defaultLinuxGuest } from '../../src/cli/guest.ts';
import { detectVirtualization } from '../../src/kvm/index.ts';
import { bootUntil, E820_DONE } from '../helpers/boot-until.ts';
import { hasKvm } from '../helpers/kvm.ts';
import { stockKernel } from '../helpers/stock-kernel.ts';

const kernel = hasKvm ? stockKernel() : { unavailable: 'no /dev/kvm' };
const reason = 'unavailable' in kernel ? kernel.unavailable : null;
if (reason) console.warn(`tsvmm tests: skipping the stock-kernel boot: ${reason}`);

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
