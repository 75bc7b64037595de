// virtio-console (virtio 1.2, 5.3) with a single port and no
// VIRTIO_CONSOLE_F_MULTIPORT: receiveq0 carries host input to the guest,
// transmitq0 the guest's output to the host. Linux calls it /dev/hvc0.
import type { VirtioDevice, VirtioDeviceContext, VirtioDeviceInfo } from './device.ts';
import { forEachSpan, scatter, VirtqueueError, type DescriptorChain, type Virtqueue } from './queue.ts';
import { DeviceType } from './spec.ts';

export const CONSOLE_QUEUE_SIZE = 256;
export const ConsoleQueue = {
  RECEIVE: 0,
  TRANSMIT: 1,
} as const;

/** struct virtio_console_config: cols, rows (u16), max_nr_ports, emerg_wr (u32) (5.3.4). */
export const CONSOLE_CONFIG_SIZE = 12;
/** Most host input handed over in one receive buffer. */
const MAX_INPUT_PER_BUFFER = 64 * 1024;

export interface ConsoleHostIo {
  /**
   * Bytes the guest wrote (to stdout, through the machine's console ring).
   * `bytes` is a view of guest memory, valid only during the call: copy what you keep.
   */
  write(bytes: Uint8Array): void;
  /** Takes up to `max` bytes of pending host input, or null when there is none. */
  read(max: number): Uint8Array | null;
}

export interface ConsoleOptions {
  name: string;
  io: ConsoleHostIo;
}

export class VirtioConsole implements VirtioDevice {
  readonly info: VirtioDeviceInfo;
  private readonly io: ConsoleHostIo;
  private context: VirtioDeviceContext | null = null;
  /**
   * A receive buffer taken from the ring while no input was pending: it waits
   * here for the next input (the ring cannot take a buffer back).
   */
  private heldReceive: DescriptorChain | null = null;
  readonly counts = { bytesIn: 0, bytesOut: 0 };

  constructor(options: ConsoleOptions) {
    this.io = options.io;
    this.info = {
      type: DeviceType.CONSOLE,
      name: options.name,
      // No features: no size (cols and rows read 0), no multiport, no emergency write.
      features: 0n,
      queueMaxSizes: [CONSOLE_QUEUE_SIZE, CONSOLE_QUEUE_SIZE],
      config: new Uint8Array(CONSOLE_CONFIG_SIZE),
    };
  }

  activate(context: VirtioDeviceContext): void {
    this.context = context;
  }

  reset(): void {
    this.context = null;
    this.heldReceive = null;
  }

  heldBuffers(index: number): number {
    return index === ConsoleQueue.RECEIVE && this.heldReceive ? 1 : 0;
  }

  processQueue(index: number): void {
    if (index === ConsoleQueue.RECEIVE) this.receive();
    else if (index === ConsoleQueue.TRANSMIT) this.transmit();
  }

  /** The host may have input: fill posted receive buffers. */
  receiveHostInput(): void {
    if (!this.context) return;
    try {
      this.receive();
    } catch (e) {
      // Called from the I/O thread's event loop, not through the runner: a
      // corrupted ring stops this queue instead of the thread.
      if (!(e instanceof VirtqueueError)) throw e;
      this.heldReceive = null;
      this.context.breakQueue(ConsoleQueue.RECEIVE, e);
    }
  }

  /** Moves pending host input into receive buffers until either runs out. */
  private receive(): void {
    const context = this.context;
    const queue = context?.queues[ConsoleQueue.RECEIVE];
    if (!context || !queue) return;
    let used = 0;
    for (;;) {
      if (!this.heldReceive) {
        const chain = queue.pop();
        if (!chain) {
          if (queue.rearm()) continue;
          break;
        }
        if (!this.usableReceive(queue, chain, context)) {
          used++;
          continue;
        }
        this.heldReceive = chain;
      }
      const chain = this.heldReceive;
      const input = this.io.read(Math.min(chain.writableBytes, MAX_INPUT_PER_BUFFER));
      if (!input || input.length === 0) break;
      scatter(context.memory, chain.writable, 0, input);
      this.heldReceive = null;
      queue.pushUsed(chain.head, input.length);
      this.counts.bytesIn += input.length;
      used++;
    }
    if (used > 0) context.usedBuffers(ConsoleQueue.RECEIVE);
  }

  /** A receive buffer must be device-writable only; a bad one goes back unused. */
  private usableReceive(queue: Virtqueue, chain: DescriptorChain, context: VirtioDeviceContext): boolean {
    const reason = chain.error ?? (chain.readable.length > 0 ? `receive buffer with ${chain.readableBytes} device-readable bytes` : null);
    if (reason === null) return true;
    context.countError(`${this.info.name}: ${reason}`);
    queue.pushUsed(chain.head, 0);
    return false;
  }

  /** Hands each transmit buffer's bytes to the host, straight from guest memory. */
  private transmit(): void {
    const context = this.context;
    context?.serve(ConsoleQueue.TRANSMIT, (chain, queue) => {
      const reason = chain.error ?? (chain.writable.length > 0 ? `transmit buffer with ${chain.writableBytes} device-writable bytes` : null);
      if (reason !== null) {
        context.countError(`${this.info.name}: ${reason}`);
      } else {
        forEachSpan(chain.readable, 0, chain.readableBytes, (address, length) => {
          for (const view of context.memory.slices(address, length)) this.io.write(view);
        });
        this.counts.bytesOut += chain.readableBytes;
      }
      // Transmit buffers are only read: the used length is 0 either way.
      queue.pushUsed(chain.head, 0);
    });
  }

  report(): Record<string, unknown> {
    return { ...this.counts };
  }
}
