// A test device for firmware/virtio-pci.S: the PCI host bridge on 0xCF8/0xCFC
// and one virtio-blk behind the virtio-pci transport, its queue run in this
// (the vCPU) thread, over an in-memory disk whose sector 0 starts "PCI-BLK!".
// The BAR sits where firmware would have put it, with Memory Space on.
import { PciHostBridge } from '../../src/devices/pci/index.ts';
import { VirtioBlk, SECTOR_SIZE } from '../../src/devices/virtio/blk.ts';
import { VirtioPci } from '../../src/devices/virtio/pci.ts';
import { VirtioDeviceRunner } from '../../src/devices/virtio/runner.ts';
import { VirtioSharedState } from '../../src/devices/virtio/shared-state.ts';
import { VirtioTransport } from '../../src/devices/virtio/transport.ts';
import type { PlatformContext } from '../../src/machine/bus-devices.ts';
import type { BlockBackend } from '../../src/storage/block-backend.ts';

export const VIRTIO_PCI_BLK_BAR = 0xe000_0000;
export const VIRTIO_PCI_BLK_IRQ = 11;

export function attach(platform: PlatformContext) {
  const bytes = new Uint8Array(8 * SECTOR_SIZE);
  bytes.set(new TextEncoder().encode('PCI-BLK!'));
  const disk: BlockBackend = {
    size: bytes.length,
    readOnly: true,
    description: 'memory disk',
    read: (offset, buffer) => buffer.set(bytes.subarray(offset, offset + buffer.length)),
    write: () => { throw new Error('read-only'); },
    blockStatus: (_offset, length) => ({ kind: 'data', length }),
    flush: () => {},
    close: () => {},
  };
  const blk = new VirtioBlk(disk, { name: 'blk0', serial: 'pci' });
  const state = VirtioSharedState.create(blk.info.queueMaxSizes.length);
  let interrupts = 0;
  const runner = new VirtioDeviceRunner(blk, state, platform.memory, { trigger: () => interrupts++ });
  const transport = new VirtioTransport(blk.info, state, { notify: (q) => runner.notify(q), statusChanged: () => runner.sync() });
  const bridge = new PciHostBridge();
  bridge.attach(platform.pio);
  const notifyAddresses: (number | null)[] = [];
  const pci = new VirtioPci(transport, {
    irq: VIRTIO_PCI_BLK_IRQ,
    mmio: platform.mmio,
    barAddress: VIRTIO_PCI_BLK_BAR,
    forbidden: platform.memory.ranges.map((r) => ({ base: r.guestAddress, length: r.size })),
    onNotifyMoved: (queue, address) => { notifyAddresses[queue] = address; },
  });
  const { slot } = bridge.addFunction(pci);
  return {
    report: () => ({
      slot, interrupts, reads: blk.counts.reads, notifyAddresses,
      badAccesses: pci.badAccesses, refusedMappings: pci.bar.refused, ignoredConfigAccesses: bridge.ignoredAccesses,
    }),
  };
}
