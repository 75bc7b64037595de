// virtio-rng, the entropy device (virtio 1.2, 5.4): one queue of
// device-writable buffers that the device fills with random bytes from the
// host, written straight into guest RAM.
import { randomFillSync } from 'node:crypto';
import type { VirtioDevice, VirtioDeviceContext, VirtioDeviceInfo } from './device.ts';
import { forEachSpan, type DescriptorChain, type Virtqueue } from './queue.ts';
import { DeviceType } from './spec.ts';

export const RNG_QUEUE_SIZE = 256;
/**
 * Most bytes one request gets: a guest asking for a gigabyte must not hold
 * the I/O thread. The used length tells the driver how much it got (5.4.6.1).
 */
export const RNG_MAX_REQUEST_BYTES = 64 * 1024;

export interface RngOptions {
  name: string;
}

export class VirtioRng implements VirtioDevice {
  readonly info: VirtioDeviceInfo;
  private context: VirtioDeviceContext | null = null;
  readonly counts = { requests: 0, bytes: 0 };

  constructor(options: RngOptions) {
    this.info = {
      type: DeviceType.ENTROPY,
      name: options.name,
      // No device-specific features and no configuration space (5.4.3, 5.4.4).
      features: 0n,
      queueMaxSizes: [RNG_QUEUE_SIZE],
      config: new Uint8Array(0),
    };
  }

  activate(context: VirtioDeviceContext): void {
    this.context = context;
  }

  reset(): void {
    this.context = null;
  }

  processQueue(index: number): void {
    const context = this.context;
    context?.serve(index, (chain, queue) => this.complete(queue, chain, context));
  }

  private complete(queue: Virtqueue, chain: DescriptorChain, context: VirtioDeviceContext): void {
    const refuse = (reason: string) => {
      context.countError(`${this.info.name}: ${reason}`);
      queue.pushUsed(chain.head, 0);
    };
    if (chain.error) return refuse(chain.error);
    // The driver must post only device-writable buffers (5.4.6.1).
    if (chain.readable.length > 0) return refuse(`request with ${chain.readableBytes} device-readable bytes`);
    const length = Math.min(chain.writableBytes, RNG_MAX_REQUEST_BYTES);
    forEachSpan(chain.writable, 0, length, (address, spanLength) => {
      for (const view of context.memory.slices(address, spanLength)) randomFillSync(view);
    });
    this.counts.requests++;
    this.counts.bytes += length;
    queue.pushUsed(chain.head, length);
  }

  report(): Record<string, unknown> {
    return { ...this.counts };
  }
}
