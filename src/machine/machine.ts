// A VM from the main thread's side: built by builder.ts, it runs one worker
// thread per vCPU (and the virtio I/O thread), carries the console to stdout
// and host input to the guest, and can stop every vCPU, even inside KVM_RUN.
import type { LinuxBootPlan } from '../boot/linux.ts';
import { AcpiGed } from '../devices/acpi-ged.ts';
import type { MachineConfig } from './config.ts';
import { Command, Control, controlBlock, createControlBlocks, VM_FAILURE_STATUS, type VcpuStop } from '../vcpu/index.ts';
import { MonotonicClock } from '../devices/clock.ts';
import type { SavedDeviceState } from '../devices/device-state.ts';
import { DirtyPageLog } from '../memory/dirty-pages.ts';
import { buildMachine, type BuildOptions, type BuiltMachine } from './builder.ts';
import { restoreMachineState, saveMachineState, type MachineState } from './machine-state.ts';
import { ConsoleRingReader, createConsoleRing, InputRing, type ConsoleRingBuffers } from './byte-rings.ts';
import { KvmInterruptLine } from './interrupts.ts';
import { startThread, VCPU_THREAD, VCPU_THREAD_OPTIONS, type ThreadHandle } from './threads.ts';
import type { VcpuThreadInit, VcpuThreadReady, VcpuThreadStopped } from './vcpu-thread-main.ts';
import { VirtioIoThread } from './virtio-io-thread.ts';
import { closeVirtioWiring, lockWiredImages, releaseWiredImages, type VirtioWiring } from './virtio-wiring.ts';

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
/** How long a vCPU thread asked to pause may take to leave KVM_RUN before pause() fails. */
const VCPU_PAUSE_TIMEOUT_MS = 5000;

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
  /** Paused: no vCPU in KVM_RUN, the virtio devices idle, guest time standing still. */
  private pausedNow = false;
  /** Whoever is pausing or resuming now: they take turns. */
  private transition: Promise<void> = Promise.resolve();
  /** kvmclock when the machine paused (or as restored): set back on resume so the guest sees no time pass. */
  private kvmClockAtPause: bigint | null = null;
  private readonly guestClock: MonotonicClock;
  /** The virtio devices' saved states, for the I/O thread to start from (a restore). */
  private virtioRestore: SavedDeviceState[] | null = null;

  private constructor(private readonly built: BuiltMachine) {
    this.controls = createControlBlocks(built.config.cpus);
    this.guestClock = new MonotonicClock(built.clock);
  }

  /**
   * Builds the VM and loads the guest (builder.ts); throws InputError for a bad
   * configuration or guest image. `restoring`: its state will come from a
   * snapshot or migration (restoreState) instead of the guest's images.
   */
  static create(config: MachineConfig, options: BuildOptions = {}): Machine {
    return new Machine(buildMachine(config, options));
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
  async run(options: { haltCheckIntervalMs?: number; paused?: boolean } = {}): Promise<MachineResult> {
    installKickHandler();
    const { built } = this;
    const consoleFd = this.config.consoleFd ?? 1;
    // Started paused (-S), every thread waits for resume() before the guest runs.
    // A restored machine starts paused too, and resumes below unless asked to stay paused.
    const stayPaused = options.paused ?? false;
    if (stayPaused || this.pausedNow) this.enterPaused();
    if (this.pausedNow && this.kvmClockAtPause === null) {
      // Guest time starts standing still until the first resume().
      this.kvmClockAtPause = built.vm.getClock().clock;
      this.guestClock.pause();
    }
    // In turn with pause() and resume(): a resume() that comes while the thread
    // starts (QMP cont right after an incoming migration) must find it to resume.
    const virtioThread = await this.inTurn(async () => {
      this.virtioThread = built.virtio.devices.length
        ? await VirtioIoThread.start({
          ram: built.ram.descriptors, vmFd: built.vm.fd, wiring: built.virtio, consoleFd,
          dirtyLog: built.dirtyLog, restore: this.virtioRestore, paused: this.pausedNow,
        })
        : null;
      return this.virtioThread;
    });
    this.virtioRestore = null;
    const consoleReader = new ConsoleRingReader(this.console, consoleFd);
    // With an irqchip a halted vCPU stays inside KVM: look now and then whether it can ever wake.
    this.haltWatchdog = built.irqchip ? setInterval(() => {
      if (this.pausedNow) return;
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
    // A restored machine that cannot resume (KVM refused its clock) ends as a failure, not an unhandled rejection.
    let resumeFailed: VcpuStop | null = null;
    if (this.pausedNow && !stayPaused) {
      this.resume().catch((e: unknown) => {
        resumeFailed = { cause: 'vmm-error', status: VM_FAILURE_STATUS, message: `the restored machine could not resume: ${(e as Error).message}` };
        this.stop();
      });
    }

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
      const stop = consoleLost ?? resumeFailed ?? this.describeStop(first.thread.id, first.stopped.stop);
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
      // Whatever arrived while it started: a stop or pause, host input (COM1 is served by vCPU 0).
      if (this.stopRequested || Atomics.load(thread.control, Control.COMMAND) !== Command.RUN || (id === 0 && (this.inputBacklog.length || this.input.pending()))) this.kick(thread);
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
    if (this.config.cpus === 1 || !stop.message || stop.cause === 'poweroff' || stop.cause === 'reboot' || stop.cause === 'panic' || stop.cause === 'halt') return stop;
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

  /** Stops the guest, every vCPU even inside KVM_RUN or paused; run() then resolves with cause "stopped". */
  stop(): void {
    this.stopRequested = true;
    // Every control block, started thread or not: a stop that comes before run() stops the VM at its first exit.
    for (let id = 0; id < this.config.cpus; id++) {
      const control = controlBlock(this.controls, id);
      Atomics.store(control, Control.COMMAND, Command.STOP);
      Atomics.notify(control, Control.COMMAND);
    }
    this.kickAll();
  }

  get paused(): boolean {
    return this.pausedNow;
  }

  /**
   * Pauses the machine: every vCPU leaves KVM_RUN and waits (kicked out of
   * it, as QEMU's pause_all_vcpus does), the virtio devices stop serving,
   * and guest time stops: the TypeScript clock (the PIT), and kvmclock, read
   * now and set back on resume(). Resolves once no vCPU runs.
   */
  pause(): Promise<void> {
    return this.inTurn(async () => {
      if (this.pausedNow) return;
      this.enterPaused();
      this.kickAll();
      await Promise.all(this.threads.map((thread) => this.untilParked(thread)));
      await this.virtioThread?.pause();
      this.kvmClockAtPause = this.built.vm.getClock().clock;
      this.guestClock.pause();
    });
  }

  /** Continues a paused machine where it stopped, guest time included. */
  resume(): Promise<void> {
    return this.inTurn(async () => {
      if (!this.pausedNow) return;
      if (this.kvmClockAtPause !== null) this.built.vm.setClock(this.kvmClockAtPause);
      this.kvmClockAtPause = null;
      this.guestClock.resume();
      await this.virtioThread?.resume();
      this.pausedNow = false;
      for (let id = 0; id < this.config.cpus; id++) {
        const control = controlBlock(this.controls, id);
        // A stop that came meanwhile stays a stop.
        Atomics.compareExchange(control, Control.COMMAND, Command.PAUSE, Command.RUN);
        Atomics.notify(control, Control.COMMAND);
      }
    });
  }

  /** Runs `step` once every pause() and resume() asked for before it is done, and holds the ones asked for meanwhile. */
  private inTurn<T>(step: () => Promise<T>): Promise<T> {
    const next = this.transition.then(step);
    this.transition = next.then(() => {}, () => {});
    return next;
  }

  /** Marks the machine paused and asks every vCPU thread (started or not yet) to park. */
  private enterPaused(): void {
    this.pausedNow = true;
    for (let id = 0; id < this.config.cpus; id++) {
      Atomics.compareExchange(controlBlock(this.controls, id), Control.COMMAND, Command.RUN, Command.PAUSE);
    }
  }

  /** Resolves once `thread` is parked outside KVM_RUN (or has ended). */
  private async untilParked(thread: VcpuThread): Promise<void> {
    const deadline = Date.now() + VCPU_PAUSE_TIMEOUT_MS;
    while (!thread.ended && Atomics.load(thread.control, Control.PAUSED) !== 1) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`vCPU ${thread.id} did not leave KVM_RUN within ${VCPU_PAUSE_TIMEOUT_MS} ms of being asked to pause`);
      // Kicked again: a kick that landed before the thread was ready is lost.
      this.kick(thread);
      const wait = Atomics.waitAsync(thread.control, Control.PAUSED, 0, Math.min(left, 50));
      if (wait.async) await wait.value;
    }
  }

  /**
   * The whole machine's state but its RAM: every vCPU, the in-kernel
   * interrupt controllers and kvmclock, each device. Only while paused.
   */
  async saveState(): Promise<MachineState> {
    if (!this.pausedNow) throw new Error('the machine must be paused to save its state');
    const { built } = this;
    return {
      ...saveMachineState(built, this.kvmClockAtPause!),
      virtio: this.virtioThread ? await this.virtioThread.save() : [],
    };
  }

  /**
   * Puts a saved state into this machine, built with `restoring` and not yet
   * run; it then runs from there, paused until resume(). Everything is
   * checked against this machine's devices before anything is changed.
   */
  restoreState(state: MachineState): void {
    if (this.threads.length) throw new Error('restoreState: the machine already runs');
    restoreMachineState(this.built, state);
    this.virtioRestore = state.virtio;
    this.kvmClockAtPause = state.vm.clock.ns;
    this.pausedNow = true;
  }

  /** Guest pages tsvmm's own threads write, logged while a migration runs. */
  get dirtyLog(): DirtyPageLog {
    return new DirtyPageLog(this.built.dirtyLog);
  }

  /**
   * `length` bytes of disk `disk` (its index among the disks) at `offset`,
   * read by the virtio I/O thread that owns it (a block migration); null when
   * they read as zeros.
   */
  readDisk(disk: number, offset: number, length: number): Promise<Uint8Array | null> {
    if (!this.virtioThread) return Promise.reject(new Error('the machine is not running: its disks have no I/O thread'));
    return this.virtioThread.readDisk(disk, offset, length);
  }

  /** What the main thread may ask of the VM and its vCPUs while paused (registers, dirty logs). */
  get kvm(): Pick<BuiltMachine, 'vm' | 'vcpus' | 'kvm' | 'ram'> {
    return this.built;
  }

  /** Each vCPU's host thread id (0 before it started or after it ended). */
  get vcpuThreadIds(): number[] {
    return this.built.vcpus.map((_, id) => this.threads[id]?.threadId ?? 0);
  }

  /** The disk images' locks: let go when the VM migrated away, taken when it arrived. */
  releaseImages(): void {
    releaseWiredImages(this.built.virtio);
  }

  lockImages(): void {
    lockWiredImages(this.built.virtio);
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
