// A VM from the main thread's side: it creates the VM (KVM fds, guest RAM,
// vCPUs), loads the guest, starts one worker thread per vCPU, carries the
// console to stdout, and can stop a vCPU that is inside KVM_RUN.
import { readFileSync, statSync } from 'node:fs';
import type { Worker } from 'node:worker_threads';
import { AcpiLayout } from '../boot/acpi/index.ts';
import { flatEntryState, loadFlat, BootError } from '../boot/flat.ts';
import { bootLinux, type LinuxBootPlan } from '../boot/linux.ts';
import { detectVirtualization, KvmSystem, type VcpuFd, type VmFd } from '../kvm/index.ts';
import { HostRam } from '../memory/host-ram.ts';
import { Command, Control, guestCpuid, type VcpuStop } from '../vcpu/index.ts';
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
  private worker: Worker | null = null;
  private threadId = 0;
  private stopRequested = false;
  /** The ACPI devices' state, shared with the vCPU thread; used when the guest has ACPI tables. */
  private readonly acpiState = createAcpiDeviceState();

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
  ) {}

  /** Creates the VM and loads the guest; throws BootError for a bad guest image. */
  static create(requested: MachineConfig): Machine {
    // Read the guest files first: a bad path should fail before any KVM work.
    const flatImage = requested.flat ? readGuestFile(requested.flat.path, 'flat image') : null;
    const kernel = requested.linux ? readGuestFile(requested.linux.kernel, 'kernel') : null;
    const initrd = requested.linux?.initrd ? readGuestFile(requested.linux.initrd, 'initrd') : undefined;
    if (!flatImage && !kernel) throw new BootError('no guest given');

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
    return new Machine(config, kvm, vm, ram, vcpu, hasIrqchip, bootPlan, virtio);
  }

  get memory() {
    return this.ram.memory;
  }

  /** Runs the guest to its end. */
  async run(): Promise<MachineResult> {
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
      acpi: this.bootPlan?.acpi ? this.acpiState : null,
    };
    const consoleReader = new ConsoleRingReader(this.console, consoleFd);
    // With an irqchip a halted vCPU stays inside KVM: look now and then whether it can ever wake.
    const watchdog = this.hasIrqchip ? setInterval(() => {
      if (!this.threadId) return;
      Atomics.store(this.control, Control.CHECK_HALT, 1);
      this.kick();
    }, HALT_CHECK_INTERVAL_MS) : null;
    watchdog?.unref();
    const pumping = consoleReader.pump();
    const worker = startWorker(VCPU_THREAD, init, VCPU_THREAD_OPTIONS);
    this.worker = worker;

    let virtioReports: Record<string, unknown>[] = [];
    try {
      const result = await new Promise<Omit<MachineResult, 'virtio'>>((resolve, reject) => {
        virtioThread?.failed.catch(reject);
        worker.on('message', (message: VcpuThreadMessage) => {
          if (message.kind === 'ready') {
            this.threadId = message.threadId;
            if (this.stopRequested || this.inputBacklog.length || this.input.pending()) this.kick();
          } else if (message.kind === 'stopped') {
            resolve({
              stop: message.stop, exits: message.exits, runNs: message.runNs, unclaimed: message.unclaimed, reports: message.reports,
              ...(message.traceSummary ? { traceSummary: message.traceSummary } : {}),
            });
          } else {
            reject(new Error(`vCPU thread failed: ${message.message}`));
          }
        });
        worker.on('error', reject);
        worker.on('exit', (code) => reject(new Error(`vCPU thread exited (code ${code}) without reporting why`)));
      });
      if (virtioThread) virtioReports = await virtioThread.stop();
      return { ...result, virtio: virtioReports };
    } finally {
      if (watchdog) clearInterval(watchdog);
      if (this.inputRetry) clearTimeout(this.inputRetry);
      consoleReader.stop();
      await pumping;
      await worker.terminate();
      this.worker = null;
      if (virtioThread) await virtioThread.terminate();
      this.virtioThread = null;
    }
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
    else if (this.worker && this.threadId) this.kick();
    // A full ring drains as the guest reads: try again shortly.
    if (this.inputBacklog.length && !this.inputRetry) {
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
    if (this.worker && this.threadId) this.kick();
  }

  /**
   * Presses the ACPI power button: the guest is asked to shut down, and
   * run() resolves once it powered off. False when the guest has no ACPI
   * (a flat guest), so there is no button to press.
   */
  pressPowerButton(): boolean {
    if (!this.bootPlan?.acpi) return false;
    new AcpiGed(new KvmInterruptLine(this.vm, AcpiLayout.GED_GSI), this.acpiState.ged).pressPowerButton();
    return true;
  }

  private kick(): void {
    this.vcpu.kick(this.threadId);
  }

  /** Releases the VM's fds and memory (the process exiting does the same). */
  close(): void {
    closeVirtioWiring(this.virtio);
    this.vcpu.close();
    this.vm.close();
    this.kvm.close();
  }
}

function readGuestFile(path: string, what: string): Uint8Array {
  let size: number;
  try {
    const stat = statSync(path);
    if (!stat.isFile()) throw new BootError(`${what} ${path} is not a file`);
    size = stat.size;
  } catch (e) {
    if (e instanceof BootError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new BootError(code === 'ENOENT' ? `${what} ${path}: no such file` : `${what} ${path}: cannot read (${code})`);
  }
  if (size === 0) throw new BootError(`${what} ${path} is empty`);
  return readFileSync(path);
}
