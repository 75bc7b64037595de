// The exits-kut bench suite without running a guest: which tests it takes
// from unittests.cfg, how it reads a vmexit test's figure, its one line when
// KUT_DIR is missing or not a built suite, and its table.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { benchExitsKut, formatExitsKut, parseCycles, vmexitTests } from '../bench/exits-kut.ts';
import { SUITES } from '../bench/index.ts';
import { summarize } from '../bench/lib/stats.ts';

const CFG = `
[vmexit_cpuid]
file = vmexit.flat
test_args = 'cpuid'
groups = vmexit

[vmexit_ipi]
file = vmexit.flat
smp = 2
test_args = 'ipi'
qemu_params = -machine pit=off
groups = vmexit

[smptest]
file = smptest.flat
smp = 2
`;

describe('exits-kut', () => {
  it('is a tsvmm bench suite', () => {
    expect(SUITES.map((s) => s.name)).toContain('exits-kut');
  });

  it('takes the vmexit_* tests of unittests.cfg with their arguments and options', () => {
    const tests = vmexitTests(CFG);
    expect(tests.map((t) => [t.name, t.args, t.smp, t.qemuParams.join(' ')])).toEqual([
      ['vmexit_cpuid', 'cpuid', 1, ''],
      ['vmexit_ipi', 'ipi', 2, '-machine pit=off'],
    ]);
  });

  it('reads "<test_args> <cycles>" from the output, the first such line only', () => {
    const output = 'enabling apic\ncr4 = 20\npci-testdev at 0x10 membar febff000 iobar c000\nipi 3010053\r\n  ipi ipi 2942119\n';
    expect(parseCycles(output, 'ipi')).toBe(3010053);
    expect(parseCycles('cpuid 31355\n', 'cpuid')).toBe(31355);
    expect(parseCycles('cpuid (skipped)\n', 'cpuid')).toBeNull();
    expect(parseCycles('cpuid 31355\n', 'ipi')).toBeNull();
  });

  it('without KUT_DIR, or with one that is not a built suite, says so in one line and runs nothing', async () => {
    const log = () => {};
    const none = await benchExitsKut({ runs: 1, log }, {});
    expect(formatExitsKut(none)).toBe('skipped: set KUT_DIR to a built kvm-unit-tests tree (./configure && make) to run its vmexit tests');
    const empty = mkdtempSync(join(tmpdir(), 'tsvmm-kut-'));
    const wrong = await benchExitsKut({ runs: 1, log }, { KUT_DIR: empty });
    expect(formatExitsKut(wrong)).toBe(`skipped: KUT_DIR=${empty} has no x86/unittests.cfg and x86/vmexit.flat (build the suite there first)`);
  });

  it('the table: both VMMs\' medians with their range, the ratio, and why a figure is missing', () => {
    const text = formatExitsKut({
      kutDir: '/kut', qemu: '/usr/bin/qemu-system-x86_64',
      rows: [
        { test: 'vmexit_cpuid', cycles: { tsvmm: summarize([60_000, 66_000, 70_000]), qemu: summarize([30_000, 33_000, 40_000]) }, notes: {} },
        { test: 'vmexit_vmcall', cycles: { tsvmm: null, qemu: null }, notes: { tsvmm: 'no result within 60 s', qemu: 'no result within 60 s' } },
      ],
    });
    const lines = text.split('\n');
    expect(lines[0]).toMatch(/^kvm-unit-tests x86\/vmexit\.flat from \/kut: guest TSC cycles per iteration/);
    expect(lines[1]).toMatch(/^test +tsvmm cycles +QEMU cycles +tsvmm\/QEMU +note$/);
    expect(lines[3]).toMatch(/^vmexit_cpuid +66000 \(60000–70000\) +33000 \(30000–40000\) +2\.00 *$/);
    expect(lines[4]).toMatch(/^vmexit_vmcall +— +— +— +tsvmm: no result within 60 s; QEMU: no result within 60 s$/);
  });
});
