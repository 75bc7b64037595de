// The register semantics both virtio transports share (virtio 1.2, 2 and 3):
// feature words by selector, the device status state machine, per-queue setup
// by queue selector, the interrupt status and the configuration space. The
// mmio and pci transports only map their register layouts onto this.
// It runs in the thread that handles exits; the queues themselves are
// processed elsewhere, which is why every value lands in VirtioSharedState.
// It keeps no register of its own (the device feature words are fixed by the
// device's info), so the transports of several vCPU threads over one shared
// state are one device.
import type { VirtioDeviceInfo } from './device.ts';
import { QueueWord, type VirtioSharedState } from './shared-state.ts';
import { Feature, featureBit, Status } from './spec.ts';

/** What the transport asks of whoever runs the device's queues. */
export interface VirtioTransportHooks {
  /** The driver notified `queue` through a register write that exited to us (no ioeventfd). */
  notify(queue: number): void;
  /** Status changed in a way the device thread must act on (DRIVER_OK, or a reset to carry out). */
  statusChanged(): void;
}

/** How long a reset may wait for the I/O thread to drop the old queues. */
const RESET_TIMEOUT_MS = 1000;

/** Queue fields a transport reads and writes through the queue selector. */
export type QueueField = 'size' | 'descriptors' | 'available' | 'used';

const ADDRESS_WORD: Record<Exclude<QueueField, 'size'>, QueueWord> = {
  descriptors: QueueWord.DESCRIPTORS_LOW,
  available: QueueWord.AVAILABLE_LOW,
  used: QueueWord.USED_LOW,
};

export class VirtioTransport {
  /** Device features as two 32-bit words, the way the driver reads them. */
  private readonly featureWords: readonly number[];

  constructor(readonly info: VirtioDeviceInfo, readonly state: VirtioSharedState, private readonly hooks: VirtioTransportHooks) {
    // Every virtio 1.x device offers VERSION_1; tsvmm's queues support indirect
    // descriptors and event indexes for every device.
    const features = info.features | featureBit(Feature.VERSION_1) | featureBit(Feature.RING_INDIRECT_DESC) | featureBit(Feature.RING_EVENT_IDX);
    this.featureWords = [Number(features & 0xffff_ffffn), Number(features >> 32n)];
  }

  get features(): bigint {
    return (BigInt(this.featureWords[1]!) << 32n) | BigInt(this.featureWords[0]!);
  }

  get queueCount(): number {
    return this.info.queueMaxSizes.length;
  }

  deviceFeatureWord(): number {
    return this.featureWords[this.state.deviceFeatureSelect >>> 0] ?? 0;
  }

  driverFeatureWord(): number {
    const select = this.state.driverFeatureSelect >>> 0;
    if (select > 1) return 0;
    return Number((this.state.driverFeatures >> BigInt(32 * select)) & 0xffff_ffffn);
  }

  /** The driver writes its features 32 bits at a time; only before FEATURES_OK counts. */
  setDriverFeatureWord(value: number): void {
    const select = this.state.driverFeatureSelect >>> 0;
    if (select > 1 || this.state.status & Status.FEATURES_OK) return;
    const shift = BigInt(32 * select);
    const others = this.state.driverFeatures & ~(0xffff_ffffn << shift);
    this.state.driverFeatures = others | (BigInt(value >>> 0) << shift);
  }

  readStatus(): number {
    return this.state.status;
  }

  /**
   * The status state machine (2.1, 3.1.1): 0 resets; otherwise the driver adds
   * bits. FEATURES_OK sticks only when the driver accepted a subset of what we
   * offered including VERSION_1; the driver reads it back to find out.
   */
  writeStatus(value: number): void {
    value &= 0xff;
    if (value === 0) {
      this.reset();
      return;
    }
    const current = this.state.status;
    let added = value & ~current;
    if (added & Status.FEATURES_OK) {
      const accepted = this.state.driverFeatures;
      const acceptable = (accepted & ~this.features) === 0n && (accepted & featureBit(Feature.VERSION_1)) !== 0n;
      if (!acceptable) added &= ~Status.FEATURES_OK;
    }
    // DRIVER_OK without FEATURES_OK is a driver bug: the device stays unusable.
    if (added & Status.DRIVER_OK && !((current | added) & Status.FEATURES_OK)) added &= ~Status.DRIVER_OK;
    if (added === 0) return;
    this.state.addStatus(added);
    if (added & Status.DRIVER_OK) this.hooks.statusChanged();
  }

  private reset(): void {
    const epoch = this.state.beginReset();
    this.hooks.statusChanged();
    // The driver may reuse the rings' memory once it reads status 0, so the
    // I/O thread must be done with them first (it answers within microseconds).
    this.state.waitForReset(epoch, RESET_TIMEOUT_MS);
  }

  selectQueue(index: number): void {
    this.state.queueSelect = index;
  }

  /** The selected queue, or -1 when the selector (any 32-bit value the driver wrote) names no queue. */
  selectedQueue(): number {
    const index = this.state.queueSelect >>> 0;
    return index < this.queueCount ? index : -1;
  }

  queueMaxSize(): number {
    const queue = this.selectedQueue();
    return queue < 0 ? 0 : this.info.queueMaxSizes[queue]!;
  }

  queueReady(): boolean {
    const queue = this.selectedQueue();
    return queue >= 0 && this.state.queueWord(queue, QueueWord.READY) !== 0;
  }

  /** Enabling a queue freezes its setup; the device validates it when the driver is ready. */
  setQueueReady(ready: boolean): void {
    const queue = this.selectedQueue();
    if (queue < 0) return;
    this.state.setQueueWord(queue, QueueWord.READY, ready ? 1 : 0);
  }

  readQueue(field: QueueField): number {
    const queue = this.selectedQueue();
    if (queue < 0) return 0;
    if (field === 'size') return this.state.queueWord(queue, QueueWord.SIZE);
    return this.state.queueAddress(queue, ADDRESS_WORD[field]);
  }

  /** Queue setup writes count only while the queue is not enabled (the driver must not change a live queue). */
  writeQueueSize(value: number): void {
    const queue = this.selectedQueue();
    if (queue < 0 || this.state.queueWord(queue, QueueWord.READY)) return;
    this.state.setQueueWord(queue, QueueWord.SIZE, value & 0xffff);
  }

  /** One 32-bit half of a queue address (virtio-mmio writes them separately). */
  writeQueueHalf(field: Exclude<QueueField, 'size'>, high: boolean, value: number): void {
    const queue = this.selectedQueue();
    if (queue < 0 || this.state.queueWord(queue, QueueWord.READY)) return;
    this.state.setQueueWord(queue, ADDRESS_WORD[field] + (high ? 1 : 0), value);
  }

  notify(queue: number): void {
    if (queue < this.queueCount) this.hooks.notify(queue);
  }

  /** The configuration space: reads past its end return 0; writes are not supported by tsvmm's devices and are dropped. */
  readConfig(offset: number, size: number): number {
    const config = this.info.config;
    let value = 0;
    for (let i = size - 1; i >= 0; i--) value = value * 256 + (config[offset + i] ?? 0);
    return value;
  }
}
