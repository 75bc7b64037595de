// The state a virtio device shares between the thread that handles the
// guest's register accesses (the vCPU thread, through a transport) and the
// thread that processes its queues (the virtio I/O thread): negotiated
// features, device status, where each queue lives, and the interrupt status.
// It lives in a SharedArrayBuffer so both threads (and several vCPU threads'
// transports) see one copy; each word has one writer except ISR, which both
// change atomically.
//
// The buffer is laid out by a DeviceStateLayout, so it is also the device's
// saved form: the I/O thread's VirtioDeviceRunner writes its queue positions
// into the queue words it owns and copies the buffer out (runner.ts).
import { DeviceStateLayout } from '../device-state.ts';
import type { VirtioDeviceInfo } from './device.ts';
import { DeviceType } from './spec.ts';

/** Words of the device-wide part. */
const enum Word {
  STATUS,
  DEVICE_FEATURE_SELECT,
  DRIVER_FEATURE_SELECT,
  DRIVER_FEATURES_LOW,
  DRIVER_FEATURES_HIGH,
  QUEUE_SELECT,
  ISR,
  CONFIG_GENERATION,
  /** Bumped by each reset the driver asks for. */
  RESET_EPOCH,
  /** The last reset epoch the I/O thread has carried out. */
  RESET_DONE,
  /** Malformed requests and broken queues, for reports. */
  ERRORS,
  /** Register accesses the transport's layout does not allow, for reports. */
  BAD_ACCESSES,
  COUNT,
}

/** Words of one queue's part. */
export const enum QueueWord {
  // What the driver set up through the transport (vCPU thread).
  SIZE,
  READY,
  DESCRIPTORS_LOW,
  DESCRIPTORS_HIGH,
  AVAILABLE_LOW,
  AVAILABLE_HIGH,
  USED_LOW,
  USED_HIGH,
  // The I/O thread's place in the rings. Its Virtqueue keeps them while it
  // runs; they are written here only when the runner saves the device, and
  // read only when it restores one.
  NEXT_AVAILABLE,
  NEXT_USED,
  USED_AT_LAST_SIGNAL,
  /** 1: the queue broke and waits for the driver's reset. */
  BROKEN,
  COUNT,
}

/** Layout version of every virtio device's state; bump it when a word is added or changes meaning. */
const VIRTIO_STATE_VERSION = 1;

/** The saved state's kind: the device type, so a virtio-blk state never lands in a virtio-net. */
const DEVICE_KINDS: Record<number, string> = {
  [DeviceType.NET]: 'virtio-net',
  [DeviceType.BLOCK]: 'virtio-blk',
  [DeviceType.CONSOLE]: 'virtio-console',
  [DeviceType.ENTROPY]: 'virtio-rng',
};

function virtioStateFields(queueCount: number) {
  return {
    device: ['i32', Word.COUNT],
    queues: ['i32', queueCount * QueueWord.COUNT],
  } as const;
}

export type VirtioStateLayout = DeviceStateLayout<ReturnType<typeof virtioStateFields>>;

const layouts = new Map<string, VirtioStateLayout>();

/**
 * The layout of a device's shared state, named after its type ("virtio-blk").
 * It depends on the queue count, so there is one per (type, queue count),
 * made once and kept.
 */
export function virtioStateLayout(info: Pick<VirtioDeviceInfo, 'type' | 'queueMaxSizes'>): VirtioStateLayout {
  const kind = DEVICE_KINDS[info.type] ?? `virtio-device-${info.type}`;
  const queueCount = info.queueMaxSizes.length;
  const key = `${kind}/${queueCount}`;
  let layout = layouts.get(key);
  if (!layout) {
    layout = new DeviceStateLayout(kind, VIRTIO_STATE_VERSION, virtioStateFields(queueCount));
    layouts.set(key, layout);
  }
  return layout;
}

/** The shape alone, for a buffer whose device type is not known where it is used (the words are the same for every type). */
function anyVirtioLayout(queueCount: number): VirtioStateLayout {
  return virtioStateLayout({ type: 0, queueMaxSizes: new Array<number>(queueCount).fill(0) });
}

export class VirtioSharedState {
  private readonly words: Int32Array;
  private readonly queueWords: Int32Array;

  /** `buffer`: made by create() (all zeros is the power-on state: status 0, no queue set up). */
  constructor(readonly buffer: SharedArrayBuffer, readonly queueCount: number) {
    const views = anyVirtioLayout(queueCount).views(buffer);
    this.words = views.device;
    this.queueWords = views.queues;
  }

  static create(queueCount: number): VirtioSharedState {
    return new VirtioSharedState(anyVirtioLayout(queueCount).create(), queueCount);
  }

  get status(): number { return Atomics.load(this.words, Word.STATUS); }
  /** Sets status bits without a read-modify-write race with the other thread. */
  addStatus(bits: number): void { Atomics.or(this.words, Word.STATUS, bits); }

  get deviceFeatureSelect(): number { return this.words[Word.DEVICE_FEATURE_SELECT]!; }
  set deviceFeatureSelect(value: number) { this.words[Word.DEVICE_FEATURE_SELECT] = value; }
  get driverFeatureSelect(): number { return this.words[Word.DRIVER_FEATURE_SELECT]!; }
  set driverFeatureSelect(value: number) { this.words[Word.DRIVER_FEATURE_SELECT] = value; }

  get driverFeatures(): bigint {
    return (BigInt(this.words[Word.DRIVER_FEATURES_HIGH]! >>> 0) << 32n) | BigInt(this.words[Word.DRIVER_FEATURES_LOW]! >>> 0);
  }

  set driverFeatures(value: bigint) {
    this.words[Word.DRIVER_FEATURES_LOW] = Number(value & 0xffff_ffffn);
    this.words[Word.DRIVER_FEATURES_HIGH] = Number((value >> 32n) & 0xffff_ffffn);
  }

  get queueSelect(): number { return this.words[Word.QUEUE_SELECT]!; }
  set queueSelect(value: number) { this.words[Word.QUEUE_SELECT] = value; }

  get interruptStatus(): number { return Atomics.load(this.words, Word.ISR); }
  raiseInterruptStatus(bits: number): void { Atomics.or(this.words, Word.ISR, bits); }
  acknowledgeInterruptStatus(bits: number): void { Atomics.and(this.words, Word.ISR, ~bits); }
  /** Reads and clears ISR in one step (virtio-pci's ISR register). */
  takeInterruptStatus(): number { return Atomics.exchange(this.words, Word.ISR, 0); }

  get configGeneration(): number { return Atomics.load(this.words, Word.CONFIG_GENERATION); }

  get resetEpoch(): number { return Atomics.load(this.words, Word.RESET_EPOCH); }
  get resetDone(): number { return Atomics.load(this.words, Word.RESET_DONE); }

  /** The driver wrote 0 to status: forget what it negotiated and set up. */
  beginReset(): number {
    this.words[Word.DRIVER_FEATURES_LOW] = 0;
    this.words[Word.DRIVER_FEATURES_HIGH] = 0;
    this.words[Word.DEVICE_FEATURE_SELECT] = 0;
    this.words[Word.DRIVER_FEATURE_SELECT] = 0;
    this.words[Word.QUEUE_SELECT] = 0;
    this.queueWords.fill(0);
    Atomics.store(this.words, Word.ISR, 0);
    Atomics.store(this.words, Word.STATUS, 0);
    return Atomics.add(this.words, Word.RESET_EPOCH, 1) + 1;
  }

  /** The I/O thread has dropped its queues for reset `epoch`; wakes a waiting transport. */
  finishReset(epoch: number): void {
    Atomics.store(this.words, Word.RESET_DONE, epoch);
    Atomics.notify(this.words, Word.RESET_DONE);
  }

  /** Waits (bounded) until the I/O thread has carried out reset `epoch`. */
  waitForReset(epoch: number, timeoutMs: number): boolean {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const done = Atomics.load(this.words, Word.RESET_DONE);
      if (done - epoch >= 0) return true;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      Atomics.wait(this.words, Word.RESET_DONE, done, left);
    }
  }

  get errors(): number { return Atomics.load(this.words, Word.ERRORS); }
  countError(): void { Atomics.add(this.words, Word.ERRORS, 1); }

  /** Counted by the transports only, under the machine's device lock. */
  get badAccesses(): number { return this.words[Word.BAD_ACCESSES]!; }
  countBadAccess(): void { this.words[Word.BAD_ACCESSES] = this.words[Word.BAD_ACCESSES]! + 1; }

  queueWord(queue: number, word: QueueWord): number {
    return Atomics.load(this.queueWords, queue * QueueWord.COUNT + word);
  }

  setQueueWord(queue: number, word: QueueWord, value: number): void {
    Atomics.store(this.queueWords, queue * QueueWord.COUNT + word, value);
  }

  /** A queue's guest-physical address as set through its two 32-bit halves. */
  queueAddress(queue: number, low: QueueWord): number {
    return (this.queueWord(queue, low + 1) >>> 0) * 2 ** 32 + (this.queueWord(queue, low) >>> 0);
  }
}
