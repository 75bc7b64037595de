// The vCPU thread's half of the virtio devices: their transports on the buses.
// A register access the guest makes exits here; a queue notification that
// exits here (no ioeventfd for it) is passed on to the I/O thread through the
// queue's eventfd, exactly as KVM would have signalled it.
import type { AddressSpace } from '../bus/index.ts';
import { VirtioMmio, VIRTIO_MMIO_SIZE } from '../devices/virtio/mmio.ts';
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
  options: { ioeventfd: boolean },
): VirtioTransport[] {
  return virtio.devices.map((planned) => {
    const state = new VirtioSharedState(planned.state, planned.info.queueMaxSizes.length);
    const transport = new VirtioTransport(planned.info, state, {
      notify: (queue) => signalEventFd(planned.notifyFds[queue]!),
      statusChanged: () => signalEventFd(virtio.controlFd),
    });
    if (planned.transport === 'mmio') {
      buses.mmio.register(planned.address, VIRTIO_MMIO_SIZE, new VirtioMmio(transport));
    } else {
      throw new Error(`${planned.info.name}: virtio-pci is not wired yet (${options.ioeventfd})`);
    }
    return transport;
  });
}
