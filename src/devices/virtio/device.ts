// What a virtio device type (blk, net, rng, console) implements, and what it
// gets to work with. A device sees its queues, guest memory and a way to
// interrupt the driver; it never learns which transport (mmio or pci) or which
// thread carries it.
import type { GuestMemory } from '../../memory/index.ts';
import type { DescriptorChain, Virtqueue } from './queue.ts';

/**
 * What a transport needs to know about a device, as plain data: it crosses
 * from the I/O thread, where the device lives, to the vCPU thread, where the
 * guest's register accesses are handled.
 */
export interface VirtioDeviceInfo {
  /** Device ID (spec.ts DeviceType). */
  type: number;
  /** "blk0", "net0": for messages and reports. */
  name: string;
  /** Features offered: device-type bits and the ring/transport bits the device supports. */
  features: bigint;
  /** Largest size of each queue. */
  queueMaxSizes: number[];
  /** The device-specific configuration space, as the driver reads it. */
  config: Uint8Array;
}

/** What the device can do to its driver and its queues once the driver is ready. */
export interface VirtioDeviceContext {
  readonly memory: GuestMemory;
  /** The features the driver accepted. */
  readonly features: bigint;
  /** The driver's queues, in queue-index order (null: the driver did not enable it). */
  readonly queues: readonly (Virtqueue | null)[];
  /** Call after returning buffers on `queue`: interrupts the driver if it wants one. */
  usedBuffers(queue: number): void;
  /**
   * Serves every request waiting on queue `index` with `complete` (which
   * returns each with pushUsed), interrupting the driver after each batch and
   * re-arming notifications: the loop of every request-driven queue.
   */
  serve(index: number, complete: (chain: DescriptorChain, queue: Virtqueue) => void): void;
  /** A request the device refused (malformed chain or request): counted for reports. */
  countError(reason: string): void;
  /**
   * Queue `index` turned out corrupted outside a notification (while serving
   * host input): it stops, as a notification would have stopped it, and the
   * device asks the driver for a reset. Its entry in `queues` becomes null.
   */
  breakQueue(index: number, error: Error): void;
}

export interface VirtioDevice {
  readonly info: VirtioDeviceInfo;
  /** The driver set DRIVER_OK: the device may use its queues from now on. */
  activate(context: VirtioDeviceContext): void;
  /** The driver notified queue `index`, or the device should look at it again. */
  processQueue(index: number): void;
  /** The driver reset the device: drop everything tied to the old queues. */
  reset(): void;
  /**
   * How many buffers the device took from queue `index` and holds unused (a
   * receive buffer waiting for input): always the last ones it took. A saved
   * state gives them back to the ring, so the device restored from it takes
   * them again. Absent: the device holds nothing between requests.
   */
  heldBuffers?(index: number): number;
  /** Host file descriptors the device waits on (a TAP device), with what to do when one is readable. */
  readonly pollFds?: readonly number[];
  onReadable?(fd: number): void;
  /** Whether the device wants its pollFds watched now (net: only while the guest has posted receive buffers). */
  wantsPoll?(): boolean;
  /** Whether output waits for its pollFds to take more (a full socket); while true they are watched for writing too. */
  wantsWritable?(): boolean;
  onWritable?(fd: number): void;
  /**
   * Host input that reaches the device through no fd of its own (the
   * console's input ring, filled by another thread) may be waiting: hand the
   * driver what its buffers take. Called each time another thread wakes the
   * device's thread, so it must be cheap when nothing waits.
   */
  receiveHostInput?(): void;
  /** Makes everything written so far durable on the host (a disk's caches): before its state is saved for another process. */
  flush?(): void;
  close?(): void;
  report?(): Record<string, unknown>;
}
