// A VM from the main thread's side: it creates the VM (KVM fds, guest RAM,
// vCPUs), loads the guest, starts one worker thread per vCPU, carries the
// console to stdout, and can stop a vCPU that is inside KVM_RUN.
import { readFileSync, statSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { flatEntryState, loadFlat, BootError } from '../boot/flat.ts';
import { detectVirtualization, KvmSystem, type VcpuFd, type VmFd } from '../kvm/index.ts';
import { HostRam } from '../memory/host-ram.ts';
import { Command, Control, guestCpuid, type VcpuStop } from '../vcpu/index.ts';
import type { MachineConfig } from './config.ts';
import { ConsoleRingReader, createConsoleRing, type ConsoleRingBuffers } from './console-ring.ts';
import { IDENTITY_MAP_ADDRESS, ramLayout, TSS_ADDRESS } from './layout.ts';
import type { VcpuThreadInit, VcpuThreadMessage } from './vcpu-thread.ts';

export interface MachineResult {
  stop: VcpuStop;
  exits: number;
  /** Wall time from the first KVM_RUN to the end, in the vCPU thread. */
  runNs: number;
  unclaimed: { pio: number; mmio: number };
  traceSummary?: string;
  /** What device modules reported (tests). */
  reports: unknown[];
}

const VCPU_THREAD = new URL('./vcpu-thread.mjs', import.meta.url);

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
  private worker: Worker | null = null;
  private threadId = 0;
  private stopRequested = false;

  private constructor(
    readonly config: MachineConfig,
    private readonly kvm: KvmSystem,
    private readonly vm: VmFd,
    private readonly ram: HostRam,
    private readonly vcpu: VcpuFd,
  ) {}

  /** Creates the VM and loads the guest; throws BootError for a bad guest image. */
  static create(config: MachineConfig): Machine {
    const image = config.flat ? readGuestFile(config.flat.path) : null;
    if (!image) throw new BootError('no guest given: use --flat FILE');

    const kvm = KvmSystem.open();
    const vm = kvm.createVm();
    vm.setIdentityMapAddress(IDENTITY_MAP_ADDRESS);
    vm.setTssAddress(TSS_ADDRESS);
    const ram = HostRam.allocate(ramLayout(config.memoryBytes));
    ram.descriptors.forEach((range, slot) => vm.setUserMemoryRegion(slot, range.guestAddress, range.size, range.hostAddress));

    const vcpu = vm.createVcpu(0);
    const host = detectVirtualization();
    vcpu.setCpuid(guestCpuid(kvm.supportedCpuid(), { vcpuId: 0, host: host.kind, cpuVendor: host.cpuVendor }));

    loadFlat(ram.memory, image, config.flat!.path);
    const entry = flatEntryState({ regs: vcpu.getRegisters(), sregs: vcpu.getSpecialRegisters() });
    vcpu.setSpecialRegisters(entry.sregs);
    vcpu.setRegisters(entry.regs);
    return new Machine(config, kvm, vm, ram, vcpu);
  }

  get memory() {
    return this.ram.memory;
  }

  /** Runs the guest to its end. */
  async run(): Promise<MachineResult> {
    installKickHandler();
    const init: VcpuThreadInit = {
      config: this.config,
      vcpuId: 0,
      vcpuFd: this.vcpu.fd,
      runPageAddress: this.vcpu.runMapping.address,
      runPageSize: this.vcpu.runMapping.size,
      ram: [...this.ram.descriptors],
      control: this.control.buffer as SharedArrayBuffer,
      console: this.console,
      hasIrqchip: false,
    };
    const consoleReader = new ConsoleRingReader(this.console, this.config.consoleFd ?? 1);
    const pumping = consoleReader.pump();
    const worker = new Worker(VCPU_THREAD, { workerData: init, stdout: false, stderr: false });
    this.worker = worker;

    try {
      return await new Promise<MachineResult>((resolve, reject) => {
        worker.on('message', (message: VcpuThreadMessage) => {
          if (message.kind === 'ready') {
            this.threadId = message.threadId;
            if (this.stopRequested) this.kick();
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
    } finally {
      consoleReader.stop();
      await pumping;
      await worker.terminate();
      this.worker = null;
    }
  }

  /** Stops the guest, even one inside KVM_RUN; run() then resolves with cause "stopped". */
  stop(): void {
    this.stopRequested = true;
    Atomics.store(this.control, Control.COMMAND, Command.STOP);
    if (this.worker && this.threadId) this.kick();
  }

  private kick(): void {
    this.vcpu.kick(this.threadId);
  }

  /** Releases the VM's fds and memory (the process exiting does the same). */
  close(): void {
    this.vcpu.close();
    this.vm.close();
    this.kvm.close();
  }
}

function readGuestFile(path: string): Uint8Array {
  let size: number;
  try {
    const stat = statSync(path);
    if (!stat.isFile()) throw new BootError(`${path} is not a file`);
    size = stat.size;
  } catch (e) {
    if (e instanceof BootError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new BootError(code === 'ENOENT' ? `${path}: no such file` : `${path}: cannot read (${code})`);
  }
  if (size === 0) throw new BootError(`${path} is empty`);
  return readFileSync(path);
}
