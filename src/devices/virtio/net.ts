// virtio-net (virtio 1.2, 5.1) over a TAP device: receiveq (0) and
// transmitq (1), one queue pair. The TAP fd speaks the same 12-byte header
// as a virtio 1.x driver (IFF_VNET_HDR with TUNSETVNETHDRSZ 12), so a frame
// goes from guest RAM to the TAP with one writev and from the TAP to guest
// RAM with one readv, never copied or rewritten on the way.
import { readvSync, writevSync } from 'node:fs';
import type { VirtioDevice, VirtioDeviceContext, VirtioDeviceInfo } from './device.ts';
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

/** readv/writev take at most this many buffers (Linux UIO_MAXIOV). */
const MAX_IOVECS = 1024;
/**
 * The last iovec of every receive: the TAP returns only the bytes that fit,
 * so a frame longer than the guest's buffer shows as a byte landing here.
 */
const overflowByte = new Uint8Array(1);
/** Without GSO a frame is at most a 64 KiB IP packet plus its Ethernet header. */
const MAX_TX_FRAME = 65536 + 14;
/** Frames taken from the TAP per wake-up, so one busy device cannot hold the I/O thread. */
const MAX_RX_FRAMES_PER_CALL = 256;

export interface NetOptions {
  name: string;
  /**
   * A TAP fd opened non-blocking with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR and a
   * 12-byte vnet header (src/kvm openTap). The device does not close it:
   * it belongs to whoever opened it.
   */
  tapFd: number;
  mac: Uint8Array;
}

function netConfig(mac: Uint8Array): Uint8Array {
  if (mac.length !== 6) throw new Error(`a MAC address has 6 bytes, not ${mac.length}`);
  const config = new Uint8Array(NET_CONFIG_SIZE);
  config.set(mac, 0);
  new DataView(config.buffer).setUint16(6, VIRTIO_NET_S_LINK_UP, true);
  return config;
}

function errorCode(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? (e instanceof Error ? e.message : String(e));
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
  private readonly tapFd: number;
  private context: VirtioDeviceContext | null = null;
  /**
   * The next receive buffer, taken from the ring before a frame is there to
   * fill it (the ring cannot take a buffer back). While one is held the TAP
   * is worth watching; otherwise the receive ring is empty and re-armed.
   */
  private held: HeldReceive | null = null;
  /** Reading the TAP failed with something other than EAGAIN: stop watching it, or poll would spin. */
  private tapFailed = false;
  readonly counts = { rxFrames: 0, rxBytes: 0, rxTruncated: 0, txFrames: 0, txBytes: 0, txErrors: 0 };

  constructor(options: NetOptions) {
    this.tapFd = options.tapFd;
    this.pollFds = [options.tapFd];
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

  heldBuffers(index: number): number {
    return index === NetQueue.RECEIVE && this.held ? 1 : 0;
  }

  processQueue(index: number): void {
    if (index === NetQueue.RECEIVE) this.receive();
    else if (index === NetQueue.TRANSMIT) this.transmit();
  }

  /** Watch the TAP only while a receive buffer waits for a frame: a readable TAP with nowhere to put the frame would spin. */
  wantsPoll(): boolean {
    return this.held !== null && !this.tapFailed && this.context?.queues[NetQueue.RECEIVE] != null;
  }

  onReadable(fd: number): void {
    if (fd !== this.tapFd || !this.context) return;
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

  /** Moves frames from the TAP into receive buffers until either runs out. */
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
      if (frames === MAX_RX_FRAMES_PER_CALL || this.tapFailed) break;
      const { chain } = this.held;
      let length: number;
      try {
        length = readvSync(this.tapFd, this.held.views);
      } catch (e) {
        const code = errorCode(e);
        if (code === 'EAGAIN' || code === 'EWOULDBLOCK' || code === 'EINTR') break;
        this.tapFailed = true;
        context.countError(`${this.info.name}: reading the TAP device: ${code}`);
        break;
      }
      if (length === 0) {
        // End of file: a TAP never says that; whatever this fd is, stop watching it rather than spin.
        this.tapFailed = true;
        context.countError(`${this.info.name}: the TAP device returned end of file`);
        break;
      }
      if (length > chain.writableBytes) {
        this.counts.rxTruncated++;
        context.countError(`${this.info.name}: a frame longer than its receive buffer, dropped`);
        continue;
      }
      if (length < NET_HEADER_SIZE) {
        context.countError(`${this.info.name}: the TAP device returned ${length} bytes, less than a header; dropped`);
        continue;
      }
      scatter(context.memory, chain.writable, NUM_BUFFERS_OFFSET, ONE_BUFFER);
      queue.pushUsed(chain.head, length);
      this.held = null;
      this.counts.rxFrames++;
      this.counts.rxBytes += length - NET_HEADER_SIZE;
      used++;
    }
    if (used > 0) context.usedBuffers(NetQueue.RECEIVE);
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
      if (!reason) return { held: { chain, views: [...bufferViews, overflowByte] }, refused };
      context.countError(`${this.info.name}: ${reason}`);
      queue.pushUsed(chain.head, 0);
      refused++;
    }
  }

  /** Writes each transmit chain (header and frame) to the TAP in one writev, straight from guest memory. */
  private transmit(): void {
    const context = this.context;
    context?.serve(NetQueue.TRANSMIT, (chain, queue) => {
      this.send(chain, context);
      // Transmit buffers are only read: the used length is 0.
      queue.pushUsed(chain.head, 0);
    });
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
    try {
      const written = writevSync(this.tapFd, frameViews);
      if (written !== chain.readableBytes) throw new Error(`wrote ${written} of ${chain.readableBytes} bytes`);
      this.counts.txFrames++;
      this.counts.txBytes += chain.readableBytes - NET_HEADER_SIZE;
    } catch (e) {
      // The TAP refused the frame (interface down: EIO; a header it rejects: EINVAL): the frame is lost, as on a wire.
      this.counts.txErrors++;
      context.countError(`${this.info.name}: writing to the TAP device: ${errorCode(e)}`);
    }
  }

  report(): Record<string, unknown> {
    return { ...this.counts };
  }
}
