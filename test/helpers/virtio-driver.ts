// A tiny virtio driver for tests: it plays the guest's side of a virtio
// device in plain JS memory, over either transport (virtio-mmio registers, or
// the virtio-pci common configuration, ISR and notify structures of BAR 0).
// It drives the handshake (status, features, FEATURES_OK, queue setup,
// DRIVER_OK), lays out split virtqueues, posts descriptor chains (direct or
// through an indirect table), notifies, and reads the used ring back. The
// device runs under a VirtioDeviceRunner in the same thread; notifications
// reach it synchronously, and interrupts are counted. Or the device runs in
// another thread (the virtio I/O thread): then the driver only shares its
// state and memory, and whatever the device does happens asynchronously.
import { AddressSpace } from '../../src/bus/index.ts';
import { GuestMemory } from '../../src/memory/index.ts';
import type { VirtioDevice, VirtioDeviceInfo } from '../../src/devices/virtio/device.ts';
import { MmioRegister, VirtioMmio } from '../../src/devices/virtio/mmio.ts';
import { CommonCfg, NOTIFY_OFF_MULTIPLIER, VIRTIO_PCI_DEVICE_BASE, VirtioPci, VirtioPciRegion } from '../../src/devices/virtio/pci.ts';
import { PciConfig } from '../../src/devices/pci/index.ts';
import { VirtioDeviceRunner } from '../../src/devices/virtio/runner.ts';
import { VirtioSharedState } from '../../src/devices/virtio/shared-state.ts';
import { DescriptorFlag, Feature, featureBit, Status } from '../../src/devices/virtio/spec.ts';
import { VirtioTransport, type VirtioTransportHooks } from '../../src/devices/virtio/transport.ts';
import type { SavedDeviceState } from '../../src/devices/device-state.ts';

/** The two ways a driver reaches a virtio device; device tests run over both. */
export type TransportKind = 'mmio' | 'pci';
export const TRANSPORTS: readonly TransportKind[] = ['mmio', 'pci'];

/** A guest buffer; `write`: device-writable (the device fills it). */
export interface DriverBuffer {
  address: number;
  length: number;
  write?: boolean;
}

export interface UsedElement {
  /** The head descriptor of the chain the device returned. */
  id: number;
  /** Bytes the device wrote into the chain's writable buffers. */
  len: number;
}

export interface VirtioTestDriverOptions {
  /** Which transport carries the device (default virtio-mmio). */
  transport?: TransportKind;
  /** Guest RAM: a size in bytes for one range at 0 (default 4 MiB), or a memory of your own. */
  memory?: number | GuestMemory;
  /** Where alloc() starts (default: 4 KiB into the first range). */
  allocFrom?: number;
  /** Queue size the driver asks for (default 16; lowered to the device's maximum). */
  queueSize?: number;
  /** Which of the offered features the driver accepts (default: all of them). */
  acceptFeatures?: (offered: bigint) => bigint;
}

/** A device that runs in another thread: what the driver's transport needs to reach it. */
export interface DeviceElsewhere {
  info: VirtioDeviceInfo;
  /** The state the device's thread reads (the machine plan's per-device buffer). */
  state: VirtioSharedState;
  /** How a notification or a status change reaches that thread (as the vCPU thread signals it). */
  hooks: VirtioTransportHooks;
}

/** A device's state as a machine saves it: the I/O thread's runner, and the PCI function's configuration space. */
export interface SavedVirtioDevice {
  device: SavedDeviceState;
  pci: SavedDeviceState | null;
}

/** Where a queue's three parts are. */
export interface QueueLayout {
  size: number;
  descriptors: number;
  available: number;
  used: number;
}

/** The driver-visible operations, each mapped onto one transport's register layout. */
interface TransportRegisters {
  deviceType(): number;
  status(): number;
  setStatus(value: number): void;
  deviceFeatureWord(select: number): number;
  setDriverFeatureWord(select: number, value: number): void;
  selectQueue(index: number): void;
  /** Largest size of the selected queue; 0 when the device has no such queue. */
  queueMaxSize(): number;
  /** Size, addresses and enable of the selected queue, in the order a driver writes them. */
  programQueue(layout: QueueLayout): void;
  queueReady(): boolean;
  notify(queue: number): void;
  readConfig(offset: number, size: number): number;
  /** Interrupt status; on virtio-pci reading ISR also acknowledges it. */
  interruptStatus(): number;
  acknowledgeInterrupt(bits: number): void;
}

const halves = (address: number): [number, number] => [address % 2 ** 32, Math.floor(address / 2 ** 32)];

class MmioRegisters implements TransportRegisters {
  constructor(readonly mmio: VirtioMmio) {}
  private read(register: number): number {
    return this.mmio.read(register, 4);
  }
  private write(register: number, value: number): void {
    this.mmio.write(register, 4, value);
  }
  deviceType(): number { return this.read(MmioRegister.DEVICE_ID); }
  status(): number { return this.read(MmioRegister.STATUS); }
  setStatus(value: number): void { this.write(MmioRegister.STATUS, value); }
  deviceFeatureWord(select: number): number {
    this.write(MmioRegister.DEVICE_FEATURES_SEL, select);
    return this.read(MmioRegister.DEVICE_FEATURES) >>> 0;
  }
  setDriverFeatureWord(select: number, value: number): void {
    this.write(MmioRegister.DRIVER_FEATURES_SEL, select);
    this.write(MmioRegister.DRIVER_FEATURES, value);
  }
  selectQueue(index: number): void { this.write(MmioRegister.QUEUE_SEL, index); }
  queueMaxSize(): number { return this.read(MmioRegister.QUEUE_NUM_MAX); }
  programQueue({ size, descriptors, available, used }: QueueLayout): void {
    this.write(MmioRegister.QUEUE_NUM, size);
    const fields: [number, number, number][] = [
      [MmioRegister.QUEUE_DESC_LOW, MmioRegister.QUEUE_DESC_HIGH, descriptors],
      [MmioRegister.QUEUE_DRIVER_LOW, MmioRegister.QUEUE_DRIVER_HIGH, available],
      [MmioRegister.QUEUE_DEVICE_LOW, MmioRegister.QUEUE_DEVICE_HIGH, used],
    ];
    for (const [low, high, address] of fields) {
      const [lowHalf, highHalf] = halves(address);
      this.write(low, lowHalf);
      this.write(high, highHalf);
    }
    this.write(MmioRegister.QUEUE_READY, 1);
  }
  queueReady(): boolean { return this.read(MmioRegister.QUEUE_READY) === 1; }
  notify(queue: number): void { this.write(MmioRegister.QUEUE_NOTIFY, queue); }
  readConfig(offset: number, size: number): number { return this.mmio.read(MmioRegister.CONFIG + offset, size); }
  interruptStatus(): number { return this.read(MmioRegister.INTERRUPT_STATUS); }
  acknowledgeInterrupt(bits: number): void { this.write(MmioRegister.INTERRUPT_ACK, bits); }
}

/** BAR 0 of a virtio-pci function, accessed at its offsets (where the BAR is mapped does not matter here). */
class PciRegisters implements TransportRegisters {
  constructor(readonly pci: VirtioPci) {}
  private common(offset: number, size: number): number {
    return this.pci.read(VirtioPciRegion.COMMON + offset, size);
  }
  private setCommon(offset: number, size: number, value: number): void {
    this.pci.write(VirtioPciRegion.COMMON + offset, size, value);
  }
  deviceType(): number { return this.pci.readConfig(PciConfig.DEVICE_ID, 2) - VIRTIO_PCI_DEVICE_BASE; }
  status(): number { return this.common(CommonCfg.DEVICE_STATUS, 1); }
  setStatus(value: number): void { this.setCommon(CommonCfg.DEVICE_STATUS, 1, value); }
  deviceFeatureWord(select: number): number {
    this.setCommon(CommonCfg.DEVICE_FEATURE_SELECT, 4, select);
    return this.common(CommonCfg.DEVICE_FEATURE, 4) >>> 0;
  }
  setDriverFeatureWord(select: number, value: number): void {
    this.setCommon(CommonCfg.DRIVER_FEATURE_SELECT, 4, select);
    this.setCommon(CommonCfg.DRIVER_FEATURE, 4, value);
  }
  selectQueue(index: number): void { this.setCommon(CommonCfg.QUEUE_SELECT, 2, index); }
  /** queue_size reads the largest size until the driver writes one (4.1.4.3); the driver asks right after a reset. */
  queueMaxSize(): number { return this.common(CommonCfg.QUEUE_SIZE, 2); }
  programQueue({ size, descriptors, available, used }: QueueLayout): void {
    this.setCommon(CommonCfg.QUEUE_SIZE, 2, size);
    const fields: [number, number, number][] = [
      [CommonCfg.QUEUE_DESC_LO, CommonCfg.QUEUE_DESC_HI, descriptors],
      [CommonCfg.QUEUE_DRIVER_LO, CommonCfg.QUEUE_DRIVER_HI, available],
      [CommonCfg.QUEUE_DEVICE_LO, CommonCfg.QUEUE_DEVICE_HI, used],
    ];
    for (const [low, high, address] of fields) {
      const [lowHalf, highHalf] = halves(address);
      this.setCommon(low, 4, lowHalf);
      this.setCommon(high, 4, highHalf);
    }
    this.setCommon(CommonCfg.QUEUE_ENABLE, 2, 1);
  }
  queueReady(): boolean { return this.common(CommonCfg.QUEUE_ENABLE, 2) === 1; }
  /** vp_notify: a 16-bit write of the queue index at its notify address. */
  notify(queue: number): void { this.pci.write(VirtioPciRegion.NOTIFY + queue * NOTIFY_OFF_MULTIPLIER, 2, queue); }
  readConfig(offset: number, size: number): number { return this.pci.read(VirtioPciRegion.DEVICE + offset, size); }
  interruptStatus(): number { return this.pci.read(VirtioPciRegion.ISR, 1); }
  acknowledgeInterrupt(): void {}
}

export class VirtioTestDriver {
  readonly memory: GuestMemory;
  readonly state: VirtioSharedState;
  readonly transport: VirtioTransport;
  readonly transportKind: TransportKind;
  /** The virtio-mmio or virtio-pci front of the device, for tests that poke its registers directly. */
  readonly mmio: VirtioMmio | null;
  readonly pci: VirtioPci | null;
  readonly info: VirtioDeviceInfo;
  /** The device and its runner, when they run in this thread. */
  private readonly local: { device: VirtioDevice; runner: VirtioDeviceRunner } | null;
  /** Interrupts the device raised (InterruptTrigger.trigger calls; only for a device in this thread). */
  interrupts = 0;
  /** The features the driver wrote, after negotiate(). */
  features = 0n;
  private readonly registers: TransportRegisters;
  private readonly queues: (DriverQueue | undefined)[] = [];
  private nextFree: number;
  private readonly queueSize: number;
  private readonly acceptFeatures: (offered: bigint) => bigint;

  constructor(target: VirtioDevice | DeviceElsewhere, options: VirtioTestDriverOptions = {}) {
    this.memory = options.memory instanceof GuestMemory
      ? options.memory
      : GuestMemory.ofArrayBuffers([{ guestAddress: 0, size: options.memory ?? 4 << 20 }]);
    this.nextFree = options.allocFrom ?? (this.memory.ranges[0]?.guestAddress ?? 0) + 0x1000;
    this.queueSize = options.queueSize ?? 16;
    this.acceptFeatures = options.acceptFeatures ?? ((offered) => offered);
    this.info = target.info;
    const elsewhere = 'hooks' in target ? target : null;
    this.state = elsewhere?.state ?? VirtioSharedState.create(target.info.queueMaxSizes.length);
    // The runner is made after the transport; the hooks only run once both exist.
    let runner: VirtioDeviceRunner | null = null;
    this.transport = new VirtioTransport(target.info, this.state, elsewhere?.hooks ?? {
      notify: (queue) => runner!.notify(queue),
      statusChanged: () => runner!.sync(),
    });
    this.transportKind = options.transport ?? 'mmio';
    if (this.transportKind === 'pci') {
      this.mmio = null;
      this.pci = new VirtioPci(this.transport, { irq: 5, mmio: AddressSpace.memory() });
      this.registers = new PciRegisters(this.pci);
    } else {
      this.pci = null;
      this.mmio = new VirtioMmio(this.transport);
      this.registers = new MmioRegisters(this.mmio);
    }
    if (elsewhere) {
      this.local = null;
    } else {
      const device = target as VirtioDevice;
      runner = new VirtioDeviceRunner(device, this.state, this.memory, { trigger: () => this.interrupts++ });
      this.local = { device, runner };
    }
  }

  /** Saves the device (it runs in this thread, so it is quiesced between calls). */
  saveState(): SavedVirtioDevice {
    return { device: this.runner.saveState(), pci: this.pci?.saveState() ?? null };
  }

  /**
   * A driver for `device`, a fresh device object of the same kind, with fresh
   * transport objects and state over this driver's guest memory, after
   * restoring `saved` into them. The driver's queues and allocations move to
   * it: this driver must not be used afterwards.
   */
  restoredOnto(device: VirtioDevice, saved: SavedVirtioDevice): VirtioTestDriver {
    const next = new VirtioTestDriver(device, {
      transport: this.transportKind, memory: this.memory, allocFrom: this.nextFree,
      queueSize: this.queueSize, acceptFeatures: this.acceptFeatures,
    });
    if (saved.pci) next.pci!.restoreState(saved.pci);
    next.runner.restoreState(saved.device);
    next.features = this.features;
    this.queues.forEach((queue, index) => {
      if (!queue) return;
      queue.moveTo(next);
      next.queues[index] = queue;
    });
    return next;
  }

  /** The device, when it runs in this thread. */
  get device(): VirtioDevice {
    return this.inThisThread().device;
  }

  get runner(): VirtioDeviceRunner {
    return this.inThisThread().runner;
  }

  private inThisThread(): { device: VirtioDevice; runner: VirtioDeviceRunner } {
    if (!this.local) throw new Error('test driver: the device runs in another thread');
    return this.local;
  }

  // --- registers -----------------------------------------------------------

  /** The virtio device ID, as the transport presents it. */
  deviceType(): number {
    return this.registers.deviceType();
  }

  /** The device configuration space, `size` bytes (1, 2 or 4) at `offset`. */
  readConfig(offset: number, size: number): number {
    return this.registers.readConfig(offset, size);
  }

  get status(): number {
    return this.registers.status();
  }

  /** Writes the device status register as given (a hostile driver may skip steps). */
  writeStatus(value: number): void {
    this.registers.setStatus(value);
  }

  /** The 64 feature bits the device offers, read through the selector. */
  offeredFeatures(): bigint {
    const low = this.registers.deviceFeatureWord(0);
    const high = this.registers.deviceFeatureWord(1);
    return (BigInt(high) << 32n) | BigInt(low);
  }

  /** Largest size of queue `index`; 0 for a queue the device does not have. */
  queueMaxSize(index: number): number {
    this.registers.selectQueue(index);
    return this.registers.queueMaxSize();
  }

  /** Whether queue `index` reads as enabled. */
  queueReady(index: number): boolean {
    this.registers.selectQueue(index);
    return this.registers.queueReady();
  }

  /** Programs queue `index` with any layout, valid or not, and enables it (a hostile driver's setup). */
  programQueue(index: number, layout: QueueLayout): void {
    this.registers.selectQueue(index);
    this.registers.programQueue(layout);
  }

  /** QueueNotify for `index`, whatever state the queue is in. */
  notify(index: number): void {
    this.registers.notify(index);
  }

  /** Interrupt status (ISR): 1 used buffer, 2 configuration change. On virtio-pci the read acknowledges it. */
  interruptStatus(): number {
    return this.registers.interruptStatus();
  }

  acknowledgeInterrupt(bits = this.interruptStatus()): void {
    this.registers.acknowledgeInterrupt(bits);
  }

  // --- the handshake (3.1.1) -------------------------------------------------

  /**
   * Reset, ACKNOWLEDGE, DRIVER, write the accepted features, FEATURES_OK.
   * Returns whether the device kept FEATURES_OK (it accepted the features).
   */
  negotiate(accept: (offered: bigint) => bigint = this.acceptFeatures): boolean {
    this.reset();
    this.writeStatus(Status.ACKNOWLEDGE);
    this.writeStatus(Status.ACKNOWLEDGE | Status.DRIVER);
    this.features = accept(this.offeredFeatures());
    this.registers.setDriverFeatureWord(0, Number(this.features & 0xffff_ffffn));
    this.registers.setDriverFeatureWord(1, Number((this.features >> 32n) & 0xffff_ffffn));
    this.writeStatus(Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK);
    return (this.status & Status.FEATURES_OK) !== 0;
  }

  /** Lays out queue `index` in guest memory and enables it. */
  setupQueue(index: number, size = this.queueSize): DriverQueue {
    const max = this.queueMaxSize(index);
    if (max === 0) throw new Error(`the device has no queue ${index}`);
    size = Math.min(size, max);
    const queue = new DriverQueue(this, index, size, {
      descriptors: this.alloc(16 * size, 16),
      available: this.alloc(6 + 2 * size, 2),
      used: this.alloc(6 + 8 * size, 4),
    });
    this.programQueue(index, queue);
    this.queues[index] = queue;
    return queue;
  }

  /** Sets up every queue the device has. */
  setupQueues(): DriverQueue[] {
    return this.info.queueMaxSizes.map((_, index) => this.setupQueue(index));
  }

  driverOk(): void {
    this.writeStatus(this.status | Status.DRIVER_OK);
  }

  /** The whole handshake: negotiate, set up every queue, DRIVER_OK. Throws when the device refuses the features. */
  start(): this {
    if (!this.negotiate()) throw new Error('the device refused the features (FEATURES_OK did not stick)');
    this.setupQueues();
    this.driverOk();
    return this;
  }

  /** Writes 0 to status: the device drops its queues. The driver's queues are forgotten too. */
  reset(): void {
    this.writeStatus(0);
    this.queues.length = 0;
  }

  queue(index: number): DriverQueue {
    const queue = this.queues[index];
    if (!queue) throw new Error(`queue ${index} is not set up`);
    return queue;
  }

  get eventIndex(): boolean {
    return (this.features & featureBit(Feature.RING_EVENT_IDX)) !== 0n;
  }

  /** Malformed requests and broken queues the runner counted. */
  get errors(): number {
    return this.state.errors;
  }

  get errorReasons(): Map<string, number> {
    return this.runner.errorReasons;
  }

  /** The runner's report: name, errors, interrupts, then the device's own counters. */
  report(): Record<string, unknown> {
    return this.runner.report();
  }

  // --- guest memory ----------------------------------------------------------

  /** Bump-allocates `length` bytes of guest memory (never freed: tests are short). */
  alloc(length: number, align = 16): number {
    const address = Math.ceil(this.nextFree / align) * align;
    if (!this.memory.contains(address, Math.max(length, 1))) throw new Error(`test driver: out of guest memory for ${length} bytes`);
    this.nextFree = address + length;
    return address;
  }

  /** A device-readable buffer holding `data`. */
  readable(data: Uint8Array | readonly number[]): DriverBuffer {
    const bytes = data instanceof Uint8Array ? data : Uint8Array.from(data);
    const address = this.alloc(bytes.length);
    this.memory.write(address, bytes);
    return { address, length: bytes.length };
  }

  /** A device-writable buffer of `length` bytes, filled with `fill` (to see what the device wrote). */
  writable(length: number, fill = 0): DriverBuffer {
    const address = this.alloc(length);
    this.memory.fill(address, length, fill);
    return { address, length, write: true };
  }

  /** A copy of a buffer's bytes (its first `length`). */
  bytes(buffer: DriverBuffer, length = buffer.length): Uint8Array {
    return this.memory.read(buffer.address, length);
  }
}

/** One split virtqueue from the driver's side. */
export class DriverQueue {
  private readonly free: number[];
  /** Descriptors (ring indices) of each outstanding chain, by head. */
  private readonly outstanding = new Map<number, number[]>();
  private availableIndex = 0;
  private lastUsed = 0;
  readonly descriptors: number;
  readonly available: number;
  readonly used: number;

  constructor(
    private driver: VirtioTestDriver,
    readonly index: number,
    readonly size: number,
    addresses: { descriptors: number; available: number; used: number },
  ) {
    this.descriptors = addresses.descriptors;
    this.available = addresses.available;
    this.used = addresses.used;
    this.free = Array.from({ length: size }, (_, i) => i);
  }

  private get memory(): GuestMemory {
    return this.driver.memory;
  }

  /** The device was restored into new objects: notify through its driver from now on. */
  moveTo(driver: VirtioTestDriver): void {
    this.driver = driver;
  }

  /**
   * Posts a chain of `buffers` in the order given (a driver puts readable
   * ones first; a hostile test need not). With
   * `indirect`, the chain goes into an indirect table behind one descriptor.
   * Returns the head descriptor index. Does not notify.
   */
  post(buffers: readonly DriverBuffer[], options: { indirect?: boolean } = {}): number {
    if (buffers.length === 0) throw new Error('a chain needs at least one buffer');
    let head: number;
    if (options.indirect) {
      const table = this.driver.alloc(16 * buffers.length, 16);
      buffers.forEach((b, i) => {
        const last = i === buffers.length - 1;
        writeDescriptor(this.memory, table, i, b.address, b.length, (b.write ? DescriptorFlag.WRITE : 0) | (last ? 0 : DescriptorFlag.NEXT), last ? 0 : i + 1);
      });
      [head] = this.reserve(1) as [number];
      this.descriptor(head, table, 16 * buffers.length, DescriptorFlag.INDIRECT);
    } else {
      const indices = this.reserve(buffers.length);
      buffers.forEach((b, i) => {
        const last = i === buffers.length - 1;
        this.descriptor(indices[i]!, b.address, b.length, (b.write ? DescriptorFlag.WRITE : 0) | (last ? 0 : DescriptorFlag.NEXT), last ? 0 : indices[i + 1]!);
      });
      head = indices[0]!;
    }
    this.offer(head);
    return head;
  }

  /**
   * Takes `count` free descriptor indices for a hand-made chain (hostile
   * tests): write them with descriptor(), then offer() the first. They are
   * freed when the device returns the first as used.
   */
  reserve(count: number): number[] {
    if (count > this.free.length) throw new Error(`queue ${this.index}: ${count} descriptors wanted, ${this.free.length} free`);
    const indices = this.free.splice(0, count);
    this.outstanding.set(indices[0]!, indices);
    return indices;
  }

  /** Writes descriptor `index` of the ring's table (or of `table`, an indirect one) as given. */
  descriptor(index: number, address: number, length: number, flags = 0, next = 0, table = this.descriptors): void {
    writeDescriptor(this.memory, table, index, address, length, flags, next);
  }

  /** Puts `head` into the available ring and publishes the new index. */
  offer(head: number): void {
    this.memory.writeU16(this.available + 4 + 2 * (this.availableIndex % this.size), head);
    this.availableIndex = (this.availableIndex + 1) & 0xffff;
    this.memory.writeU16(this.available + 2, this.availableIndex);
  }

  /** Sets avail.idx to any value (a driver that lies about how much it posted). */
  setAvailableIndex(value: number): void {
    this.availableIndex = value & 0xffff;
    this.memory.writeU16(this.available + 2, this.availableIndex);
  }

  /** QueueNotify: a device in this thread processes the queue before this returns. */
  notify(): void {
    this.driver.notify(this.index);
  }

  /** post() then notify(). */
  submit(buffers: readonly DriverBuffer[], options: { indirect?: boolean } = {}): number {
    const head = this.post(buffers, options);
    this.notify();
    return head;
  }

  /** used.idx as the device last published it. */
  usedIndex(): number {
    return this.memory.readU16(this.used + 2);
  }

  /**
   * The used elements published since the last call, in order. Frees their
   * descriptors, and (like Linux) moves used_event past them so that with
   * EVENT_IDX the device interrupts for the next one.
   */
  takeUsed(): UsedElement[] {
    const out: UsedElement[] = [];
    const end = this.usedIndex();
    while (this.lastUsed !== end) {
      const slot = this.lastUsed % this.size;
      const id = this.memory.readU32(this.used + 4 + 8 * slot);
      const len = this.memory.readU32(this.used + 8 + 8 * slot);
      out.push({ id, len });
      const indices = this.outstanding.get(id);
      if (indices) {
        this.outstanding.delete(id);
        this.free.push(...indices);
      }
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
    }
    this.memory.writeU16(this.available + 4 + 2 * this.size, this.lastUsed);
    return out;
  }

  /** avail.flags NO_INTERRUPT (honoured when EVENT_IDX is off). */
  suppressInterrupts(on: boolean): void {
    this.memory.writeU16(this.available, on ? 1 : 0);
  }

  /** Whether the device asked for no notifications (used.flags, without EVENT_IDX). */
  deviceSuppressesNotify(): boolean {
    return (this.memory.readU16(this.used) & 1) !== 0;
  }

  /** The device's avail_event (EVENT_IDX): notify when avail.idx passes it. */
  availableEvent(): number {
    return this.memory.readU16(this.used + 4 + 8 * this.size);
  }

  get freeDescriptors(): number {
    return this.free.length;
  }
}

function writeDescriptor(memory: GuestMemory, table: number, index: number, address: number, length: number, flags: number, next: number): void {
  const at = table + 16 * index;
  memory.writeU64(at, BigInt(address));
  memory.writeU32(at + 8, length);
  memory.writeU16(at + 12, flags);
  memory.writeU16(at + 14, next);
}
