// virtio-pci through real KVM exits: firmware/virtio-pci.S finds the device
// with configuration mechanism #1 (port I/O of every width), walks its
// capabilities, and reads sector 0 through the BAR (MMIO of every width).
import { closeSync, mkdtempSync, openSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { firmwarePath, ROOT } from '../bench/lib/artifacts.ts';
import { Machine } from '../src/machine/machine.ts';
import { hasKvm } from './helpers/kvm.ts';

const scratch = mkdtempSync(join(tmpdir(), 'tsvmm-virtio-pci-'));

describe.skipIf(!hasKvm)('virtio-pci in a guest', () => {
  it('a ring-3 driver finds virtio-blk on PCI, brings it up and reads sector 0', async () => {
    const consoleFile = join(scratch, 'console.out');
    const fd = openSync(consoleFile, 'w');
    const machine = Machine.create({
      memoryBytes: 32 << 20,
      flat: { path: firmwarePath('virtio-pci') },
      deviceModules: [join(ROOT, 'test', 'devices', 'virtio-pci-blk.ts')],
      consoleFd: fd,
    });
    const result = await machine.run();
    closeSync(fd);
    machine.close();
    expect(readFileSync(consoleFile, 'utf8')).toBe(
      'virtio-pci slot=01 bar=E0000000 caps=12345 notify=E0003000 status=00 used=0001 len=00000201 isr=01,00 data=214B4C422D494350\n',
    );
    expect(result.stop).toMatchObject({ cause: 'debug-exit', status: 1 });
    // One ignored access: the conf1 probe's byte write to 0xCFB.
    expect(result.reports[0]).toEqual({
      slot: 1, interrupts: 1, reads: 1, notifyAddresses: [0xe000_3000], badAccesses: 0, refusedMappings: 0, ignoredConfigAccesses: 1,
    });
  });
});
