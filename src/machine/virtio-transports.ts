// The vCPU thread's half of the virtio devices: their transports on the buses
// (virtio-mmio windows, or PCI functions behind a host bridge).
// A register access the guest makes exits here; a queue notification that
// exits here (no ioeventfd for it) is passed on to the I/O thread through the
// queue's eventfd, exactly as KVM would have signalled it.
import type { AddressSpace } from '../bus/index.ts';
import { PciHostBridge, type ForbiddenRange } from '../devices/pci/index.ts';
import { VirtioMmio, VIRTIO_MMIO_SIZE } from '../devices/virtio/mmio.ts';
import { VirtioPci } from '../devices/virtio/pci.ts';
import { VirtioSharedState } from '../devices/virtio/shared-state.ts';
import { VirtioTransport } from '../devices/virtio/transport.ts';
import { signalEventFd, type VmFd } from '../kvm/index.ts';
import type { PlannedVirtioDevice } from './virtio-plan.ts';

export interface VirtioBuses {
  pio: AddressSpace;
  mmio: AddressSpace;
  vm: VmFd;
}

export function attachVirtioTransports(
  buses: VirtioBuses,
  virtio: { devices: PlannedVirtioDevice[]; controlFd: number },
  options: { ioeventfd: boolean; forbidden: readonly ForbiddenRange[] },
): void {
  const bridge = virtio.devices.some((d) => d.transport === 'pci') ? new PciHostBridge() : null;
  bridge?.attach(buses.pio);
  for (const planned of virtio.devices) {
    const state = new VirtioSharedState(planned.state, planned.info.queueMaxSizes.length);
    const transport = new VirtioTransport(planned.info, state, {
      notify: (queue) => signalEventFd(planned.notifyFds[queue]!),
      statusChanged: () => signalEventFd(virtio.controlFd),
    });
    if (planned.transport === 'mmio') {
      buses.mmio.register(planned.address, VIRTIO_MMIO_SIZE, new VirtioMmio(transport));
    } else {
      bridge!.addFunction(new VirtioPci(transport, {
        irq: planned.irq,
        mmio: buses.mmio,
        barAddress: planned.address,
        forbidden: options.forbidden,
        ...(options.ioeventfd ? { onNotifyMoved: notifyEventFds(buses.vm, planned.notifyFds) } : {}),
      }));
    }
  }
}

/**
 * Keeps one ioeventfd per queue on the queue's notify address, wherever the
 * guest maps the BAR: Linux writes the queue index there as 16 bits, and any
 * write to the address is the notification.
 */
function notifyEventFds(vm: VmFd, fds: readonly number[]): (queue: number, address: number | null) => void {
  const current: (number | null)[] = fds.map(() => null);
  return (queue, address) => {
    const fd = fds[queue]!;
    const old = current[queue];
    if (old === address) return;
    // A guest's BAR write must never throw out of the exit: should KVM refuse
    // an ioeventfd, the notify write exits and still reaches the transport.
    try {
      if (old !== null && old !== undefined) vm.ioeventfd({ address: old, length: 2, fd, pio: false, deassign: true });
      current[queue] = null;
      if (address !== null) {
        vm.ioeventfd({ address, length: 2, fd, pio: false });
        current[queue] = address;
      }
    } catch {
      // Left without an ioeventfd, the queue's notifications take the exit path.
    }
  };
}
