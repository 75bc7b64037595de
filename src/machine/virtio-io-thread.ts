// The virtio I/O thread seen from the main thread: start it (and wait until
// it listens), carry the virtio console's bytes to and from it, stop it and
// collect what its devices counted. Its body is virtio-thread-main.ts.
import type { Worker } from 'node:worker_threads';
import { signalEventFd } from '../kvm/index.ts';
import type { RamDescriptor } from '../memory/host-ram.ts';
import { ConsoleRingReader, createConsoleRing, InputRing } from './byte-rings.ts';
import { startThread, VIRTIO_THREAD, VIRTIO_THREAD_OPTIONS } from './threads.ts';
import type { VirtioThreadInit, VirtioThreadStopped } from './virtio-thread-main.ts';
import type { VirtioWiring } from './virtio-wiring.ts';

/** How long the virtio I/O thread may take to hand in its reports when the VM ends. */
const STOP_TIMEOUT_MS = 2000;

type Reports = Record<string, unknown>[];

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

  private constructor(private readonly wiring: VirtioWiring) {}

  /** Starts the thread and waits until it has opened its devices, so that the driver's first reset finds it listening. */
  static async start(options: { ram: readonly RamDescriptor[]; vmFd: number; wiring: VirtioWiring; consoleFd: number }): Promise<VirtioIoThread> {
    const thread = new VirtioIoThread(options.wiring);
    const init: VirtioThreadInit = {
      ram: [...options.ram],
      vmFd: options.vmFd,
      devices: options.wiring.devices,
      controlFd: options.wiring.controlFd,
      control: thread.control.buffer as SharedArrayBuffer,
      consoleOutput: thread.consoleOutput,
      consoleInput: thread.consoleInputBuffers,
    };
    const handle = startThread<object, VirtioThreadStopped>('virtio I/O thread', VIRTIO_THREAD, init, VIRTIO_THREAD_OPTIONS);
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
  }

  private askToStop(): void {
    Atomics.store(this.control, 0, 1);
    signalEventFd(this.wiring.controlFd);
  }
}
