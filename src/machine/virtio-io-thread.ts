// The virtio I/O thread seen from the main thread: start it (and wait until
// it listens), carry the virtio console's bytes to and from it, stop it and
// collect what its devices counted; pause it, save and restore its devices.
// Its body is virtio-thread-main.ts.
import { MessageChannel, type MessagePort, type Worker } from 'node:worker_threads';
import type { SavedDeviceState } from '../devices/device-state.ts';
import { signalEventFd } from '../kvm/index.ts';
import { DirtyPageLog } from '../memory/dirty-pages.ts';
import type { RamDescriptor } from '../memory/host-ram.ts';
import { ConsoleRingReader, createConsoleRing, InputRing } from './byte-rings.ts';
import { startThread, VIRTIO_THREAD, VIRTIO_THREAD_OPTIONS } from './threads.ts';
import type { VirtioThreadInit, VirtioThreadReply, VirtioThreadRequest, VirtioThreadStopped } from './virtio-thread-main.ts';
import type { VirtioWiring } from './virtio-wiring.ts';

/** How long the virtio I/O thread may take to hand in its reports when the VM ends. */
const STOP_TIMEOUT_MS = 2000;

type Reports = Record<string, unknown>[];
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

export class VirtioIoThread {
  private readonly control = new Int32Array(new SharedArrayBuffer(4));
  private readonly consoleOutput = createConsoleRing();
  private readonly consoleInputBuffers = createConsoleRing(4096);
  /** Host input for the virtio console (`--console virtio`). */
  readonly consoleInput = new InputRing(this.consoleInputBuffers);
  private worker: Worker | null = null;
  private consoleReader: ConsoleRingReader | null = null;
  private pumping: Promise<void> = Promise.resolve();
  private stopped: Promise<VirtioThreadStopped> = Promise.resolve({ reports: [] });
  /** Rejects when the thread fails; run() races it against the guest. */
  failed: Promise<never> = new Promise(() => {});
  private readonly requests: MessagePort;
  private readonly waiting = new Map<number, (reply: VirtioThreadReply) => void>();
  private nextRequest = 1;

  private constructor(private readonly wiring: VirtioWiring, requests: MessagePort) {
    this.requests = requests;
    requests.on('message', (reply: VirtioThreadReply) => {
      this.waiting.get(reply.id)?.(reply);
      this.waiting.delete(reply.id);
    });
    // Replies are awaited by whoever asked; the port alone must not keep the process alive.
    requests.unref();
  }

  /**
   * Starts the thread and waits until it has opened its devices, so that the
   * driver's first reset finds it listening. `restore`: the devices' saved
   * states to start from; `paused`: serve nothing until resume().
   */
  static async start(options: {
    ram: readonly RamDescriptor[]; vmFd: number; wiring: VirtioWiring; consoleFd: number;
    dirtyLog?: SharedArrayBuffer; restore?: SavedDeviceState[] | null; paused?: boolean;
  }): Promise<VirtioIoThread> {
    const channel = new MessageChannel();
    const thread = new VirtioIoThread(options.wiring, channel.port1);
    const init: VirtioThreadInit = {
      ram: [...options.ram],
      vmFd: options.vmFd,
      devices: options.wiring.devices,
      controlFd: options.wiring.controlFd,
      control: thread.control.buffer as SharedArrayBuffer,
      consoleOutput: thread.consoleOutput,
      consoleInput: thread.consoleInputBuffers,
      requests: channel.port2,
      dirtyLog: options.dirtyLog ?? DirtyPageLog.create(0),
      diskDirtyLogs: options.wiring.disks.map((disk) => disk.dirtyLog),
      restore: options.restore ?? null,
      paused: options.paused ?? false,
    };
    const handle = startThread<object, VirtioThreadStopped>('virtio I/O thread', VIRTIO_THREAD, init, { ...VIRTIO_THREAD_OPTIONS, transferList: [channel.port2] });
    thread.worker = handle.worker;
    thread.consoleReader = new ConsoleRingReader(thread.consoleOutput, options.consoleFd);
    thread.pumping = thread.consoleReader.pump();
    thread.stopped = handle.stopped;
    // Only a failure rejects: a thread that stopped on request is not one.
    thread.failed = handle.stopped.then(() => new Promise<never>(() => {}));
    thread.failed.catch(() => {});
    await handle.ready;
    return thread;
  }

  /** Stops serving the devices: no device writes guest RAM or interrupts until resume(). */
  async pause(): Promise<void> {
    await this.request({ op: 'pause' });
  }

  async resume(): Promise<void> {
    await this.request({ op: 'resume' });
  }

  /** Each device's state, in wiring order, taken quiesced after flushing its disk. */
  async save(): Promise<SavedDeviceState[]> {
    return (await this.request({ op: 'save' })).states ?? [];
  }

  /** Throws (changing nothing) when a state is not its device's. */
  async restore(states: SavedDeviceState[]): Promise<void> {
    await this.request({ op: 'restore', states });
  }

  /**
   * `length` bytes of disk `disk` (its index among the disks) at `offset`, read
   * by the thread that owns the disk between two requests; null when they read as zeros.
   */
  async readDisk(disk: number, offset: number, length: number): Promise<Uint8Array | null> {
    return (await this.request({ op: 'read-disk', disk, offset, length })).data ?? null;
  }

  private request(body: DistributiveOmit<VirtioThreadRequest, 'id'>): Promise<Extract<VirtioThreadReply, { ok: true }>> {
    const id = this.nextRequest++;
    const answered = new Promise<VirtioThreadReply>((resolve) => this.waiting.set(id, resolve));
    this.requests.ref();
    this.requests.postMessage({ ...body, id } as VirtioThreadRequest);
    signalEventFd(this.wiring.controlFd);
    return Promise.race([answered, this.failed]).then((reply) => {
      if (this.waiting.size === 0) this.requests.unref();
      if (!reply.ok) throw new Error(`virtio I/O thread: ${reply.message}`);
      return reply;
    });
  }

  /** Host input waits in consoleInput: wake the thread to deliver it. */
  inputArrived(): void {
    signalEventFd(this.wiring.controlFd);
  }

  /** Asks the thread to finish and collects its reports (none if it does not answer in time). */
  async stop(): Promise<Reports> {
    this.askToStop();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<Reports>((resolve) => (timer = setTimeout(() => resolve([]), STOP_TIMEOUT_MS)));
    try {
      return await Promise.race([this.stopped.then((s) => s.reports), timeout, this.failed]);
    } finally {
      clearTimeout(timer);
    }
  }

  async terminate(): Promise<void> {
    this.askToStop();
    this.consoleReader?.stop();
    await this.pumping;
    await this.worker?.terminate();
    this.worker = null;
    this.requests.close();
  }

  private askToStop(): void {
    Atomics.store(this.control, 0, 1);
    signalEventFd(this.wiring.controlFd);
  }
}
