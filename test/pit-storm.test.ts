// A guest that programs PIT channel 0 with a tiny count (mode 2, count 2: a
// tick every 1.7 us) and takes IRQ0 while it works (firmware/pit-storm.S). The
// ticks it cannot acknowledge in time are coalesced, and the host timer that
// drives the PIT fires at most every 200 us (src/machine/device-timers.ts), so
// the guest finishes its work; before, the vCPU thread spent its time in
// KVM_EXIT_INTR (122,163 of them against 3,288 I/O exits in 10 s).
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { firmwarePath } from '../bench/lib/artifacts.ts';
import type { Irq0Counts } from '../src/devices/pit8254.ts';
import { Machine } from '../src/machine/machine.ts';
import { hasKvm } from './helpers/kvm.ts';

const ROOT = join(import.meta.dirname, '..');
const WORK = 10_000;

/** A count from the `--trace exits` summary table ("  INTR   123"). */
function summaryCount(summary: string, row: string): number {
  const match = new RegExp(`^\\s*${row}\\s+(\\d+)$`, 'm').exec(summary);
  return match ? Number(match[1]) : 0;
}

describe.skipIf(!hasKvm)('PIT channel 0 at count 2 with IRQ0 on', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tsvmm-pit-storm-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('the guest finishes its work; ticks it could not acknowledge are coalesced, not queued', async () => {
    const consoleFile = join(dir, 'console');
    const traceFile = join(dir, 'trace');
    const consoleFd = openSync(consoleFile, 'w');
    const traceFd = openSync(traceFile, 'w');
    const machine = Machine.create({
      memoryBytes: 32 << 20, flat: { path: firmwarePath('pit-storm') }, irqchip: true, pit: 'tsvmm',
      consoleFd, traceExits: true, traceFd,
      deviceModules: [join(ROOT, 'test', 'devices', 'pit-report.ts')],
    });
    try {
      const result = await machine.run();
      const console = readFileSync(consoleFile, 'utf8');
      expect(result.stop).toMatchObject({ cause: 'debug-exit', status: 1 });
      const match = /^pit-storm done work=([0-9A-F]{8}) ticks=([0-9A-F]{8})\n$/.exec(console);
      expect(match, console).not.toBeNull();
      expect(parseInt(match![1]!, 16)).toBe(WORK);
      const guestTicks = parseInt(match![2]!, 16);
      expect(guestTicks).toBeGreaterThan(0); // IRQ0 did reach the guest

      const irq0 = result.reports[0] as Irq0Counts;
      // Every OUT0 edge is accounted for, and far more were coalesced than delivered.
      expect(irq0.delivered + irq0.coalesced + irq0.ignored).toBe(irq0.ticks);
      expect(irq0.coalesced).toBeGreaterThan(irq0.delivered);
      // The guest took an interrupt only for a tick the PIC took as new
      // (one more may have been pending when it masked IRQ0).
      expect(guestTicks).toBeLessThanOrEqual(irq0.delivered);

      // Timer signals stay below the work: each KVM_EXIT_INTR is at least
      // 200 us after the last, and one I/O exit of the work is much shorter.
      const summary = result.traceSummary ?? '';
      const intr = summaryCount(summary, 'INTR');
      const io = summaryCount(summary, 'IO');
      expect(io).toBeGreaterThanOrEqual(WORK);
      expect(intr).toBeLessThan(io);
    } finally {
      closeSync(consoleFd);
      closeSync(traceFd);
      machine.close();
    }
  }, 120_000);
});
