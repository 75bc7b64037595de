// Numbers from the virtio 1.2 specification that every part of tsvmm's
// virtio implementation shares: device status bits, feature bits, device
// types and the split virtqueue's descriptor flags.

/** Device status field (virtio 1.2, 2.1). */
export const Status = {
  ACKNOWLEDGE: 1,
  DRIVER: 2,
  DRIVER_OK: 4,
  FEATURES_OK: 8,
  DEVICE_NEEDS_RESET: 0x40,
  FAILED: 0x80,
} as const;

/** Feature bits that belong to the transport and the rings, not to one device type (6). */
export const Feature = {
  RING_INDIRECT_DESC: 28n,
  RING_EVENT_IDX: 29n,
  VERSION_1: 32n,
} as const;

export function featureBit(bit: bigint): bigint {
  return 1n << bit;
}

/** Device IDs (5). */
export const DeviceType = {
  NET: 1,
  BLOCK: 2,
  CONSOLE: 3,
  ENTROPY: 4,
} as const;


/** Split virtqueue descriptor flags (2.7.5). */
export const DescriptorFlag = {
  NEXT: 1,
  WRITE: 2,
  INDIRECT: 4,
} as const;

/** avail.flags: the driver asks for no interrupts (when EVENT_IDX is off). */
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
/** used.flags: the device asks for no notifications (when EVENT_IDX is off). */
export const VIRTQ_USED_F_NO_NOTIFY = 1;

/** Interrupt status bits (ISR): a used buffer, or a configuration change. */
export const InterruptCause = {
  USED_BUFFER: 1,
  CONFIG_CHANGE: 2,
} as const;

/** The vendor ID virtio devices present: on PCI 0x1af4, on virtio-mmio "QEMU" by convention. */
export const VIRTIO_PCI_VENDOR = 0x1af4;
export const VIRTIO_MMIO_VENDOR = 0x554d4551;
