// The virtio-pci transport, modern (virtio 1.2, 4.1) and nothing else: no
// legacy I/O BAR, no MSI-X. One 32-bit memory BAR holds the four virtio
// structures, one page each; vendor-specific capabilities tell the driver
// where. Interrupts are INTx: the driver reads (and so clears) ISR.
//
// State: the function's configuration space is VIRTIO_PCI_STATE; everything
// behind the BAR is the transport's VirtioSharedState. Where this object has
// the BAR registered on its bus is wiring, re-derived from the state by
// bar.sync().
import { AddressSpace, type BusDevice } from '../../bus/index.ts';
import { DeviceStateLayout, type SavedDeviceState, type StatefulDevice } from '../device-state.ts';
import {
  MemoryBar, PCI_CONFIG_SIZE, PciCapabilityId, PciCommand, PciConfig, PciConfigSpace, PciStatus,
  type ForbiddenRange, type PciBarListener, type PciFunction,
} from '../pci/index.ts';
import type { VirtioDeviceInfo } from './device.ts';
import { VirtioSharedState } from './shared-state.ts';
import { DeviceType, VIRTIO_PCI_VENDOR } from './spec.ts';
import { VirtioTransport, type QueueField } from './transport.ts';

/**
 * A virtio-pci function's own state. The kind says only "virtio-pci":
 * restoreState also checks the vendor, device and class bytes, which name
 * the device type.
 */
export const VIRTIO_PCI_STATE = new DeviceStateLayout('virtio-pci', 1, {
  /** Configuration space: Command, BAR 0 as programmed, Interrupt Line, the PCI_CFG window's fields. */
  config: ['u8', PCI_CONFIG_SIZE],
});

/** Non-transitional devices are 0x1040 + the virtio device type (4.1.2). */
export const VIRTIO_PCI_DEVICE_BASE = 0x1040;

/** PCI class codes Linux and firmware expect for each device type. */
const CLASS_CODES: Record<number, number> = {
  [DeviceType.NET]: 0x020000, // network controller, Ethernet
  [DeviceType.BLOCK]: 0x018000, // mass storage, other
  [DeviceType.CONSOLE]: 0x078000, // communication controller, other
  [DeviceType.ENTROPY]: 0x00ff00, // unclassified
};
const CLASS_OTHER = 0xff0000;

/** virtio_pci_cap.cfg_type (4.1.4). */
export const VirtioPciCap = {
  COMMON_CFG: 1,
  NOTIFY_CFG: 2,
  ISR_CFG: 3,
  DEVICE_CFG: 4,
  PCI_CFG: 5,
} as const;

/** Fields of a virtio capability, from its first byte (cap_vndr). */
export const CapField = {
  CAP_LEN: 2,
  CFG_TYPE: 3,
  BAR: 4,
  ID: 5,
  OFFSET: 8,
  LENGTH: 12,
  /** virtio_pci_notify_cap only. */
  NOTIFY_OFF_MULTIPLIER: 16,
  /** virtio_pci_cfg_cap only. */
  PCI_CFG_DATA: 16,
} as const;

/** The BAR and where each structure sits in it: one page each. */
export const VIRTIO_PCI_BAR = 0;
export const VirtioPciRegion = {
  COMMON: 0x0000,
  ISR: 0x1000,
  DEVICE: 0x2000,
  NOTIFY: 0x3000,
} as const;
const REGION_SIZE = 0x1000;
export const VIRTIO_PCI_BAR_SIZE = 0x4000;
/** Queue i is notified at NOTIFY + i * 4 (4.1.4.4): every queue gets its own address, so its own ioeventfd. */
export const NOTIFY_OFF_MULTIPLIER = 4;

/** struct virtio_pci_common_cfg (4.1.4.3). */
export const CommonCfg = {
  DEVICE_FEATURE_SELECT: 0x00,
  DEVICE_FEATURE: 0x04,
  DRIVER_FEATURE_SELECT: 0x08,
  DRIVER_FEATURE: 0x0c,
  MSIX_CONFIG: 0x10,
  NUM_QUEUES: 0x12,
  DEVICE_STATUS: 0x14,
  CONFIG_GENERATION: 0x15,
  QUEUE_SELECT: 0x16,
  QUEUE_SIZE: 0x18,
  QUEUE_MSIX_VECTOR: 0x1a,
  QUEUE_ENABLE: 0x1c,
  QUEUE_NOTIFY_OFF: 0x1e,
  QUEUE_DESC_LO: 0x20,
  QUEUE_DESC_HI: 0x24,
  QUEUE_DRIVER_LO: 0x28,
  QUEUE_DRIVER_HI: 0x2c,
  QUEUE_DEVICE_LO: 0x30,
  QUEUE_DEVICE_HI: 0x34,
} as const;
/** Up to queue_device: queue_notify_data and queue_reset need features tsvmm does not offer. */
export const COMMON_CFG_SIZE = 0x38;

/** "No MSI-X vector": what the vector fields always read, so the driver falls back to INTx. */
export const VIRTIO_MSI_NO_VECTOR = 0xffff;

/** The width of each common configuration field, by offset; the driver must use it (4.1.3.1). 64-bit fields go as two halves. */
const COMMON_WIDTH = new Uint8Array(COMMON_CFG_SIZE);
for (const offset of [0x00, 0x04, 0x08, 0x0c, 0x20, 0x24, 0x28, 0x2c, 0x30, 0x34]) COMMON_WIDTH[offset] = 4;
for (const offset of [0x10, 0x12, 0x16, 0x18, 0x1a, 0x1c, 0x1e]) COMMON_WIDTH[offset] = 2;
for (const offset of [0x14, 0x15]) COMMON_WIDTH[offset] = 1;

const QUEUE_ADDRESS_FIELDS: Record<number, [Exclude<QueueField, 'size'>, boolean]> = {
  [CommonCfg.QUEUE_DESC_LO]: ['descriptors', false],
  [CommonCfg.QUEUE_DESC_HI]: ['descriptors', true],
  [CommonCfg.QUEUE_DRIVER_LO]: ['available', false],
  [CommonCfg.QUEUE_DRIVER_HI]: ['available', true],
  [CommonCfg.QUEUE_DEVICE_LO]: ['used', false],
  [CommonCfg.QUEUE_DEVICE_HI]: ['used', true],
};

/** A virtio capability's body: everything after cap_vndr and cap_next. */
function virtioCapability(cfgType: number, offset: number, length: number, extra?: number): Uint8Array {
  const body = new Uint8Array(extra === undefined ? 14 : 18);
  const view = new DataView(body.buffer);
  body[CapField.CAP_LEN - 2] = body.length + 2;
  body[CapField.CFG_TYPE - 2] = cfgType;
  body[CapField.BAR - 2] = VIRTIO_PCI_BAR;
  view.setUint32(CapField.OFFSET - 2, offset, true);
  view.setUint32(CapField.LENGTH - 2, length, true);
  if (extra !== undefined) view.setUint32(CapField.NOTIFY_OFF_MULTIPLIER - 2, extra, true);
  return body;
}

function overlaps(offset: number, size: number, start: number, length: number): boolean {
  return offset < start + length && start < offset + size;
}

export interface VirtioPciOptions {
  /** The legacy PIC IRQ INTA# is wired to; it goes in Interrupt Line. */
  irq: number;
  /** The bus the BAR is registered on while the guest has it decoding. */
  mmio: AddressSpace;
  /**
   * Where firmware put the BAR (16 KiB aligned, below 4 GiB): the function then
   * starts with Memory Space enabled, as a BIOS leaves it, and Linux keeps it.
   * Without it the BAR is unassigned and decodes nothing until programmed.
   */
  barAddress?: number;
  /** Guest RAM and anything else a BAR must never cover. */
  forbidden?: readonly ForbiddenRange[];
  barListener?: PciBarListener;
  /**
   * The BAR moved or stopped decoding: each queue's notify address now (null:
   * nothing). The machine re-registers its ioeventfds (2 bytes, no datamatch),
   * dropping the ones it had for the old address.
   */
  onNotifyMoved?: (queue: number, address: number | null) => void;
  /**
   * The function's state (VIRTIO_PCI_STATE), used as it is: another thread's
   * object over the same device made it, or createState() did. Absent: a
   * fresh one, powered on here (with the BAR where `barAddress` says).
   */
  state?: SharedArrayBuffer;
}

export class VirtioPci implements PciFunction, BusDevice, StatefulDevice {
  readonly name: string;
  readonly state: SharedArrayBuffer;
  readonly config: PciConfigSpace;
  readonly bar: MemoryBar;
  private readonly deviceConfigLength: number;
  private readonly pciCfgCap: number;

  /**
   * The power-on state of the function that `info` and `firmware` describe,
   * for the machine to share between the vCPU threads that serve it.
   */
  static createState(info: VirtioDeviceInfo, firmware: Pick<VirtioPciOptions, 'irq' | 'barAddress'>): SharedArrayBuffer {
    const transport = new VirtioTransport(info, VirtioSharedState.create(info.queueMaxSizes.length), { notify() {}, statusChanged() {} });
    // Built on a bus of its own: only the bytes it powers on are kept.
    return new VirtioPci(transport, { irq: firmware.irq, barAddress: firmware.barAddress, mmio: AddressSpace.memory() }).state;
  }

  constructor(readonly transport: VirtioTransport, private readonly options: VirtioPciOptions) {
    const { info } = transport;
    this.name = `virtio-pci ${info.name}`;
    if (transport.queueCount * NOTIFY_OFF_MULTIPLIER > REGION_SIZE) throw new RangeError(`${this.name}: too many queues for the notify region`);
    const powerOn = options.state === undefined;
    this.state = options.state ?? VIRTIO_PCI_STATE.create();
    const deviceId = VIRTIO_PCI_DEVICE_BASE + info.type;
    this.config = new PciConfigSpace({
      vendorId: VIRTIO_PCI_VENDOR,
      deviceId,
      revision: 1,
      classCode: CLASS_CODES[info.type] ?? CLASS_OTHER,
      // Non-transitional devices should have a subsystem ID of 0x40 or more (4.1.2.1).
      subsystemVendorId: VIRTIO_PCI_VENDOR,
      subsystemId: deviceId,
      interruptPin: 1,
      interruptLine: options.irq,
    }, VIRTIO_PCI_STATE.views(this.state).config, powerOn);
    this.config.defineMemoryBar(VIRTIO_PCI_BAR, VIRTIO_PCI_BAR_SIZE);

    const vendor = PciCapabilityId.VENDOR_SPECIFIC;
    this.config.addCapability(vendor, virtioCapability(VirtioPciCap.COMMON_CFG, VirtioPciRegion.COMMON, COMMON_CFG_SIZE));
    this.config.addCapability(vendor, virtioCapability(
      VirtioPciCap.NOTIFY_CFG, VirtioPciRegion.NOTIFY, transport.queueCount * NOTIFY_OFF_MULTIPLIER, NOTIFY_OFF_MULTIPLIER,
    ));
    this.config.addCapability(vendor, virtioCapability(VirtioPciCap.ISR_CFG, VirtioPciRegion.ISR, 1));
    // A device without configuration (rng) has no DEVICE_CFG: Linux refuses a zero-length one.
    this.deviceConfigLength = Math.min(info.config.length, REGION_SIZE);
    if (this.deviceConfigLength > 0) {
      this.config.addCapability(vendor, virtioCapability(VirtioPciCap.DEVICE_CFG, VirtioPciRegion.DEVICE, this.deviceConfigLength));
    }
    // The PCI_CFG window (4.1.4.9): the driver may change bar, offset, length and data.
    this.pciCfgCap = this.config.addCapability(vendor, virtioCapability(VirtioPciCap.PCI_CFG, 0, 0, 0));
    this.config.setWritable(this.pciCfgCap + CapField.BAR, 1, 0xff);
    this.config.setWritable(this.pciCfgCap + CapField.OFFSET, 4, 0xffff_ffff);
    this.config.setWritable(this.pciCfgCap + CapField.LENGTH, 4, 0xffff_ffff);
    this.config.setWritable(this.pciCfgCap + CapField.PCI_CFG_DATA, 4, 0xffff_ffff);

    this.bar = new MemoryBar(this.config, VIRTIO_PCI_BAR, this, {
      mmio: options.mmio,
      forbidden: options.forbidden,
      listener: options.barListener,
      moved: (address) => this.notifyMoved(address),
    });
    if (powerOn && options.barAddress !== undefined) {
      this.config.setBarAddress(VIRTIO_PCI_BAR, options.barAddress);
      this.config.command = PciCommand.MEMORY;
      this.bar.sync();
      if (this.bar.mapped === null) throw new RangeError(`${this.name}: BAR at 0x${options.barAddress.toString(16)} overlaps RAM or another device`);
    }
    // Over a state in use, decode wherever the guest has the BAR now.
    if (!powerOn) this.bar.sync();
  }

  /** Accesses the spec does not allow (wrong width, unaligned, read-only field, bad PCI_CFG window), for reports. */
  get badAccesses(): number {
    return this.transport.state.badAccesses;
  }

  /** The configuration space only: the virtio registers behind the BAR are saved with the device (VirtioDeviceRunner). */
  saveState(): SavedDeviceState {
    return VIRTIO_PCI_STATE.save(this.state);
  }

  /** Refuses another device's state, then moves the BAR to where the restored state has it. */
  restoreState(saved: SavedDeviceState): void {
    VIRTIO_PCI_STATE.check(saved);
    // The configuration space is the layout's first field: the saved bytes start with it.
    this.config.checkIdentity(saved.bytes.subarray(0, PCI_CONFIG_SIZE));
    VIRTIO_PCI_STATE.restore(saved, this.state);
    this.bar.sync();
  }

  /** Where the driver notifies `queue` now, or null while the BAR decodes nothing. */
  notifyAddress(queue: number): number | null {
    const base = this.bar.mapped;
    return base === null ? null : base + VirtioPciRegion.NOTIFY + queue * NOTIFY_OFF_MULTIPLIER;
  }

  private notifyMoved(base: number | null): void {
    const hook = this.options.onNotifyMoved;
    if (!hook) return;
    for (let queue = 0; queue < this.transport.queueCount; queue++) hook(queue, base === null ? null : this.notifyAddress(queue));
  }

  // --- configuration space -------------------------------------------------

  readConfig(offset: number, size: number): number {
    if (overlaps(offset, size, PciConfig.STATUS, 1)) {
      this.config.setStatus(PciStatus.INTERRUPT, this.transport.state.interruptStatus !== 0);
    }
    if (overlaps(offset, size, this.pciCfgCap + CapField.PCI_CFG_DATA, 4)) this.windowRead();
    return this.config.read(offset, size);
  }

  writeConfig(offset: number, size: number, value: number): void {
    this.config.write(offset, size, value);
    if (overlaps(offset, size, this.pciCfgCap + CapField.PCI_CFG_DATA, 4)) this.windowWrite();
    this.bar.sync();
  }

  /** The BAR access the PCI_CFG window describes, or null (counted) when the driver set it up wrong. */
  private window(): { offset: number; length: number } | null {
    const cap = this.pciCfgCap;
    const bar = this.config.u8(cap + CapField.BAR);
    const offset = this.config.u32(cap + CapField.OFFSET);
    const length = this.config.u32(cap + CapField.LENGTH);
    // Never aimed: a dump of configuration space (lspci -xxx) reads the data bytes as they are.
    if (length === 0) return null;
    if (bar !== VIRTIO_PCI_BAR || (length !== 1 && length !== 2 && length !== 4) || offset % length !== 0 || offset + length > VIRTIO_PCI_BAR_SIZE) {
      this.bad();
      return null;
    }
    return { offset, length };
  }

  /** Reading pci_cfg_data reads cap.length bytes of the BAR into it first. */
  private windowRead(): void {
    const w = this.window();
    if (!w) return;
    const value = this.read(w.offset, w.length);
    const data = this.pciCfgCap + CapField.PCI_CFG_DATA;
    for (let i = 0; i < w.length; i++) this.config.bytes[data + i] = (value >>> (8 * i)) & 0xff;
  }

  /** Writing pci_cfg_data writes its first cap.length bytes to the BAR. */
  private windowWrite(): void {
    const w = this.window();
    if (!w) return;
    this.write(w.offset, w.length, this.config.read(this.pciCfgCap + CapField.PCI_CFG_DATA, w.length));
  }

  // --- the BAR ---------------------------------------------------------------

  read(offset: number, size: number): number {
    const region = offset - (offset % REGION_SIZE);
    const at = offset - region;
    if (at + size > REGION_SIZE) return this.bad();
    switch (region) {
      case VirtioPciRegion.COMMON: return this.readCommon(at, size);
      // Reading ISR returns and clears it (4.1.4.5): this is the interrupt's acknowledgement.
      case VirtioPciRegion.ISR: return at === 0 && size === 1 ? this.transport.state.takeInterruptStatus() : this.bad();
      case VirtioPciRegion.DEVICE: return at + size <= this.deviceConfigLength ? this.transport.readConfig(at, size) : this.bad();
      default: return this.bad(); // the notify region is write-only
    }
  }

  write(offset: number, size: number, value: number): void {
    const region = offset - (offset % REGION_SIZE);
    const at = offset - region;
    if (at + size > REGION_SIZE) {
      this.bad();
      return;
    }
    switch (region) {
      case VirtioPciRegion.COMMON: this.writeCommon(at, size, value); return;
      case VirtioPciRegion.NOTIFY: this.writeNotify(at, size); return;
      // tsvmm's devices have no writable configuration fields: dropped, as on virtio-mmio.
      case VirtioPciRegion.DEVICE: if (at + size > this.deviceConfigLength) this.bad(); return;
      default: this.bad(); // ISR is read-only
    }
  }

  private bad(): number {
    this.transport.state.countBadAccess();
    return 0;
  }

  private readCommon(offset: number, size: number): number {
    if (offset >= COMMON_CFG_SIZE || COMMON_WIDTH[offset] !== size) return this.bad();
    const t = this.transport;
    const state = t.state;
    switch (offset) {
      case CommonCfg.DEVICE_FEATURE_SELECT: return state.deviceFeatureSelect >>> 0;
      case CommonCfg.DEVICE_FEATURE: return t.deviceFeatureWord();
      case CommonCfg.DRIVER_FEATURE_SELECT: return state.driverFeatureSelect >>> 0;
      case CommonCfg.DRIVER_FEATURE: return t.driverFeatureWord();
      case CommonCfg.MSIX_CONFIG: return VIRTIO_MSI_NO_VECTOR;
      case CommonCfg.NUM_QUEUES: return t.queueCount;
      case CommonCfg.DEVICE_STATUS: return t.readStatus();
      case CommonCfg.CONFIG_GENERATION: return state.configGeneration & 0xff;
      case CommonCfg.QUEUE_SELECT: return state.queueSelect & 0xffff;
      // Until the driver picks a size, queue_size reads the largest the queue supports (4.1.4.3).
      case CommonCfg.QUEUE_SIZE: return t.readQueue('size') || t.queueMaxSize();
      case CommonCfg.QUEUE_MSIX_VECTOR: return VIRTIO_MSI_NO_VECTOR;
      case CommonCfg.QUEUE_ENABLE: return t.queueReady() ? 1 : 0;
      case CommonCfg.QUEUE_NOTIFY_OFF: return Math.max(t.selectedQueue(), 0);
      default: {
        const [field, high] = QUEUE_ADDRESS_FIELDS[offset]!;
        const address = t.readQueue(field);
        return high ? Math.floor(address / 2 ** 32) : address % 2 ** 32;
      }
    }
  }

  private writeCommon(offset: number, size: number, value: number): void {
    if (offset >= COMMON_CFG_SIZE || COMMON_WIDTH[offset] !== size) {
      this.bad();
      return;
    }
    const t = this.transport;
    const queueAddress = QUEUE_ADDRESS_FIELDS[offset];
    if (queueAddress) {
      // Linux writes the 64-bit addresses as two 32-bit halves (vp_iowrite64_twopart).
      t.writeQueueHalf(queueAddress[0], queueAddress[1], value >>> 0);
      return;
    }
    switch (offset) {
      case CommonCfg.DEVICE_FEATURE_SELECT: t.state.deviceFeatureSelect = value; return;
      case CommonCfg.DRIVER_FEATURE_SELECT: t.state.driverFeatureSelect = value; return;
      case CommonCfg.DRIVER_FEATURE: t.setDriverFeatureWord(value); return;
      // Without MSI-X a vector cannot be set: it reads back NO_VECTOR, and the driver uses INTx.
      case CommonCfg.MSIX_CONFIG:
      case CommonCfg.QUEUE_MSIX_VECTOR: return;
      case CommonCfg.DEVICE_STATUS: t.writeStatus(value); return;
      case CommonCfg.QUEUE_SELECT: t.selectQueue(value); return;
      case CommonCfg.QUEUE_SIZE: t.writeQueueSize(value); return;
      case CommonCfg.QUEUE_ENABLE: this.enableQueue(value); return;
      default: this.bad(); // device_feature, num_queues, config_generation, queue_notify_off are read-only
    }
  }

  /** The driver may only write 1 (4.1.4.3.2); a queue it never sized gets the size it read. */
  private enableQueue(value: number): void {
    const t = this.transport;
    if (value !== 1) {
      this.bad();
      return;
    }
    if (t.readQueue('size') === 0) t.writeQueueSize(t.queueMaxSize());
    t.setQueueReady(true);
  }

  /** The exit path of a notification (with an ioeventfd KVM signals the queue and we never see it). */
  private writeNotify(offset: number, size: number): void {
    const queue = offset / NOTIFY_OFF_MULTIPLIER;
    if (size !== 2 || !Number.isInteger(queue) || queue >= this.transport.queueCount) {
      this.bad();
      return;
    }
    this.transport.notify(queue);
  }

  report(): Record<string, unknown> {
    return { name: this.name, bar: this.bar.mapped, badAccesses: this.badAccesses, refusedMappings: this.bar.refused };
  }
}
