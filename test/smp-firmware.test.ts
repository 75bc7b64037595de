// firmware/smp.S: the BSP wakes the AP with INIT-SIPI-SIPI through the
// in-kernel local APIC and both report over COM1 — the AP its APIC ID from its
// LAPIC and from its CPUID (tsvmm's per-vCPU table), the BSP that it saw the AP.
// QEMU running the same file is the reference that the guest itself is right.
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { firmwarePath } from '../bench/lib/artifacts.ts';
import { writeFlatRom } from '../bench/lib/flat-rom.ts';
import { findQemu, qemuArgs } from '../bench/lib/peers.ts';
import { Machine } from '../src/machine/machine.ts';
import { hasKvm, tsvmm } from './helpers/kvm.ts';

const BOTH_REPORTED = 'ap apic=01 cpuid=01\nbsp apic=00 ap-seen\n';
/** Each CPU's share of the writes both make to COM1 at the same time (smp.S FLOOD_BYTES). */
const FLOOD_BYTES = 2000;

/**
 * The run's output: both reports, then the two CPUs' concurrent writes —
 * every byte of each exactly once, in any interleaving — then the end line.
 */
function expectBothCpus(output: string): void {
  expect(output.startsWith(BOTH_REPORTED)).toBe(true);
  expect(output.endsWith('\nflood done\n')).toBe(true);
  const flood = output.slice(BOTH_REPORTED.length, -'\nflood done\n'.length);
  expect(flood).toMatch(/^[ab]*$/);
  expect([...flood].filter((c) => c === 'a')).toHaveLength(FLOOD_BYTES);
  expect([...flood].filter((c) => c === 'b')).toHaveLength(FLOOD_BYTES);
}
const qemu = findQemu();

describe.skipIf(!hasKvm)('SMP start-up of a flat guest (firmware/smp.S)', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'tsvmm-smp-'));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it('tsvmm run --cpus 2 --irqchip: the AP starts, reports its APIC ID, the BSP sees it, and COM1 takes both CPUs\' bytes at once without losing or doubling one', () => {
    const r = tsvmm(['run', '--flat', firmwarePath('smp'), '--cpus', '2', '--irqchip']);
    expect(r.stderr).toBe('');
    expectBothCpus(r.stdout);
    expect(r.status).toBe(1);
  });

  it('Machine with cpus: 2 and irqchip: the same, and the run ends through debug-exit', async () => {
    const consoleFile = join(scratch, 'smp.out');
    const fd = openSync(consoleFile, 'w');
    // Not an inline literal, so that it also type-checks against a MachineConfig without `cpus`.
    const config = { memoryBytes: 16 << 20, flat: { path: firmwarePath('smp') }, cpus: 2, irqchip: true, consoleFd: fd };
    const machine = Machine.create(config);
    try {
      const result = await machine.run();
      expect(result.stop).toMatchObject({ cause: 'debug-exit', status: 1 });
    } finally {
      machine.close();
      closeSync(fd);
    }
    expectBothCpus(readFileSync(consoleFile, 'utf8'));
  });

  it.skipIf(!qemu.path)('the same guest as QEMU\'s BIOS with -smp 2 (the reference): the same output, status 1', () => {
    const rom = writeFlatRom(firmwarePath('smp'), join(scratch, 'smp.rom'));
    const r = spawnSync(qemu.path!, [...qemuArgs(rom, 16), '-smp', '2'], { encoding: 'utf8', timeout: 60_000 });
    expectBothCpus(r.stdout);
    expect(r.status).toBe(1);
  });

  it('with one vCPU nobody answers: the BSP gives up on its deadline and says so', () => {
    const r = tsvmm(['run', '--flat', firmwarePath('smp'), '--irqchip']);
    expect(r.stdout).toBe('bsp apic=00 ap-timeout\n');
    expect(r.status).toBe(3);
  });
});
