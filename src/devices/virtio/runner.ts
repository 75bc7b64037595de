// Runs one virtio device in the thread that processes its queues: follows the
// driver's status (activate on DRIVER_OK, drop everything on reset), turns the
// queue setup in the shared state into Virtqueues, and keeps a broken queue
// from taking the rest of the VM with it. It also saves and restores the
// device: the shared state (everything the transports keep) with the queue
// positions only this thread knows, under the device type's layout.
import type { SavedDeviceState, StatefulDevice } from '../device-state.ts';
import type { GuestMemory } from '../../memory/index.ts';
import type { VirtioDevice, VirtioDeviceContext } from './device.ts';
import { Virtqueue, VirtqueueError, type DescriptorChain, type QueuePosition } from './queue.ts';
import { QueueWord, virtioStateLayout, type VirtioSharedState, type VirtioStateLayout } from './shared-state.ts';
import { Feature, featureBit, InterruptCause, Status } from './spec.ts';
import type { DirtyPageLog } from '../../memory/dirty-pages.ts';

/** How the device interrupts its driver: an irqfd, or a pulse on an interrupt line. */
export interface InterruptTrigger {
  trigger(): void;
}

export class VirtioDeviceRunner implements StatefulDevice {
  /** The saved form: the shared state's words, named after the device type ("virtio-blk"). */
  readonly layout: VirtioStateLayout;
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
    /** Where the queues log the guest pages they write while a migration runs. */
    private readonly dirty: DirtyPageLog | null = null,
  ) {
    this.layout = virtioStateLayout(device.info);
    this.seenResetEpoch = state.resetEpoch;
  }

  /**
   * The device's state, to be taken only while this thread is quiesced: no
   * request is half done then, because each one the device takes from a ring
   * is completed (pushed and published) before the notification that took it
   * returns. A request the driver made available and the device did not take
   * stays in guest RAM: the restored device takes it. A buffer the device
   * took and holds unused (a receive buffer waiting for input) is given back
   * the same way: the saved position is before it.
   *
   * A reset or DRIVER_OK the driver asked for and this thread has not seen
   * yet is carried out first, so the saved state is never between the two.
   * Report counters (interrupts, error reasons) are not state and stay here.
   */
  saveState(): SavedDeviceState {
    this.sync();
    for (let index = 0; index < this.queueCount; index++) {
      const queue = this.queues[index];
      const position = queue ? queue.position() : { nextAvailable: 0, nextUsed: 0, usedAtLastSignal: 0 };
      const held = queue ? this.device.heldBuffers?.(index) ?? 0 : 0;
      this.state.setQueueWord(index, QueueWord.NEXT_AVAILABLE, (position.nextAvailable - held) & 0xffff);
      this.state.setQueueWord(index, QueueWord.NEXT_USED, position.nextUsed);
      this.state.setQueueWord(index, QueueWord.USED_AT_LAST_SIGNAL, position.usedAtLastSignal);
      this.state.setQueueWord(index, QueueWord.BROKEN, this.brokenQueues.has(index) ? 1 : 0);
    }
    return this.layout.save(this.state.buffer);
  }

  /**
   * Puts the device where `saved` left it, over the same guest RAM: the
   * transports' registers (every thread's transport reads the shared state,
   * so the vCPUs must be paused), and, if the driver had the device running,
   * its queues at their saved positions. Then it looks at every queue once:
   * a notification the driver sent before the save may never have reached
   * the device. Throws InputError for another device type, version or size,
   * before changing anything.
   */
  restoreState(saved: SavedDeviceState): void {
    this.layout.restore(saved, this.state.buffer);
    if (this.active) this.device.reset();
    this.active = false;
    this.queues = [];
    this.brokenQueues.clear();
    // saveState carried out every reset asked for: none is pending in a saved state.
    this.seenResetEpoch = this.state.resetEpoch;
    this.state.finishReset(this.seenResetEpoch);
    if (this.state.status & Status.DRIVER_OK) this.activate(true);
  }

  /** Throws InputError unless `saved` is this device's state, in this layout version. */
  checkState(saved: SavedDeviceState): void {
    this.layout.check(saved);
  }

  private get queueCount(): number {
    return this.device.info.queueMaxSizes.length;
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
    if (!this.active && this.state.status & Status.DRIVER_OK) this.activate(false);
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

  /** `restored`: the queues continue from the positions in the shared state (restoreState), rather than from 0. */
  private activate(restored: boolean): void {
    const features = this.state.driverFeatures;
    const queueFeatures = {
      eventIndex: (features & featureBit(Feature.RING_EVENT_IDX)) !== 0n,
      indirectDescriptors: (features & featureBit(Feature.RING_INDIRECT_DESC)) !== 0n,
    };
    this.queues = this.device.info.queueMaxSizes.map((maxSize, index) => {
      if (!this.state.queueWord(index, QueueWord.READY)) return null;
      if (restored && this.state.queueWord(index, QueueWord.BROKEN)) {
        this.brokenQueues.add(index);
        return null;
      }
      const size = this.state.queueWord(index, QueueWord.SIZE);
      try {
        if (size > maxSize) throw new VirtqueueError(`queue size ${size} is above the maximum ${maxSize}`);
        return new Virtqueue(this.memory, {
          size,
          descriptors: this.state.queueAddress(index, QueueWord.DESCRIPTORS_LOW),
          available: this.state.queueAddress(index, QueueWord.AVAILABLE_LOW),
          used: this.state.queueAddress(index, QueueWord.USED_LOW),
        }, queueFeatures, restored ? this.savedPosition(index) : undefined, this.dirty);
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
      breakQueue: (index, error) => this.breakQueue(index, error),
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

  private savedPosition(index: number): QueuePosition {
    return {
      nextAvailable: this.state.queueWord(index, QueueWord.NEXT_AVAILABLE),
      nextUsed: this.state.queueWord(index, QueueWord.NEXT_USED),
      usedAtLastSignal: this.state.queueWord(index, QueueWord.USED_AT_LAST_SIGNAL),
    };
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
