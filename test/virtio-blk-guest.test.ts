// virtio-blk through real KVM exits: firmware/virtio-blk.S is a virtio driver
// in ring 3 that brings the device up over virtio-mmio (status, features,
// queue setup) and reads sector 0. Its notification reaches the virtio I/O
// thread through an ioeventfd (or, with --no-ioeventfd, as an MMIO exit), and
// the completion comes back through the used ring and an irqfd.
import { closeSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { firmwarePath } from '../bench/lib/artifacts.ts';
import { Machine, type MachineResult } from '../src/machine/machine.ts';
import type { MachineConfig } from '../src/machine/config.ts';
import { hasKvm, tsvmm } from './helpers/kvm.ts';

const dir = mkdtempSync(join(tmpdir(), 'tsvmm-virtio-blk-'));
const FIRST_QWORD = 0x0123_4567_89ab_cdefn;

function rawDisk(name: string, sectors = 64): string {
  const path = join(dir, name);
  const bytes = Buffer.alloc(sectors * 512);
  bytes.writeBigUInt64LE(FIRST_QWORD, 0);
  writeFileSync(path, bytes);
  return path;
}

async function runFirmware(config: Partial<MachineConfig>): Promise<{ result: MachineResult; console: string; trace: string }> {
  const name = Math.random().toString(36).slice(2);
  const consoleFile = join(dir, `console-${name}`);
  const traceFile = join(dir, `trace-${name}`);
  const fd = openSync(consoleFile, 'w');
  const traceFd = openSync(traceFile, 'w');
  const machine = Machine.create({ memoryBytes: 32 << 20, flat: { path: firmwarePath('virtio-blk') }, irqchip: true, consoleFd: fd, traceFd, ...config });
  try {
    const result = await machine.run();
    return { result, console: readFileSync(consoleFile, 'utf8'), trace: readFileSync(traceFile, 'utf8') };
  } finally {
    closeSync(fd);
    closeSync(traceFd);
    machine.close();
  }
}

/** The guest's own I/O and MMIO exits; kicks (KVM_EXIT_INTR) depend on the host's timing, not on the guest. */
function deviceExits(trace: string): string[] {
  return trace.split('\n').filter((line) => /^exit (IO|MMIO) /.test(line));
}

const EXPECTED = `virtio-blk id=00000002 status=00 used=0001 len=00000201 isr=00000001 data=${FIRST_QWORD.toString(16).toUpperCase().padStart(16, '0')}\n`;

describe.skipIf(!hasKvm)('virtio-blk from a firmware driver', () => {
  it('comes up over virtio-mmio and reads sector 0 (ioeventfd notify, irqfd interrupt)', async () => {
    const { result, console } = await runFirmware({ virtio: [{ kind: 'blk', path: rawDisk('a.img') }] });
    expect(console).toBe(EXPECTED);
    expect(result.stop).toMatchObject({ cause: 'debug-exit', status: 1 });
    expect(result.virtio[0]).toMatchObject({ name: 'blk0', errors: 0, reads: 1, bytesRead: 512, interrupts: 1 });
  });

  it('the same through exits: the notify write exits to tsvmm and the interrupt is KVM_IRQ_LINE', async () => {
    const viaEventFd = await runFirmware({ virtio: [{ kind: 'blk', path: rawDisk('b.img') }], traceExits: true });
    const viaExits = await runFirmware({ virtio: [{ kind: 'blk', path: rawDisk('c.img') }], ioeventfd: false, irqfd: false, traceExits: true });
    expect(viaExits.console).toBe(EXPECTED);
    expect(viaExits.result.virtio[0]).toMatchObject({ errors: 0, reads: 1, interrupts: 1 });
    // Exactly one more exit: the write to QueueNotify (offset 0x50) that KVM handled itself before.
    const before = deviceExits(viaEventFd.trace);
    const after = deviceExits(viaExits.trace);
    const extra = after.filter((line) => !before.includes(line));
    expect(after.length - before.length).toBe(1);
    expect(extra).toHaveLength(1);
    expect(extra[0]).toMatch(/^exit MMIO write addr=0x[0-9a-f]*050 len=4 data=0x00000000$/);
  });

  it('through the command line, and a missing image is one clear error', () => {
    const ok = tsvmm(['run', '--flat', firmwarePath('virtio-blk'), '--irqchip', '--disk', `${rawDisk('d.img')},format=raw`]);
    expect(ok.stdout).toBe(EXPECTED);
    expect(ok.status).toBe(1);
    const missing = tsvmm(['run', '--flat', firmwarePath('virtio-blk'), '--irqchip', '--disk', join(dir, 'nope.img')]);
    expect(missing.status).toBe(2);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
    expect(missing.stderr).toMatch(/^tsvmm: .*nope\.img/);
  });

  it('blkload (the benchmark load) keeps batches of requests in flight, sequential and random', async () => {
    for (const random of [0, 1]) {
      const image = Buffer.from(readFileSync(firmwarePath('blkload')));
      image.writeUInt32LE(100, 12); // requests
      image.writeUInt32LE(4096, 16); // bytes each
      image.writeUInt32LE(16, 20); // depth
      image.writeUInt32LE(random, 24);
      const path = join(dir, `blkload-${random}.bin`);
      writeFileSync(path, image);
      const { result, console } = await runFirmware({ flat: { path }, virtio: [{ kind: 'blk', path: rawDisk(`load-${random}.img`, 2048) }] });
      expect(console).toBe('blkload done errors=00000000\n');
      // 7 batches of up to 16: a polling driver asked for no interrupts.
      expect(result.virtio[0]).toMatchObject({ reads: 100, bytesRead: 100 * 4096, errors: 0, interrupts: 0 });
    }
  });

  it('refuses more virtio devices than there are free interrupt lines, in one line', () => {
    const r = tsvmm(['run', '--flat', firmwarePath('virtio-blk'), '--irqchip', ...Array(9).fill(['--device', 'virtio-rng']).flat()]);
    expect(r.status).toBe(2);
    expect(r.stderr).toBe('tsvmm: 9 virtio devices: a tsvmm PC has interrupt lines for 8\n');
  });

  it('refuses virtio on a flat guest without the interrupt controllers', () => {
    const r = tsvmm(['run', '--flat', firmwarePath('virtio-blk'), '--disk', rawDisk('e.img')]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/virtio devices need the interrupt controllers: use --irqchip/);
  });
});
