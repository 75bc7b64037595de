// The main thread's side of the virtio devices: at VM creation it opens each
// device once (to learn its shape and fail early on a bad image or TAP),
// places it, and connects its eventfds to KVM; at run time it starts the virtio
// I/O thread (virtio-thread.ts), carries the virtio console, and stops it.
import { Worker } from 'node:worker_threads';
import { MmioRegister } from '../devices/virtio/mmio.ts';
import { closeFd, createEventFd, ofdByteLocks, openTap, signalEventFd, type VmFd } from '../kvm/index.ts';
import { InputError } from '../errors.ts';
import type { RamDescriptor } from '../memory/host-ram.ts';
import { identityOf, lockImageChain, type ImageLocks } from '../storage/image-lock.ts';
import type { MachineConfig, VirtioDeviceConfig } from './config.ts';
import { ConsoleRingReader, createConsoleRing, InputRing } from './console-ring.ts';
import { indexesWithinKind, openVirtioDevice } from './virtio-devices.ts';
import { planVirtioDevices, type PlannedVirtioDevice } from './virtio-plan.ts';
import type { VirtioThreadInit, VirtioThreadMessage } from './virtio-thread.ts';
import { workerUrl } from './worker-url.ts';

const VIRTIO_THREAD = workerUrl(import.meta.url, 'virtio-thread');
/** How long the virtio I/O thread may take to hand in its reports when the VM ends. */
const STOP_TIMEOUT_MS = 2000;

/** The machine's virtio devices as planned, and the eventfd that wakes their I/O thread. */
export interface VirtioWiring {
  devices: PlannedVirtioDevice[];
  controlFd: number;
}

/**
 * The disk images' locks, held by the main thread for the VM's lifetime: the
 * I/O thread opens the images again on descriptors of its own and takes no
 * locks (OFD locks on those would conflict with these). Kept beside the
 * wiring, not in it, because the wiring is copied to the threads.
 */
const heldImageLocks = new WeakMap<VirtioWiring, ImageLocks[]>();

/** Two --disk options naming one file (under any names) where either may write it. */
function refuseSharedWritableImages(configs: readonly VirtioDeviceConfig[]): void {
  const seen = new Map<string, Extract<VirtioDeviceConfig, { kind: 'blk' }>>();
  for (const config of configs) {
    if (config.kind !== 'blk') continue;
    const identity = identityOf(config.path);
    if (identity === null) continue;
    const earlier = seen.get(identity);
    if (earlier && !(earlier.readOnly && config.readOnly)) {
      throw new InputError(`${config.path}: the same image is given twice (--disk ${earlier.path} and --disk ${config.path}); add readonly to both to share it`);
    }
    seen.set(identity, config);
  }
}

/** Locks each disk image and its backing files as QEMU does, so no other tsvmm or QEMU writes them meanwhile. */
function lockDiskImages(configs: readonly VirtioDeviceConfig[]): ImageLocks[] {
  const held: ImageLocks[] = [];
  try {
    for (const config of configs) {
      if (config.kind !== 'blk') continue;
      held.push(lockImageChain(config.path, {
        ...(config.format ? { format: config.format } : {}),
        readOnly: config.readOnly ?? false,
        locks: ofdByteLocks,
      }));
    }
  } catch (e) {
    for (const locks of held) locks.release();
    throw e;
  }
  return held;
}

/**
 * Opens the virtio devices once here to learn their shape (and to fail before
 * the guest starts on a bad disk image or a missing TAP device), plans where
 * they sit, and connects their eventfds to KVM.
 */
export function wireVirtio(vm: VmFd, config: MachineConfig, hasIrqchip: boolean): VirtioWiring {
  const configs: VirtioDeviceConfig[] = [...(config.virtio ?? [])];
  if (config.console === 'virtio' && !configs.some((c) => c.kind === 'console')) configs.push({ kind: 'console' });
  if (configs.length === 0) return { devices: [], controlFd: -1 };
  if (!hasIrqchip) throw new InputError('virtio devices need the interrupt controllers: use --irqchip with a flat guest');
  refuseSharedWritableImages(configs);
  const imageLocks = lockDiskImages(configs);
  try {
    const wiring = wireLockedVirtio(vm, config, configs);
    heldImageLocks.set(wiring, imageLocks);
    return wiring;
  } catch (e) {
    for (const locks of imageLocks) locks.release();
    throw e;
  }
}

function wireLockedVirtio(vm: VmFd, config: MachineConfig, configs: VirtioDeviceConfig[]): VirtioWiring {
  const indexes = indexesWithinKind(configs);
  const noConsole = { write: () => {}, read: () => null };
  const described = configs.map((deviceConfig, i) => {
    if (deviceConfig.kind === 'net' && deviceConfig.tapFd === undefined) {
      deviceConfig = { ...deviceConfig, tapFd: openTap(deviceConfig.tap).fd };
    }
    const index = indexes[i]!;
    const device = openVirtioDevice(deviceConfig, index, { console: noConsole });
    const info = device.info;
    // The TAP fd stays open for the I/O thread; a disk is opened again there.
    if (deviceConfig.kind !== 'net') device.close?.();
    return { config: deviceConfig, index, info };
  });
  const devices = planVirtioDevices(described, {
    defaultTransport: config.virtioTransport ?? 'mmio',
    createEventFd,
    useIrqfd: config.irqfd === true,
  });
  for (const device of devices) {
    if (device.irqfd !== null) vm.irqfd(device.irqfd, device.irq);
    // A virtio-mmio notify is a 32-bit write of the queue index to one register.
    if (device.transport === 'mmio' && config.ioeventfd === true) {
      device.notifyFds.forEach((fd, queue) => vm.ioeventfd({
        address: device.address + MmioRegister.QUEUE_NOTIFY, length: 4, datamatch: queue, fd, pio: false,
      }));
    }
  }
  return { devices, controlFd: createEventFd() };
}

/** Closes what wireVirtio opened: TAP fds, queue and interrupt eventfds, the control eventfd, the image locks. */
export function closeVirtioWiring(wiring: VirtioWiring): void {
  for (const device of wiring.devices) {
    if (device.config.kind === 'net' && device.config.tapFd !== undefined) closeFd(device.config.tapFd);
    for (const fd of [...device.notifyFds, ...(device.irqfd !== null ? [device.irqfd] : [])]) closeFd(fd);
  }
  if (wiring.controlFd >= 0) closeFd(wiring.controlFd);
  for (const locks of heldImageLocks.get(wiring) ?? []) locks.release();
  heldImageLocks.delete(wiring);
}

type Reports = Record<string, unknown>[];

/** The running virtio I/O thread, seen from the main thread. */
export class VirtioIoThread {
  private readonly control = new Int32Array(new SharedArrayBuffer(4));
  private readonly consoleOutput = createConsoleRing();
  private readonly consoleInputBuffers = createConsoleRing(4096);
  /** Host input for the virtio console (`--console virtio`). */
  readonly consoleInput = new InputRing(this.consoleInputBuffers);
  private worker: Worker | null = null;
  private consoleReader: ConsoleRingReader | null = null;
  private pumping: Promise<void> = Promise.resolve();
  private stopped: Promise<Reports> = Promise.resolve([]);
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
    const worker = new Worker(VIRTIO_THREAD, { workerData: init, stdout: false, stderr: false });
    thread.worker = worker;
    thread.consoleReader = new ConsoleRingReader(thread.consoleOutput, options.consoleFd);
    thread.pumping = thread.consoleReader.pump();
    let ready: () => void = () => {};
    const started = new Promise<void>((resolve) => (ready = resolve));
    let onStopped: (reports: Reports) => void = () => {};
    thread.stopped = new Promise<Reports>((resolve) => (onStopped = resolve));
    thread.failed = new Promise<never>((_, reject) => {
      worker.on('message', (message: VirtioThreadMessage) => {
        if (message.kind === 'ready') ready();
        else if (message.kind === 'stopped') onStopped(message.reports);
        else reject(new Error(message.message));
      });
      worker.on('error', reject);
    });
    thread.failed.catch(() => {});
    await Promise.race([started, thread.failed]);
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
      return await Promise.race([this.stopped, timeout, this.failed]);
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
