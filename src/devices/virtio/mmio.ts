// The virtio-mmio transport, version 2 register layout (virtio 1.2, 4.2.2):
// a 0x200-byte register window per device, announced to Linux on the kernel
// command line as virtio_mmio.device=<size>@<base>:<irq>.
// It keeps nothing of its own: every register value is in the transport's
// VirtioSharedState, so the objects of several vCPU threads are one device.
import type { BusDevice } from '../../bus/index.ts';
import type { VirtioTransport, QueueField } from './transport.ts';
import { VIRTIO_MMIO_VENDOR } from './spec.ts';

export const VIRTIO_MMIO_SIZE = 0x200;
const MAGIC = 0x74726976; // "virt"
const VERSION = 2;

/** Register offsets (4.2.2). */
export const MmioRegister = {
  MAGIC: 0x000,
  VERSION: 0x004,
  DEVICE_ID: 0x008,
  VENDOR_ID: 0x00c,
  DEVICE_FEATURES: 0x010,
  DEVICE_FEATURES_SEL: 0x014,
  DRIVER_FEATURES: 0x020,
  DRIVER_FEATURES_SEL: 0x024,
  QUEUE_SEL: 0x030,
  QUEUE_NUM_MAX: 0x034,
  QUEUE_NUM: 0x038,
  QUEUE_READY: 0x044,
  QUEUE_NOTIFY: 0x050,
  INTERRUPT_STATUS: 0x060,
  INTERRUPT_ACK: 0x064,
  STATUS: 0x070,
  QUEUE_DESC_LOW: 0x080,
  QUEUE_DESC_HIGH: 0x084,
  QUEUE_DRIVER_LOW: 0x090,
  QUEUE_DRIVER_HIGH: 0x094,
  QUEUE_DEVICE_LOW: 0x0a0,
  QUEUE_DEVICE_HIGH: 0x0a4,
  SHM_LEN_LOW: 0x0b0,
  SHM_LEN_HIGH: 0x0b4,
  SHM_BASE_LOW: 0x0b8,
  SHM_BASE_HIGH: 0x0bc,
  CONFIG_GENERATION: 0x0fc,
  CONFIG: 0x100,
} as const;

const QUEUE_ADDRESS_REGISTERS: Record<number, [Exclude<QueueField, 'size'>, boolean]> = {
  [MmioRegister.QUEUE_DESC_LOW]: ['descriptors', false],
  [MmioRegister.QUEUE_DESC_HIGH]: ['descriptors', true],
  [MmioRegister.QUEUE_DRIVER_LOW]: ['available', false],
  [MmioRegister.QUEUE_DRIVER_HIGH]: ['available', true],
  [MmioRegister.QUEUE_DEVICE_LOW]: ['used', false],
  [MmioRegister.QUEUE_DEVICE_HIGH]: ['used', true],
};

export class VirtioMmio implements BusDevice {
  readonly name: string;

  constructor(readonly transport: VirtioTransport) {
    this.name = `virtio-mmio ${transport.info.name}`;
  }

  /** Accesses the layout does not allow (wrong width, write to a read-only register), for reports. */
  get badAccesses(): number {
    return this.transport.state.badAccesses;
  }

  read(offset: number, size: number): number {
    const t = this.transport;
    if (offset >= MmioRegister.CONFIG) return t.readConfig(offset - MmioRegister.CONFIG, size);
    // Registers are 32 bits wide and read as a whole (4.2.2.2).
    if (size !== 4 || offset % 4 !== 0) {
      t.state.countBadAccess();
      return 0;
    }
    switch (offset) {
      case MmioRegister.MAGIC: return MAGIC;
      case MmioRegister.VERSION: return VERSION;
      case MmioRegister.DEVICE_ID: return t.info.type;
      case MmioRegister.VENDOR_ID: return VIRTIO_MMIO_VENDOR;
      case MmioRegister.DEVICE_FEATURES: return t.deviceFeatureWord();
      case MmioRegister.QUEUE_NUM_MAX: return t.queueMaxSize();
      case MmioRegister.QUEUE_READY: return t.queueReady() ? 1 : 0;
      case MmioRegister.INTERRUPT_STATUS: return t.state.interruptStatus;
      case MmioRegister.STATUS: return t.readStatus();
      // No shared memory regions: a length of all ones says "none" (4.2.2).
      case MmioRegister.SHM_LEN_LOW:
      case MmioRegister.SHM_LEN_HIGH:
      case MmioRegister.SHM_BASE_LOW:
      case MmioRegister.SHM_BASE_HIGH: return 0xffff_ffff;
      case MmioRegister.CONFIG_GENERATION: return t.state.configGeneration;
      default:
        t.state.countBadAccess();
        return 0;
    }
  }

  write(offset: number, size: number, value: number): void {
    const t = this.transport;
    if (offset >= MmioRegister.CONFIG) return;
    if (size !== 4 || offset % 4 !== 0) {
      t.state.countBadAccess();
      return;
    }
    const queueAddress = QUEUE_ADDRESS_REGISTERS[offset];
    if (queueAddress) {
      t.writeQueueHalf(queueAddress[0], queueAddress[1], value);
      return;
    }
    switch (offset) {
      case MmioRegister.DEVICE_FEATURES_SEL: t.state.deviceFeatureSelect = value; return;
      case MmioRegister.DRIVER_FEATURES: t.setDriverFeatureWord(value); return;
      case MmioRegister.DRIVER_FEATURES_SEL: t.state.driverFeatureSelect = value; return;
      case MmioRegister.QUEUE_SEL: t.selectQueue(value); return;
      case MmioRegister.QUEUE_NUM: t.writeQueueSize(value); return;
      case MmioRegister.QUEUE_READY: t.setQueueReady((value & 1) === 1); return;
      case MmioRegister.QUEUE_NOTIFY: t.notify(value & 0xffff); return;
      case MmioRegister.INTERRUPT_ACK: t.state.acknowledgeInterruptStatus(value); return;
      case MmioRegister.STATUS: t.writeStatus(value); return;
      default:
        t.state.countBadAccess();
    }
  }
}
