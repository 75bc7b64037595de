// virtio-net (virtio 1.2, 5.1): receiveq (0) and transmitq (1), one queue
// pair, over a host backend (net-backend.ts): a TAP device, whose fd speaks
// the driver's own 12-byte header so frames cross it without a copy, or a
// stream socket to passt (net-stream.ts).
import type { VirtioDevice, VirtioDeviceContext, VirtioDeviceInfo } from './device.ts';
import { TapBackend, type NetBackend } from './net-backend.ts';
import { scatter, VirtqueueError, type BufferSegment, type DescriptorChain, type Virtqueue } from './queue.ts';
import { DeviceType, featureBit } from './spec.ts';
import type { GuestMemory } from '../../memory/index.ts';

export const NET_QUEUE_SIZE = 256;
export const NetQueue = {
  RECEIVE: 0,
  TRANSMIT: 1,
} as const;

export const NetFeature = {
  MAC: 5n,
  STATUS: 16n,
} as const;

/** struct virtio_net_hdr_v1 (5.1.6): flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers. */
export const NET_HEADER_SIZE = 12;
const NUM_BUFFERS_OFFSET = 10;
/** num_buffers (le16): without VIRTIO_NET_F_MRG_RXBUF every frame takes exactly one buffer (5.1.6.3.1). */
const ONE_BUFFER = Uint8Array.of(1, 0);
/** Config status bit (5.1.4). */
export const VIRTIO_NET_S_LINK_UP = 1;
/** struct virtio_net_config up to status: mac[6], status (5.1.4). */
export const NET_CONFIG_SIZE = 8;

/** readv/writev take at most this many buffers (Linux UIO_MAXIOV); a backend may add one of its own. */
const MAX_IOVECS = 1023;
/** Without GSO a frame is at most a 64 KiB IP packet plus its Ethernet header. */
const MAX_TX_FRAME = 65536 + 14;
/** How long a closing device waits for its backend's peer to finish a frame it is in the middle of. */
const SETTLE_TIMEOUT_MS = 1000;
/** Frames taken from the backend per wake-up, so one busy device cannot hold the I/O thread. */
const MAX_RX_FRAMES_PER_CALL = 256;

/**
 * Where frames go: a backend (a StreamBackend), or a TAP fd opened by src/kvm
 * openTap, for a TapBackend. The device does not close the fd: it belongs to
 * whoever opened it.
 */
export type NetOptions = { name: string; mac: Uint8Array } & ({ tapFd: number } | { backend: NetBackend });

function netConfig(mac: Uint8Array): Uint8Array {
  if (mac.length !== 6) throw new Error(`a MAC address has 6 bytes, not ${mac.length}`);
  const config = new Uint8Array(NET_CONFIG_SIZE);
  config.set(mac, 0);
  new DataView(config.buffer).setUint16(6, VIRTIO_NET_S_LINK_UP, true);
  return config;
}

/** Views of guest memory covering `segments`, in order, for readv/writev. */
function views(memory: GuestMemory, segments: readonly BufferSegment[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const segment of segments) out.push(...memory.slices(segment.address, segment.length));
  return out;
}

/** A receive buffer taken from the ring, waiting for a frame. */
interface HeldReceive {
  chain: DescriptorChain;
  views: Uint8Array[];
}

export class VirtioNet implements VirtioDevice {
  readonly info: VirtioDeviceInfo;
  readonly pollFds: readonly number[];
  private readonly backend: NetBackend;
  private context: VirtioDeviceContext | null = null;
  /**
   * The next receive buffer, taken from the ring before a frame is there to
   * fill it (the ring cannot take a buffer back). While one is held the
   * backend is worth watching; otherwise the receive ring is empty and re-armed.
   */
  private held: HeldReceive | null = null;
  /** The backend's failure, once counted: it is not watched any more, or poll would spin. */
  private failureReported = false;
  readonly counts = { rxFrames: 0, rxBytes: 0, rxTruncated: 0, txFrames: 0, txBytes: 0, txErrors: 0 };

  constructor(options: NetOptions) {
    this.backend = 'tapFd' in options ? new TapBackend(options.tapFd) : options.backend;
    this.pollFds = [this.backend.fd];
    this.info = {
      type: DeviceType.NET,
      name: options.name,
      features: featureBit(NetFeature.MAC) | featureBit(NetFeature.STATUS),
      queueMaxSizes: [NET_QUEUE_SIZE, NET_QUEUE_SIZE],
      config: netConfig(options.mac),
    };
  }

  activate(context: VirtioDeviceContext): void {
    this.context = context;
  }

  reset(): void {
    this.context = null;
    this.held = null;
  }

  /** The backend's fd outlives the device (a machine reset builds another on it): leave it between frames. */
  close(): void {
    this.backend.settle?.(SETTLE_TIMEOUT_MS);
    if (this.context) this.reportFailure(this.context);
  }

  heldBuffers(index: number): number {
    return index === NetQueue.RECEIVE && this.held ? 1 : 0;
  }

  processQueue(index: number): void {
    if (index === NetQueue.RECEIVE) this.receive();
    else if (index === NetQueue.TRANSMIT) this.transmit();
  }

  /** Watch the backend only while a receive buffer waits for a frame: a readable fd with nowhere to put the frame would spin. */
  wantsPoll(): boolean {
    return this.held !== null && this.backend.failure === null && this.context?.queues[NetQueue.RECEIVE] != null;
  }

  /** Held-back output waits for the backend's fd to take more; the transmit ring waits with it. */
  wantsWritable(): boolean {
    return this.backend.blocked && this.context?.queues[NetQueue.TRANSMIT] != null;
  }

  onWritable(fd: number): void {
    if (fd !== this.backend.fd || !this.context) return;
    this.backend.flush();
    this.reportFailure(this.context);
    if (!this.backend.blocked) this.transmit();
  }

  onReadable(fd: number): void {
    if (fd !== this.backend.fd || !this.context) return;
    try {
      this.receive();
    } catch (e) {
      // Called from the I/O thread's poll loop, not through the runner: a
      // corrupted ring stops this queue instead of the thread.
      if (!(e instanceof VirtqueueError)) throw e;
      this.held = null;
      this.context.breakQueue(NetQueue.RECEIVE, e);
    }
  }

  /** Moves frames from the backend into receive buffers until either runs out. */
  private receive(): void {
    const context = this.context;
    const queue = context?.queues[NetQueue.RECEIVE];
    if (!context || !queue) return;
    let used = 0;
    for (let frames = 0; ; frames++) {
      if (!this.held) {
        const taken = this.takeReceiveBuffer(queue, context);
        used += taken.refused;
        if (!taken.held) break;
        this.held = taken.held;
      }
      if (frames === MAX_RX_FRAMES_PER_CALL || this.backend.failure) break;
      const { chain } = this.held;
      const length = this.backend.receive(this.held.views, chain.writableBytes);
      if (length === 0) break;
      if (length < 0) {
        this.counts.rxTruncated++;
        context.countError(`${this.info.name}: a frame longer than its receive buffer, dropped`);
        continue;
      }
      if (length < NET_HEADER_SIZE) {
        context.countError(`${this.info.name}: the backend returned ${length} bytes, less than a header; dropped`);
        continue;
      }
      scatter(context.memory, chain.writable, NUM_BUFFERS_OFFSET, ONE_BUFFER);
      queue.pushUsed(chain.head, length);
      this.held = null;
      this.counts.rxFrames++;
      this.counts.rxBytes += length - NET_HEADER_SIZE;
      used++;
    }
    this.reportFailure(context);
    if (used > 0) context.usedBuffers(NetQueue.RECEIVE);
  }

  private reportFailure(context: VirtioDeviceContext): void {
    if (this.backend.failure === null || this.failureReported) return;
    this.failureReported = true;
    context.countError(`${this.info.name}: ${this.backend.failure}`);
  }

  /**
   * The next usable receive buffer; malformed ones go back unused. When the
   * ring is empty it is re-armed, so the driver notifies us of the next one.
   */
  private takeReceiveBuffer(queue: Virtqueue, context: VirtioDeviceContext): { held: HeldReceive | null; refused: number } {
    let refused = 0;
    for (;;) {
      const chain = queue.pop();
      if (!chain) {
        if (queue.rearm()) continue;
        return { held: null, refused };
      }
      let reason = chain.error;
      if (!reason && chain.readable.length > 0) reason = `receive buffer with ${chain.readableBytes} device-readable bytes`;
      if (!reason && chain.writableBytes < NET_HEADER_SIZE) reason = `receive buffer of ${chain.writableBytes} bytes, shorter than the header`;
      const bufferViews = reason ? [] : views(context.memory, chain.writable);
      if (!reason && bufferViews.length >= MAX_IOVECS) reason = `receive buffer in ${bufferViews.length} pieces (at most ${MAX_IOVECS - 1})`;
      if (!reason) return { held: { chain, views: bufferViews }, refused };
      context.countError(`${this.info.name}: ${reason}`);
      queue.pushUsed(chain.head, 0);
      refused++;
    }
  }

  /**
   * Hands each transmit chain (header and frame) to the backend, straight
   * from guest memory, until the ring is empty or the backend holds output
   * back; then the ring waits, notifications off, until it is writable again.
   */
  private transmit(): void {
    const context = this.context;
    const queue = context?.queues[NetQueue.TRANSMIT];
    if (!context || !queue) return;
    do {
      let sent = 0;
      let chain: DescriptorChain | null;
      while (!this.backend.blocked && (chain = queue.pop())) {
        this.send(chain, context);
        // Transmit buffers are only read: the used length is 0.
        queue.pushUsed(chain.head, 0);
        sent++;
      }
      if (sent > 0) context.usedBuffers(NetQueue.TRANSMIT);
    } while (!this.backend.blocked && queue.rearm());
    this.reportFailure(context);
  }

  private send(chain: DescriptorChain, context: VirtioDeviceContext): void {
    let reason = chain.error;
    if (!reason && chain.writable.length > 0) reason = `transmit buffer with ${chain.writableBytes} device-writable bytes`;
    if (!reason && chain.readableBytes < NET_HEADER_SIZE) reason = `transmit buffer of ${chain.readableBytes} bytes, shorter than the header`;
    if (!reason && chain.readableBytes > NET_HEADER_SIZE + MAX_TX_FRAME) reason = `a frame of ${chain.readableBytes - NET_HEADER_SIZE} bytes`;
    const frameViews = reason ? [] : views(context.memory, chain.readable);
    if (!reason && frameViews.length > MAX_IOVECS) reason = `transmit buffer in ${frameViews.length} pieces (at most ${MAX_IOVECS})`;
    if (reason) {
      context.countError(`${this.info.name}: ${reason}`);
      return;
    }
    const lost = this.backend.send(frameViews, chain.readableBytes);
    if (lost === null) {
      this.counts.txFrames++;
      this.counts.txBytes += chain.readableBytes - NET_HEADER_SIZE;
    } else {
      this.counts.txErrors++;
      // A failed backend is reported once (reportFailure), not once per frame.
      if (this.backend.failure === null) context.countError(`${this.info.name}: ${lost}`);
    }
  }

  report(): Record<string, unknown> {
    return { ...this.counts };
  }
}
