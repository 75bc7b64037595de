// firmware/multiboot/counter.S, the guest that pause, snapshot and migration
// tests run: it counts without a gap, checks every slot of its buffer before
// it rewrites it, ends after limit=M steps, and with `ticks` counts the PIT's
// interrupts. QEMU running the same file is the reference that the guest
// itself is right, so that it is a fair peer for the lifecycle bench.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  countLines, counterCmdline, counterKernel, CounterStatus, diskSectorValue, qemuCounterArgs, tsvmmCounterArgs, type CounterSettings,
} from '../bench/lib/counter-guest.ts';
import { findQemu } from '../bench/lib/peers.ts';
import { hasKvm, tsvmm } from './helpers/kvm.ts';

const qemu = findQemu();
const scratch = mkdtempSync(join(tmpdir(), 'tsvmm-counter-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** Three passes over the default 4096-page buffer: the second and third check what the first wrote. */
const THREE_PASSES: CounterSettings = { every: 2048, limit: 3 * 4096 };

/** The whole output of a run that ends at `limit`: settings, a line per `every` steps, the end. */
function expectCountedToLimit(output: string, settings: Required<Pick<CounterSettings, 'every' | 'limit'>> & CounterSettings): void {
  const lines = output.trimEnd().split('\n');
  expect(lines[0]).toBe(`counter pages=${settings.pages ?? 4096} every=${settings.every} limit=${settings.limit} ticks=${settings.ticks ? 1 : 0}`);
  const counts = countLines(output).map((c) => c.n);
  const expected = Array.from({ length: Math.floor(settings.limit / settings.every) }, (_, i) => (i + 1) * settings.every);
  expect(counts).toEqual(expected);
  expect(lines.at(-1)).toBe(`counter done n=${settings.limit}`);
  expect(lines).toHaveLength(counts.length + 2);
}

/** The file offset of a symbol's bytes in the counter ELF (nm for the address, the program headers for the offset). */
function symbolFileOffset(elf: Buffer, kernel: string, symbol: string): number {
  const nm = spawnSync('nm', [kernel], { encoding: 'utf8' });
  const line = nm.stdout.split('\n').find((l) => l.endsWith(` ${symbol}`));
  if (!line) throw new Error(`${symbol} not in nm ${kernel}`);
  const address = parseInt(line.split(' ')[0]!, 16);
  const phoff = elf.readUInt32LE(28);
  const phentsize = elf.readUInt16LE(42);
  for (let i = 0; i < elf.readUInt16LE(44); i++) {
    const at = phoff + i * phentsize;
    const offset = elf.readUInt32LE(at + 4);
    const paddr = elf.readUInt32LE(at + 12);
    const filesz = elf.readUInt32LE(at + 16);
    if (address >= paddr && address + 4 <= paddr + filesz) return offset + (address - paddr);
  }
  throw new Error(`${symbol} is in no loaded bytes of ${kernel}`);
}

describe.skipIf(!hasKvm)('the counter guest under tsvmm', () => {
  it('counts to the limit with a line every K steps and no gap, checking each slot on passes 2 and 3; status 1', () => {
    const r = tsvmm(tsvmmCounterArgs(THREE_PASSES));
    expectCountedToLimit(r.stdout, { ...THREE_PASSES, limit: THREE_PASSES.limit!, every: THREE_PASSES.every! });
    expect(r.status).toBe(CounterStatus.DONE);
  });

  it('a limit that is not a multiple of every: the last line is the last whole K, then done', () => {
    const settings = { pages: 16, every: 1000, limit: 4500 };
    const r = tsvmm(tsvmmCounterArgs(settings));
    expectCountedToLimit(r.stdout, settings);
    expect(r.status).toBe(CounterStatus.DONE);
  });

  it('ticks: the PIT at 100 Hz interrupts the count, and the tick count rises along the lines', () => {
    // ~2 s of guest time here: enough for the count to be interrupted many times.
    const settings = { pages: 16, every: 8192, limit: 16 * 8192, ticks: true };
    const r = tsvmm(tsvmmCounterArgs(settings));
    expect(r.status).toBe(CounterStatus.DONE);
    const lines = countLines(r.stdout);
    expect(lines.map((l) => l.n)).toEqual(Array.from({ length: 16 }, (_, i) => (i + 1) * 8192));
    const ticks = lines.map((l) => l.ticks!);
    expect(ticks.every((t, i) => i === 0 || t >= ticks[i - 1]!)).toBe(true);
    expect(ticks.at(-1)!).toBeGreaterThan(ticks[0]!);
  });

  it('a slot that does not hold N - P is reported with N, the slot and what it held; status 3', () => {
    // The guest's "first pass is over" mask set from the start: step 0 expects
    // 0 - P in slot 0, which (zeroed) holds 0 — as a page lost to a migration would.
    const kernel = counterKernel();
    const elf = readFileSync(kernel);
    elf.writeInt32LE(-1, symbolFileOffset(elf, kernel, 'lag_mask'));
    const patched = join(scratch, 'counter-lagging.elf');
    writeFileSync(patched, elf);
    const r = tsvmm(['run', '-k', patched, '-p', 'pages=16', '--mem', '64M']);
    expect(r.stdout).toBe('counter pages=16 every=8192 limit=0 ticks=0\ncounter BAD n=0 slot=0 found=0\n');
    expect(r.status).toBe(CounterStatus.BAD_SLOT);
  });

  it.each([
    ['pages=0', 'pages=0'],
    ['pages=12x', 'pages=12x'],
    ['every=', 'every='],
    ['every=0x', 'every=0x'],
    ['limit=4294967296', 'limit=4294967296'],
    ['ticks pages=9999999 every=1', 'pages=9999999'],
  ])('bad input %j: one line naming the argument, status 5', (cmdline, named) => {
    const r = tsvmm(['run', '-k', counterKernel(), '-p', cmdline, '--mem', '64M']);
    expect(r.stdout).toBe(`counter: bad argument ${named}\n`);
    expect(r.status).toBe(CounterStatus.BAD_INPUT);
  });

  it('a buffer beyond RAM: one line, status 5, before a slot is touched', () => {
    const r = tsvmm(['run', '-k', counterKernel(), '-p', counterCmdline({ pages: 16384 }), '--mem', '64M']);
    expect(r.stdout).toBe("counter: pages=16384 does not fit in the guest's RAM (64 MiB; the buffer starts at 8 MiB)\n");
    expect(r.status).toBe(CounterStatus.BAD_INPUT);
  });

  it('disk: each count line\'s N is written into sector L mod the disk\'s sectors, through the virtio-blk device', () => {
    const image = join(scratch, 'counter-disk.raw');
    // 4 sectors: 10 lines wrap around it, so the last 4 lines' values are what it holds.
    writeFileSync(image, Buffer.alloc(4 * 512));
    const settings: CounterSettings = { every: 1024, limit: 10 * 1024, disk: true };
    const r = tsvmm([...tsvmmCounterArgs(settings), '--disk', image]);
    expect(r.stderr).not.toMatch(/error|disk/i);
    expect(r.status).toBe(CounterStatus.DONE);
    expect(countLines(r.stdout).map((c) => c.n)).toEqual(Array.from({ length: 10 }, (_, i) => (i + 1) * 1024));
    const bytes = readFileSync(image);
    // Line L (from 0) wrote (L + 1) * 1024 into sector L mod 4: lines 8, 9, 6, 7 last.
    expect([0, 1, 2, 3].map((sector) => diskSectorValue(bytes, sector))).toEqual([9n * 1024n, 10n * 1024n, 7n * 1024n, 8n * 1024n]);
  });

  it('disk without a disk: one line, status 9, before the first count line', () => {
    const r = tsvmm(tsvmmCounterArgs({ every: 1024, limit: 4096, disk: true }));
    expect(r.stdout.trimEnd().split('\n').slice(1)).toEqual(['counter disk: no virtio-blk device at 0xD1000000']);
    expect(r.status).toBe(CounterStatus.DISK_FAILED);
  });

  it('hex numbers and words that are not settings (the file name first) are taken as they should be', () => {
    const r = tsvmm(['run', '-k', counterKernel(), '-p', 'console=ttyS0 pages=0x10 every=0x400 limit=0x800 tickless', '--mem', '64M']);
    expectCountedToLimit(r.stdout, { pages: 16, every: 1024, limit: 2048 });
    expect(r.status).toBe(CounterStatus.DONE);
  });
});

describe.skipIf(!qemu.path)('the counter guest under QEMU (the reference)', () => {
  const accel = hasKvm ? 'kvm' : 'tcg';

  it(`qemu-system-x86_64 -kernel (${accel}): the same lines and status as under tsvmm`, () => {
    const r = spawnSync(qemu.path!, qemuCounterArgs(THREE_PASSES, { accel }), { encoding: 'utf8', timeout: 60_000 });
    expectCountedToLimit(r.stdout, { ...THREE_PASSES, limit: THREE_PASSES.limit!, every: THREE_PASSES.every! });
    expect(r.status).toBe(CounterStatus.DONE);
  });

  it(`ticks under QEMU (${accel}): rising`, () => {
    const settings = { pages: 16, every: 8192, limit: 16 * 8192, ticks: true };
    const r = spawnSync(qemu.path!, qemuCounterArgs(settings, { accel }), { encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(CounterStatus.DONE);
    const ticks = countLines(r.stdout).map((l) => l.ticks!);
    expect(ticks).toHaveLength(16);
    expect(ticks.every((t, i) => i === 0 || t >= ticks[i - 1]!)).toBe(true);
    expect(ticks.at(-1)!).toBeGreaterThan(ticks[0]!);
  });
});
