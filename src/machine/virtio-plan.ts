// Where each virtio device of a machine sits and how it is wired, decided once
// in the main thread: its transport window, its interrupt line, the shared
// state its two threads use, one eventfd per queue for notifications, and one
// for its interrupt. Both the vCPU thread and the virtio I/O thread receive
// this plan as plain data.
import { InputError } from '../errors.ts';
import { IrqLayout, MmioLayout } from '../layout.ts';
import type { VirtioDeviceInfo } from '../devices/virtio/device.ts';
import { VirtioPci, VIRTIO_PCI_BAR_SIZE } from '../devices/virtio/pci.ts';
import { VirtioSharedState } from '../devices/virtio/shared-state.ts';
import type { VirtioDeviceConfig, VirtioTransportKind } from './config.ts';

const VIRTIO_IRQS = IrqLayout.VIRTIO;

export interface PlannedVirtioDevice {
  config: VirtioDeviceConfig;
  /** Position among the machine's devices of its kind (virtio-devices.ts indexesWithinKind). */
  index: number;
  info: VirtioDeviceInfo;
  transport: VirtioTransportKind;
  /** The mmio register window, or the PCI function's initial BAR. */
  address: number;
  irq: number;
  state: SharedArrayBuffer;
  /** A virtio-pci function's configuration space (VirtioPci.createState), shared by every vCPU thread; null on mmio. */
  pciState: SharedArrayBuffer | null;
  /** One eventfd per queue: KVM signals it (ioeventfd) or the vCPU thread does (a notify exit). */
  notifyFds: number[];
  /** KVM_IRQFD eventfd for the device's line, or null to raise it with KVM_IRQ_LINE. */
  irqfd: number | null;
}

export interface PlanInput {
  config: VirtioDeviceConfig;
  index: number;
  info: VirtioDeviceInfo;
}

export function planVirtioDevices(
  devices: readonly PlanInput[],
  options: { defaultTransport: VirtioTransportKind; createEventFd(): number; useIrqfd: boolean },
): PlannedVirtioDevice[] {
  if (devices.length > VIRTIO_IRQS.length) {
    throw new InputError(`${devices.length} virtio devices: a tsvmm PC has interrupt lines for ${VIRTIO_IRQS.length}`);
  }
  let mmioIndex = 0;
  let pciIndex = 0;
  return devices.map(({ config, index, info }, i) => {
    const transport = config.transport ?? options.defaultTransport;
    const address = transport === 'mmio'
      ? MmioLayout.VIRTIO_MMIO_BASE + MmioLayout.VIRTIO_MMIO_STRIDE * mmioIndex++
      : MmioLayout.PCI_BAR_WINDOW_BASE + VIRTIO_PCI_BAR_SIZE * pciIndex++;
    const queueCount = info.queueMaxSizes.length;
    return {
      config, index, info, transport, address,
      irq: VIRTIO_IRQS[i]!,
      state: VirtioSharedState.create(queueCount).buffer,
      pciState: transport === 'pci' ? VirtioPci.createState(info, { irq: VIRTIO_IRQS[i]!, barAddress: address }) : null,
      notifyFds: info.queueMaxSizes.map(() => options.createEventFd()),
      irqfd: options.useIrqfd ? options.createEventFd() : null,
    };
  });
}
