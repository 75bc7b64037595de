// A VM from the main thread's side: it creates the VM (KVM fds, guest RAM,
// vCPUs), loads the guest, starts one worker thread per vCPU, carries the
// console to stdout, and can stop a vCPU that is inside KVM_RUN.
import { readFileSync, statSync } from 'node:fs';
import { flatEntryState, loadFlat } from '../boot/flat.ts';
import { InputError } from '../errors.ts';
import { AcpiLayout } from '../boot/acpi/index.ts';
import { bootLinux, type LinuxBootPlan } from '../boot/linux.ts';
import { detectVirtualization, KvmSystem, type VcpuFd, type VmFd } from '../kvm/index.ts';
import { HostRam } from '../memory/host-ram.ts';
import { Command, Control, findSystemMap, guestCpuid, KernelSymbols, type TransferableSymbols, type VcpuStop } from '../vcpu/index.ts';
import type { MachineConfig } from './config.ts';
import { ConsoleRingReader, createConsoleRing, InputRing, type ConsoleRingBuffers } from './console-ring.ts';
import { AcpiGed } from '../devices/acpi-ged.ts';
import { initializeLegacyPics, KvmInterruptLine, wireLocalApicToPic } from './interrupts.ts';
import { IDENTITY_MAP_ADDRESS, ramLayout, TSS_ADDRESS } from './layout.ts';
import { createAcpiDeviceState, linuxAcpiPlatform } from './platform.ts';
import type { VcpuThreadInit, VcpuThreadMessage } from './vcpu-thread.ts';
import { closeVirtioWiring, VirtioIoThread, wireVirtio, type VirtioWiring } from './virtio-io.ts';
import { VCPU_THREAD, VCPU_THREAD_OPTIONS } from './thread-entries.ts';
import { startWorker } from './worker-url.ts';

export interface MachineResult {
  stop: VcpuStop;
  exits: number;
  /** Wall time from the first KVM_RUN to the end, in the vCPU thread. */
  runNs: number;
  unclaimed: { pio: number; mmio: number };
  traceSummary?: string;
  /** What device modules reported (tests). */
  reports: unknown[];
  /** What each virtio device counted (requests, errors, interrupts). */
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

export class Machine {
  private readonly control = new Int32Array(new SharedArrayBuffer(Control.WORDS * 4));
  private readonly console: ConsoleRingBuffers = createConsoleRing();
  private readonly inputBuffers: ConsoleRingBuffers = createConsoleRing(4096);
  private readonly input = new InputRing(this.inputBuffers);
  private virtioThread: VirtioIoThread | null = null;
  private inputBacklog: Uint8Array[] = [];
  private inputRetry: NodeJS.Timeout | null = null;
  private haltWatchdog: NodeJS.Timeout | null = null;
  /** Set once the vCPU thread has ended: no more input, no more kicks. */
  private ended = false;
  private threadId = 0;
  private stopRequested = false;
  /** The ACPI devices' state, shared with the vCPU thread; used when the guest has ACPI tables. */
  private readonly acpiState = createAcpiDeviceState();
  private powerButton: AcpiGed | null = null;

  private constructor(
    readonly config: MachineConfig,
    private readonly kvm: KvmSystem,
    private readonly vm: VmFd,
    private readonly ram: HostRam,
    private readonly vcpu: VcpuFd,
    private readonly hasIrqchip: boolean,
    /** How a Linux guest was loaded (null for flat guests). */
    readonly bootPlan: LinuxBootPlan | null,
    /** The virtio devices and their wiring. */
    readonly virtio: VirtioWiring,
    private readonly symbols: TransferableSymbols | null,
  ) {}

  /** Creates the VM and loads the guest; throws InputError for a bad guest image. */
  static create(requested: MachineConfig): Machine {
    // Read the guest files first: a bad path should fail before any KVM work.
    const flatImage = requested.flat ? readGuestFile(requested.flat.path, 'flat image') : null;
    const kernel = requested.linux ? readGuestFile(requested.linux.kernel, 'kernel') : null;
    const initrd = requested.linux?.initrd ? readGuestFile(requested.linux.initrd, 'initrd') : undefined;
    const symbols = requested.linux ? kernelSymbols(requested.linux) : null;
    if (!flatImage && !kernel) throw new InputError('no guest given');

    const kvm = KvmSystem.open();
    // ioeventfd and irqfd where this KVM has them; otherwise notifications
    // exit and interrupts are KVM_IRQ_LINE, as with --no-ioeventfd/--no-irqfd.
    const config: MachineConfig = {
      ...requested,
      ioeventfd: requested.ioeventfd !== false && kvm.checkExtension('KVM_CAP_IOEVENTFD') > 0,
      irqfd: requested.irqfd !== false && kvm.checkExtension('KVM_CAP_IRQFD') > 0,
    };
    const vm = kvm.createVm();
    vm.setIdentityMapAddress(IDENTITY_MAP_ADDRESS);
    vm.setTssAddress(TSS_ADDRESS);
    // Linux needs interrupt controllers; flat guests run without, so that a
    // halt with nothing to wake it comes back to tsvmm as KVM_EXIT_HLT.
    // KVM's in-kernel PIT needs the in-kernel irqchip.
    const hasIrqchip = kernel !== null || config.irqchip === true || config.pit === 'kernel';
    if (hasIrqchip) {
      vm.createIrqchip();
      if (config.pit === 'kernel') vm.createPit2();
    }
    const layout = ramLayout(config.memoryBytes);
    const ram = HostRam.allocate(layout);
    ram.descriptors.forEach((range, slot) => vm.setUserMemoryRegion(slot, range.guestAddress, range.size, range.hostAddress));

    const vcpu = vm.createVcpu(0);
    const host = detectVirtualization();
    vcpu.setCpuid(guestCpuid(kvm.supportedCpuid(), { vcpuId: 0, host: host.kind, cpuVendor: host.cpuVendor }));

    const virtio = wireVirtio(vm, config, hasIrqchip);

    const reset = { regs: vcpu.getRegisters(), sregs: vcpu.getSpecialRegisters() };
    let entry;
    let bootPlan: LinuxBootPlan | null = null;
    if (hasIrqchip) vcpu.setLapic(wireLocalApicToPic(vcpu.getLapic()));
    // A kernel starts after "the firmware": a flat guest is the firmware and finds the PICs as at power-on.
    if (kernel) initializeLegacyPics(vm);
    if (kernel) {
      const booted = bootLinux(ram.memory, {
        kernel, kernelSource: config.linux!.kernel,
        ...(initrd ? { initrd, initrdSource: config.linux!.initrd! } : {}),
        // The virtio-mmio devices are in the ACPI tables, not on the command line.
        cmdline: [config.linux!.cmdline, config.console === 'virtio' ? 'console=hvc0' : ''].filter(Boolean).join(' '),
        ram: layout,
        acpi: linuxAcpiPlatform(virtio.devices),
      }, reset);
      entry = booted.state;
      bootPlan = booted.plan;
    } else {
      loadFlat(ram.memory, flatImage!, config.flat!.path);
      entry = flatEntryState(reset);
    }
    vcpu.setSpecialRegisters(entry.sregs);
    vcpu.setRegisters(entry.regs);
    return new Machine(config, kvm, vm, ram, vcpu, hasIrqchip, bootPlan, virtio, symbols?.toTransferable() ?? null);
  }

  get memory() {
    return this.ram.memory;
  }

  /**
   * Runs the guest to its end. `haltCheckIntervalMs` sets how often a vCPU
   * halted inside KVM (with an irqchip) is checked for a halt nothing can end.
   */
  async run(options: { haltCheckIntervalMs?: number } = {}): Promise<MachineResult> {
    installKickHandler();
    const consoleFd = this.config.consoleFd ?? 1;
    const virtioThread = this.virtio.devices.length
      ? await VirtioIoThread.start({ ram: this.ram.descriptors, vmFd: this.vm.fd, wiring: this.virtio, consoleFd })
      : null;
    this.virtioThread = virtioThread;
    const init: VcpuThreadInit = {
      config: this.config,
      vcpuId: 0,
      vcpuFd: this.vcpu.fd,
      runPageAddress: this.vcpu.runMapping.address,
      runPageSize: this.vcpu.runMapping.size,
      ram: [...this.ram.descriptors],
      control: this.control.buffer as SharedArrayBuffer,
      console: this.console,
      input: this.inputBuffers,
      hasIrqchip: this.hasIrqchip,
      vmFd: this.vm.fd,
      virtio: this.virtio,
      symbols: this.symbols,
      acpi: this.bootPlan?.acpi ? this.acpiState : null,
    };
    const consoleReader = new ConsoleRingReader(this.console, consoleFd);
    // With an irqchip a halted vCPU stays inside KVM: look now and then whether it can ever wake.
    this.haltWatchdog = this.hasIrqchip ? setInterval(() => {
      Atomics.store(this.control, Control.CHECK_HALT, 1);
      this.kick();
    }, options.haltCheckIntervalMs ?? HALT_CHECK_INTERVAL_MS) : null;
    this.haltWatchdog?.unref();
    // Console output with nowhere to go (stdout closed: `tsvmm run ... | head`)
    // ends the VM with that as its reason.
    let consoleLost: VcpuStop | null = null;
    const pumping = consoleReader.pump().catch((e: unknown) => {
      const code = (e as NodeJS.ErrnoException).code ?? (e instanceof Error ? e.message : String(e));
      consoleLost = { cause: 'console-closed', status: 1, message: `the console's output (fd ${consoleFd}) can no longer be written (${code}): guest stopped` };
      this.stop();
    });
    const worker = startWorker(VCPU_THREAD, init, VCPU_THREAD_OPTIONS);

    let vcpuEnded: () => void = () => {};
    const vcpuEnd = new Promise<void>((resolve) => (vcpuEnded = resolve));
    try {
      const result = await new Promise<Omit<MachineResult, 'virtio'>>((resolve, reject) => {
        virtioThread?.failed.catch(reject);
        const ended = (): void => {
          // The thread is leaving: from now on nothing may signal it.
          this.ended = true;
          this.threadId = 0;
          this.stopTimers();
          vcpuEnded();
        };
        worker.on('message', (message: VcpuThreadMessage) => {
          if (message.kind === 'ready') {
            this.threadId = message.threadId;
            if (this.stopRequested || this.inputBacklog.length || this.input.pending()) this.kick();
          } else if (message.kind === 'stopped') {
            ended();
            resolve({
              stop: message.stop, exits: message.exits, runNs: message.runNs, unclaimed: message.unclaimed, reports: message.reports,
              ...(message.traceSummary ? { traceSummary: message.traceSummary } : {}),
            });
          } else {
            ended();
            reject(new Error(`vCPU thread failed: ${message.message}`));
          }
        });
        worker.on('error', (error) => {
          ended();
          reject(error);
        });
        worker.on('exit', (code) => {
          ended();
          reject(new Error(`vCPU thread exited (code ${code}) without reporting why`));
        });
      });
      const virtioReports = virtioThread ? await virtioThread.stop() : [];
      return { ...result, ...(consoleLost ? { stop: consoleLost } : {}), virtio: virtioReports };
    } finally {
      // Timers first: a watchdog or input retry firing during the teardown
      // below would signal a thread that is going away.
      this.stopTimers();
      // Ended by the I/O thread's failure, the vCPU may still be inside
      // KVM_RUN, where terminate() cannot reach it: stop it first.
      if (!this.ended) {
        this.stop();
        await withTimeout(vcpuEnd, VCPU_STOP_TIMEOUT_MS);
      }
      consoleReader.stop();
      await pumping;
      await worker.terminate();
      this.ended = true;
      this.threadId = 0;
      if (virtioThread) await virtioThread.terminate();
      this.virtioThread = null;
    }
  }

  private stopTimers(): void {
    if (this.haltWatchdog) clearInterval(this.haltWatchdog);
    this.haltWatchdog = null;
    if (this.inputRetry) clearTimeout(this.inputRetry);
    this.inputRetry = null;
  }

  /**
   * Host input for the guest's COM1 (the terminal's keystrokes). It waits in a
   * ring until the UART has room; the vCPU is kicked so a halted guest sees it.
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
    else this.kick();
    // A full ring drains as the guest reads: try again shortly (while there is a guest to read it).
    if (this.inputBacklog.length && !this.inputRetry && !this.ended) {
      this.inputRetry = setTimeout(() => {
        this.inputRetry = null;
        this.flushInput();
      }, 10);
    }
  }

  /** Stops the guest, even one inside KVM_RUN; run() then resolves with cause "stopped". */
  stop(): void {
    this.stopRequested = true;
    Atomics.store(this.control, Control.COMMAND, Command.STOP);
    this.kick();
  }

  /**
   * Presses the ACPI power button: the guest is asked to shut down, and
   * run() resolves once it powered off. False when the guest has no ACPI
   * (a flat guest), so there is no button to press.
   */
  pressPowerButton(): boolean {
    if (!this.bootPlan?.acpi) return false;
    // The main thread's own GED over the state the vCPU thread's serves.
    this.powerButton ??= new AcpiGed(new KvmInterruptLine(this.vm, AcpiLayout.GED_GSI), this.acpiState.ged);
    this.powerButton.pressPowerButton();
    return true;
  }

  /** Interrupts the vCPU thread's KVM_RUN; does nothing before the thread is ready or once it has ended. */
  private kick(): void {
    if (!this.threadId || this.ended) return;
    // False: the thread has exited since (its stop message is on its way).
    if (!this.vcpu.kick(this.threadId)) this.threadId = 0;
  }

  /** Releases the VM's fds and memory (the process exiting does the same). */
  close(): void {
    closeVirtioWiring(this.virtio);
    this.vcpu.close();
    this.vm.close();
    this.kvm.close();
  }
}

/** Waits for `promise`, but no longer than `ms`. */
async function withTimeout(promise: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

/**
 * The kernel symbols that name where a Linux guest stopped. A --system-map
 * the user gave must be a System.map; one found beside the kernel is only
 * used when it is one.
 */
function kernelSymbols(linux: NonNullable<MachineConfig['linux']>): KernelSymbols | null {
  if (linux.systemMap !== undefined) {
    const symbols = KernelSymbols.parse(new TextDecoder().decode(readGuestFile(linux.systemMap, 'System.map')));
    if (symbols.size === 0) {
      throw new InputError(`System.map ${linux.systemMap}: no kernel text symbols in it (expected lines like "ffffffff81000000 T _stext")`);
    }
    return symbols;
  }
  const beside = findSystemMap(linux.kernel);
  if (!beside) return null;
  try {
    const symbols = KernelSymbols.parse(readFileSync(beside, 'utf8'));
    return symbols.size > 0 ? symbols : null;
  } catch {
    return null;
  }
}

function readGuestFile(path: string, what: string): Uint8Array {
  let size: number;
  try {
    const stat = statSync(path);
    if (!stat.isFile()) throw new InputError(`${what} ${path} is not a file`);
    size = stat.size;
  } catch (e) {
    if (e instanceof InputError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(code === 'ENOENT' ? `${what} ${path}: no such file` : `${what} ${path}: cannot read (${code})`);
  }
  if (size === 0) throw new InputError(`${what} ${path} is empty`);
  return readFileSync(path);
}
