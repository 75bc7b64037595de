// What the guest's own ending does (libvirt's on_reboot, on_poweroff,
// on_crash): `tsvmm run --reboot|--poweroff|--panic exit|restart`, through
// real KVM exits. The counter guest (firmware/multiboot/counter.S) counts to
// its limit, then powers off through ACPI's sleep control register or reports
// a panic through pvpanic; with `restart` the process boots it again, with a
// RESET event (and GUEST_PANICKED first for a panic), as QEMU announces them.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CounterStatus, tsvmmCounterArgs } from '../../bench/lib/counter-guest.ts';
import { hasKvm, tsvmm } from '../helpers/kvm.ts';
import { qmpSockets, TsvmmProcess } from '../helpers/tsvmm-process.ts';

const scratch = mkdtempSync(join(tmpdir(), 'tsvmm-endings-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
const qmpSocket = qmpSockets(scratch);
const LIMIT = { pages: 16, every: 4096, limit: 4096 };
const starts = (stdout: string) => stdout.split('\n').filter((line) => line.startsWith('counter pages=')).length;

describe.skipIf(!hasKvm)('a guest that ends itself, with exit (the default)', () => {
  it('a power-off ends tsvmm with status 0, "guest powered off"', () => {
    const r = tsvmm([...tsvmmCounterArgs({ ...LIMIT, end: 'poweroff' })]);
    expect(r.stdout).toContain('counter done n=4096');
    expect(r.stderr.trimEnd().split('\n').at(-1)).toBe('tsvmm: guest powered off');
    expect(r.status).toBe(0);
  });

  it('a panic reported through --device pvpanic ends tsvmm with status 6, saying so', () => {
    const r = tsvmm([...tsvmmCounterArgs({ ...LIMIT, end: 'panic' }), '--device', 'pvpanic']);
    expect(r.stderr.trimEnd().split('\n').at(-1)).toBe('tsvmm: guest panicked (it said so through pvpanic)');
    expect(r.status).toBe(6);
  });

  it('without the device the panic write goes nowhere: the guest goes on to its debug-exit', () => {
    const r = tsvmm([...tsvmmCounterArgs({ ...LIMIT, end: 'panic' })]);
    expect(r.stderr).not.toContain('panicked');
    expect(r.status).toBe(CounterStatus.DONE);
  });
});

describe.skipIf(!hasKvm)('a guest that ends itself, with restart: the process boots it again', () => {
  it.each([
    ['--poweroff', 'poweroff', [], 'powered off', [{ event: 'RESET', data: { guest: true, reason: 'guest-shutdown' } }]],
    ['--panic', 'panic', ['--device', 'pvpanic'], 'panicked', [
      { event: 'GUEST_PANICKED', data: { action: 'run' } },
      { event: 'RESET', data: { guest: true, reason: 'guest-panic' } },
    ]],
  ] as const)('%s restart: each %s starts the guest over, with QMP events, until quit', async (flag, end, extra, words, perRestart) => {
    const qmp = qmpSocket();
    const vm = new TsvmmProcess([...tsvmmCounterArgs({ ...LIMIT, end }), ...extra, flag, 'restart', '--qmp', qmp]);
    try {
      const monitor = await vm.monitor(qmp);
      await vm.waitFor('the guest started for the third time', (out) => starts(out) >= 3, 60_000);
      await monitor.execute('quit').catch(() => {});
      expect(await vm.end()).toBe(0);
      expect(vm.stderr).toContain(`tsvmm: guest ${words}: starting it again (${flag} restart)`);
      // Every ending before the quit was followed by its events; the quit ends it.
      const endings = monitor.events.filter((e) => e.event !== 'SHUTDOWN');
      expect(endings.length).toBeGreaterThanOrEqual(2 * perRestart.length);
      expect(endings.slice(0, 2 * perRestart.length)).toEqual([...perRestart, ...perRestart]);
      expect(monitor.events.at(-1)).toEqual({ event: 'SHUTDOWN', data: { guest: false, reason: 'host-qmp-quit' } });
    } finally {
      vm.kill();
    }
  });

  it('--poweroff and --panic take exit or restart only, in one line', () => {
    for (const flag of ['--poweroff', '--panic']) {
      const r = tsvmm([...tsvmmCounterArgs(LIMIT), flag, 'preserve']);
      expect(r.status).toBe(2);
      expect(r.stderr.trim()).toMatch(new RegExp(`^tsvmm: ${flag} preserve: expected "exit" \\(tsvmm ends, status [06]\\) or "restart" \\(the guest boots again\\)$`));
    }
  });
});
