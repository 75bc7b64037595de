// A VM from the main thread's side: built by builder.ts, it runs one worker
// thread per vCPU (and the virtio I/O thread), carries the console to stdout
// and host input to the guest, and can stop every vCPU, even inside KVM_RUN.
import type { LinuxBootPlan } from '../boot/linux.ts';
import { AcpiGed } from '../devices/acpi-ged.ts';
import type { MachineConfig } from './config.ts';
import { Command, Control, controlBlock, createControlBlocks, VM_FAILURE_STATUS, type VcpuStop } from '../vcpu/index.ts';
import { buildMachine, type BuiltMachine } from './builder.ts';
import { ConsoleRingReader, createConsoleRing, InputRing, type ConsoleRingBuffers } from './byte-rings.ts';
import { KvmInterruptLine } from './interrupts.ts';
import { startThread, VCPU_THREAD, VCPU_THREAD_OPTIONS, type ThreadHandle } from './threads.ts';
import type { VcpuThreadInit, VcpuThreadReady, VcpuThreadStopped } from './vcpu-thread-main.ts';
import { VirtioIoThread } from './virtio-io-thread.ts';
import { closeVirtioWiring, type VirtioWiring } from './virtio-wiring.ts';

/**
 * How a run ended: what the vCPU threads reported, together (exits and
 * unclaimed accesses summed, device modules' reports in vCPU order, runNs the
 * bootstrap vCPU's), and what each virtio device counted.
 */
export interface MachineResult extends VcpuThreadStopped {
  virtio: Record<string, unknown>[];
}

const HALT_CHECK_INTERVAL_MS = 2000;
/** How long a vCPU thread asked to stop may take to leave KVM_RUN before it is terminated anyway. */
const VCPU_STOP_TIMEOUT_MS = 2000;

// A vCPU kick is SIGUSR2 to the vCPU thread. The process needs a handler or
// the signal's default action would end it; the handler itself has nothing to do.
let kickHandlerInstalled = false;
function installKickHandler(): void {
  if (kickHandlerInstalled) return;
  process.on('SIGUSR2', () => {});
  kickHandlerInstalled = true;
}

/** One running vCPU thread, from the main thread. */
interface VcpuThread {
  readonly id: number;
  readonly control: Int32Array;
  handle: ThreadHandle<VcpuThreadReady, VcpuThreadStopped>;
  /** Its kernel thread id once ready; 0 before, and once it has ended (nothing may signal it then). */
  threadId: number;
  ended: boolean;
}

export class Machine {
  private readonly controls: SharedArrayBuffer;
  private readonly console: ConsoleRingBuffers = createConsoleRing();
  private readonly inputBuffers: ConsoleRingBuffers = createConsoleRing(4096);
  private readonly input = new InputRing(this.inputBuffers);
  private threads: VcpuThread[] = [];
  private virtioThread: VirtioIoThread | null = null;
  private inputBacklog: Uint8Array[] = [];
  private inputRetry: NodeJS.Timeout | null = null;
  private haltWatchdog: NodeJS.Timeout | null = null;
  private haltCheck = 0;
  private stopRequested = false;
  private powerButton: AcpiGed | null = null;

  private constructor(private readonly built: BuiltMachine) {
    this.controls = createControlBlocks(built.config.cpus);
  }

  /** Builds the VM and loads the guest (builder.ts); throws InputError for a bad configuration or guest image. */
  static create(config: MachineConfig): Machine {
    return new Machine(buildMachine(config));
  }

  get config(): BuiltMachine['config'] {
    return this.built.config;
  }

  get memory() {
    return this.built.ram.memory;
  }

  /** How a Linux guest was loaded (null for flat guests). */
  get bootPlan(): LinuxBootPlan | null {
    return this.built.bootPlan;
  }

  /** The virtio devices and their wiring. */
  get virtio(): VirtioWiring {
    return this.built.virtio;
  }

  /** What the user should know that did not stop the machine (e.g. more vCPUs than KVM recommends). */
  get warnings(): readonly string[] {
    return this.built.warnings;
  }

  /**
   * Runs the guest to its end: the first vCPU to stop (the guest powered off,
   * a failure, stop()) stops the others. `haltCheckIntervalMs` sets how often
   * vCPUs halted inside KVM (with an irqchip) are checked for a halt nothing
   * can end.
   */
  async run(options: { haltCheckIntervalMs?: number } = {}): Promise<MachineResult> {
    installKickHandler();
    const { built } = this;
    const consoleFd = this.config.consoleFd ?? 1;
    const virtioThread = built.virtio.devices.length
      ? await VirtioIoThread.start({ ram: built.ram.descriptors, vmFd: built.vm.fd, wiring: built.virtio, consoleFd })
      : null;
    this.virtioThread = virtioThread;
    const consoleReader = new ConsoleRingReader(this.console, consoleFd);
    // With an irqchip a halted vCPU stays inside KVM: look now and then whether it can ever wake.
    this.haltWatchdog = built.irqchip ? setInterval(() => {
      this.haltCheck = (this.haltCheck % 0x7fff_ffff) + 1;
      for (const thread of this.threads) Atomics.store(thread.control, Control.CHECK_HALT, this.haltCheck);
      this.kickAll();
    }, options.haltCheckIntervalMs ?? HALT_CHECK_INTERVAL_MS) : null;
    this.haltWatchdog?.unref();
    // Console output with nowhere to go (stdout closed: `tsvmm run ... | head`)
    // ends the VM with that as its reason.
    let consoleLost: VcpuStop | null = null;
    const pumping = consoleReader.pump().catch((e: unknown) => {
      const code = (e as NodeJS.ErrnoException).code ?? (e instanceof Error ? e.message : String(e));
      consoleLost = { cause: 'console-closed', status: VM_FAILURE_STATUS, message: `the console's output (fd ${consoleFd}) can no longer be written (${code}): guest stopped` };
      this.stop();
    });
    this.threads = built.vcpus.map((fd, id) => this.startVcpuThread(id, fd.fd, fd.runMapping));

    try {
      const first = await Promise.race([
        ...this.threads.map((thread) => thread.handle.stopped.then((stopped) => ({ thread, stopped }))),
        ...(virtioThread ? [virtioThread.failed] : []),
      ]);
      // One vCPU ended the VM: the others follow.
      this.stop();
      const results = await Promise.all(this.threads.map((t) => withTimeout(t.handle.stopped.catch(() => null), VCPU_STOP_TIMEOUT_MS)));
      const virtioReports = virtioThread ? await virtioThread.stop() : [];
      const all = results.filter((r): r is VcpuThreadStopped => r !== null && r !== undefined);
      const stop = consoleLost ?? this.describeStop(first.thread.id, first.stopped.stop);
      return {
        stop,
        exits: all.reduce((sum, r) => sum + r.exits, 0),
        runNs: results[0]?.runNs ?? first.stopped.runNs,
        unclaimed: {
          pio: all.reduce((sum, r) => sum + r.unclaimed.pio, 0),
          mmio: all.reduce((sum, r) => sum + r.unclaimed.mmio, 0),
        },
        reports: all.flatMap((r) => r.reports),
        ...(first.stopped.traceSummary ? { traceSummary: all.map((r) => r.traceSummary).filter(Boolean).join('\n') } : {}),
        virtio: virtioReports,
      };
    } finally {
      // Timers first: a watchdog or input retry firing during the teardown
      // below would signal a thread that is going away.
      this.stopTimers();
      // Ended by a failure, vCPUs may still be inside KVM_RUN, where
      // terminate() cannot reach them: stop them first.
      if (this.threads.some((t) => !t.ended)) {
        this.stop();
        await Promise.all(this.threads.map((t) => withTimeout(t.handle.stopped.catch(() => null), VCPU_STOP_TIMEOUT_MS)));
      }
      consoleReader.stop();
      await pumping;
      for (const thread of this.threads) {
        thread.ended = true;
        thread.threadId = 0;
        await thread.handle.worker.terminate();
      }
      if (virtioThread) await virtioThread.terminate();
      this.virtioThread = null;
    }
  }

  private startVcpuThread(id: number, vcpuFd: number, run: { address: bigint; size: number }): VcpuThread {
    const { built } = this;
    const init: VcpuThreadInit = {
      config: built.config,
      vcpuId: id,
      vcpuFd,
      runPageAddress: run.address,
      runPageSize: run.size,
      ram: [...built.ram.descriptors],
      controls: this.controls,
      console: this.console,
      input: this.inputBuffers,
      hasIrqchip: built.irqchip,
      vmFd: built.vm.fd,
      devices: built.devices,
      virtio: built.virtio,
      irqLevels: built.irqLevels,
      clock: built.clock,
      deviceLock: built.deviceLock,
      symbols: built.symbols,
    };
    const handle = startThread<VcpuThreadReady, VcpuThreadStopped>(`vCPU ${id} thread`, VCPU_THREAD, init, VCPU_THREAD_OPTIONS);
    const thread: VcpuThread = { id, control: controlBlock(this.controls, id), handle, threadId: 0, ended: false };
    void handle.ready.then((ready) => {
      if (thread.ended) return;
      thread.threadId = ready.threadId;
      // Whatever arrived while it started: a stop, host input (COM1 is served by vCPU 0).
      if (this.stopRequested || (id === 0 && (this.inputBacklog.length || this.input.pending()))) this.kick(thread);
    }, () => {});
    const ended = () => {
      thread.ended = true;
      thread.threadId = 0;
    };
    handle.stopped.then(ended, ended);
    return thread;
  }

  /** With several vCPUs, a stop that is one vCPU's own says which. */
  private describeStop(id: number, stop: VcpuStop): VcpuStop {
    if (this.config.cpus === 1 || !stop.message || stop.cause === 'poweroff' || stop.cause === 'reboot' || stop.cause === 'halt') return stop;
    return { ...stop, message: `vCPU ${id}: ${stop.message}` };
  }

  private stopTimers(): void {
    if (this.haltWatchdog) clearInterval(this.haltWatchdog);
    this.haltWatchdog = null;
    if (this.inputRetry) clearTimeout(this.inputRetry);
    this.inputRetry = null;
  }

  /**
   * Host input for the guest's COM1 (the terminal's keystrokes). It waits in a
   * ring until the UART has room; vCPU 0 is kicked so a halted guest sees it.
   */
  sendInput(bytes: Uint8Array): void {
    this.inputBacklog.push(bytes);
    this.flushInput();
  }

  private flushInput(): void {
    const toVirtio = this.config.console === 'virtio' ? this.virtioThread : null;
    const ring = toVirtio ? toVirtio.consoleInput : this.input;
    while (this.inputBacklog.length) {
      const next = this.inputBacklog[0]!;
      const taken = ring.offer(next);
      if (taken < next.length) {
        this.inputBacklog[0] = next.subarray(taken);
        break;
      }
      this.inputBacklog.shift();
    }
    if (toVirtio) toVirtio.inputArrived();
    else if (this.threads[0]) this.kick(this.threads[0]);
    // A full ring drains as the guest reads: try again shortly (while there is a guest to read it).
    if (this.inputBacklog.length && !this.inputRetry && this.threads.some((t) => !t.ended)) {
      this.inputRetry = setTimeout(() => {
        this.inputRetry = null;
        this.flushInput();
      }, 10);
    }
  }

  /** Stops the guest, every vCPU even inside KVM_RUN; run() then resolves with cause "stopped". */
  stop(): void {
    this.stopRequested = true;
    for (const thread of this.threads) Atomics.store(thread.control, Control.COMMAND, Command.STOP);
    this.kickAll();
  }

  /**
   * Presses the ACPI power button: the guest is asked to shut down, and
   * run() resolves once it powered off. False when the guest has no ACPI
   * (a flat guest), so there is no button to press.
   */
  pressPowerButton(): boolean {
    const ged = this.built.devices.find((d) => d.kind === 'acpi-ged');
    if (!ged) return false;
    // The main thread's own GED over the state the vCPU threads serve.
    this.powerButton ??= new AcpiGed(new KvmInterruptLine(this.built.vm, ged.gsi, this.built.irqLevels), ged.state);
    this.powerButton.pressPowerButton();
    return true;
  }

  private kickAll(): void {
    for (const thread of this.threads) this.kick(thread);
  }

  /** Interrupts a vCPU thread's KVM_RUN; does nothing before the thread is ready or once it has ended. */
  private kick(thread: VcpuThread): void {
    if (!thread.threadId || thread.ended) return;
    // False: the thread has exited since (its stop message is on its way).
    if (!this.built.vcpus[thread.id]!.kick(thread.threadId)) thread.threadId = 0;
  }

  /** Releases the VM's fds and memory (the process exiting does the same). */
  close(): void {
    closeVirtioWiring(this.built.virtio);
    for (const vcpu of this.built.vcpus) vcpu.close();
    this.built.vm.close();
    this.built.kvm.close();
  }
}

/** Waits for `promise`, but no longer than `ms` (then undefined). */
async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
