// Runs one virtio device in the thread that processes its queues: follows the
// driver's status (activate on DRIVER_OK, drop everything on reset), turns the
// queue setup in the shared state into Virtqueues, and keeps a broken queue
// from taking the rest of the VM with it.
import type { GuestMemory } from '../../memory/index.ts';
import type { VirtioDevice, VirtioDeviceContext } from './device.ts';
import { Virtqueue, VirtqueueError, type DescriptorChain } from './queue.ts';
import { QueueWord, type VirtioSharedState } from './shared-state.ts';
import { Feature, featureBit, InterruptCause, Status } from './spec.ts';

/** How the device interrupts its driver: an irqfd, or a pulse on an interrupt line. */
export interface InterruptTrigger {
  trigger(): void;
}

export class VirtioDeviceRunner {
  private seenResetEpoch: number;
  private active = false;
  private queues: (Virtqueue | null)[] = [];
  /** Queues that broke (the device is in NEEDS_RESET until the driver resets it). */
  private readonly brokenQueues = new Set<number>();
  readonly errorReasons = new Map<string, number>();
  interrupts = 0;

  constructor(
    readonly device: VirtioDevice,
    readonly state: VirtioSharedState,
    private readonly memory: GuestMemory,
    private readonly interrupt: InterruptTrigger,
  ) {
    this.seenResetEpoch = state.resetEpoch;
  }

  /** Brings the device in line with the driver's status: carries out a reset, activates on DRIVER_OK. */
  sync(): void {
    const epoch = this.state.resetEpoch;
    if (epoch !== this.seenResetEpoch) {
      this.seenResetEpoch = epoch;
      if (this.active) this.device.reset();
      this.active = false;
      this.queues = [];
      this.brokenQueues.clear();
      this.state.finishReset(epoch);
    }
    if (!this.active && this.state.status & Status.DRIVER_OK) this.activate();
  }

  /** The driver notified `queue` (or a host event calls for a look at it). */
  notify(queue: number): void {
    this.sync();
    if (this.active) this.process(queue);
  }

  /**
   * A host event for the device (its TAP is readable, host input arrived),
   * with the same protection as a notification: a ring the driver corrupted
   * puts the device in NEEDS_RESET instead of ending the I/O thread.
   */
  hostEvent(handle: (device: VirtioDevice) => void): void {
    this.sync();
    if (!this.active) return;
    try {
      handle(this.device);
    } catch (e) {
      if (!(e instanceof VirtqueueError)) throw e;
      this.breakDevice(e);
    } finally {
      this.publishUsed();
    }
  }

  private activate(): void {
    const features = this.state.driverFeatures;
    const queueFeatures = {
      eventIndex: (features & featureBit(Feature.RING_EVENT_IDX)) !== 0n,
      indirectDescriptors: (features & featureBit(Feature.RING_INDIRECT_DESC)) !== 0n,
    };
    this.queues = this.device.info.queueMaxSizes.map((maxSize, index) => {
      if (!this.state.queueWord(index, QueueWord.READY)) return null;
      const size = this.state.queueWord(index, QueueWord.SIZE);
      try {
        if (size > maxSize) throw new VirtqueueError(`queue size ${size} is above the maximum ${maxSize}`);
        return new Virtqueue(this.memory, {
          size,
          descriptors: this.state.queueAddress(index, QueueWord.DESCRIPTORS_LOW),
          available: this.state.queueAddress(index, QueueWord.AVAILABLE_LOW),
          used: this.state.queueAddress(index, QueueWord.USED_LOW),
        }, queueFeatures);
      } catch (e) {
        this.breakQueue(index, e);
        return null;
      }
    });
    this.active = true;
    const context: VirtioDeviceContext = {
      memory: this.memory,
      features,
      queues: this.queues,
      usedBuffers: (queue) => {
        const q = this.queues[queue];
        if (q && q.needsInterrupt()) this.raise(InterruptCause.USED_BUFFER);
      },
      countError: (reason) => this.countError(reason),
      serve: (index, complete) => {
        const queue = this.queues[index];
        if (!queue) return;
        do {
          let chain: DescriptorChain | null;
          while ((chain = queue.pop())) complete(chain, queue);
          context.usedBuffers(index);
        } while (queue.rearm());
      },
    };
    this.device.activate(context);
    // Buffers the driver made available before DRIVER_OK (receive queues) wait for this first look.
    for (let i = 0; i < this.queues.length; i++) this.process(i);
  }

  private process(queue: number): void {
    if (!this.queues[queue] || this.brokenQueues.has(queue)) return;
    try {
      this.device.processQueue(queue);
    } catch (e) {
      if (!(e instanceof VirtqueueError)) throw e;
      this.breakQueue(queue, e);
    } finally {
      this.publishUsed();
    }
  }

  /** Whatever a device returned, the driver gets to see (a device need not publish itself). */
  private publishUsed(): void {
    for (const queue of this.queues) queue?.publishUsed();
  }

  /**
   * A queue the driver corrupted stops; the others go on. The device asks for
   * a reset (DEVICE_NEEDS_RESET and a configuration interrupt, 2.1.2).
   */
  private breakQueue(queue: number, error: unknown): void {
    this.brokenQueues.add(queue);
    this.queues[queue] = null;
    this.breakDevice(error, `queue ${queue}: `);
  }

  private breakDevice(error: unknown, where = ''): void {
    this.countError(`${where}${error instanceof Error ? error.message : String(error)}`);
    this.state.addStatus(Status.DEVICE_NEEDS_RESET);
    this.raise(InterruptCause.CONFIG_CHANGE);
  }

  private countError(reason: string): void {
    this.state.countError();
    this.errorReasons.set(reason, (this.errorReasons.get(reason) ?? 0) + 1);
  }

  private raise(cause: number): void {
    this.state.raiseInterruptStatus(cause);
    this.interrupts++;
    this.interrupt.trigger();
  }

  report(): Record<string, unknown> {
    return {
      name: this.device.info.name,
      errors: this.state.errors,
      errorReasons: Object.fromEntries(this.errorReasons),
      interrupts: this.interrupts,
      ...(this.device.report?.() ?? {}),
    };
  }
}
