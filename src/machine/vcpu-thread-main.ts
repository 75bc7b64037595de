// The body of a vCPU thread: it sees the VM the main thread built (fds and
// memory are process-wide), puts the machine's devices on buses of its own
// (each device object over the device's shared state), and runs its vCPU's
// loop until the guest or the main thread ends it.
import { writeSync } from 'node:fs';
import { AddressSpace } from '../bus/index.ts';
import { realModeEntry } from '../boot/cpu-entry.ts';
import { MonotonicClock } from '../devices/clock.ts';
import { blockSignalInThisThread, consumePendingSignal, currentThreadId, SIGUSR2, ThreadTimer, VcpuFd, VmFd, withoutSignal } from '../kvm/index.ts';
import { MmioLayout } from '../layout.ts';
import { HostRam, type RamDescriptor } from '../memory/host-ram.ts';
import { Control, controlBlock, DeviceLock, ExitTracer, KernelSymbols, Vcpu, type TransferableSymbols, type VcpuStop } from '../vcpu/index.ts';
import { PciHostBridge } from '../devices/pci/index.ts';
import { attachDevices, attachVirtioTransports, followPciBars, type DeviceModule, type DeviceSpec, type PlatformContext } from './bus-devices.ts';
import { ConsoleRingWriter, InputRing, type ConsoleRingBuffers } from './byte-rings.ts';
import type { MachineConfig } from './config.ts';
import { DeviceTimers } from './device-timers.ts';
import { disconnectedLine, KvmInterruptLine } from './interrupts.ts';
import { deliverMsi, RemappableIntxLine } from './message-interrupts.ts';
import { markTime } from './startup-timing.ts';
import { postToParent, runThreadBody } from './threads.ts';
import type { VirtioWiring } from './virtio-wiring.ts';

export interface VcpuThreadInit {
  config: MachineConfig & { cpus: number };
  vcpuId: number;
  vcpuFd: number;
  runPageAddress: bigint;
  runPageSize: number;
  ram: RamDescriptor[];
  /** Every vCPU's control block (vcpu.ts Control). */
  controls: SharedArrayBuffer;
  console: ConsoleRingBuffers;
  input: ConsoleRingBuffers;
  hasIrqchip: boolean;
  vmFd: number;
  devices: DeviceSpec[];
  virtio: VirtioWiring;
  irqLevels: SharedArrayBuffer;
  /** The guest clock's state, shared by every thread. */
  clock: SharedArrayBuffer;
  /** The device lock's word; null with one vCPU. */
  deviceLock: SharedArrayBuffer | null;
  /** A Linux guest's kernel symbols, read and checked by the main thread (null: none). */
  symbols: TransferableSymbols | null;
}

export interface VcpuThreadReady {
  threadId: number;
}

export interface VcpuThreadStopped {
  stop: VcpuStop;
  exits: number;
  runNs: number;
  unclaimed: { pio: number; mmio: number };
  traceSummary?: string;
  reports: unknown[];
}

const post = postToParent<VcpuThreadReady, VcpuThreadStopped>;

async function main(init: VcpuThreadInit): Promise<void> {
  markTime('worker-main');
  const { config } = init;
  const controls = Array.from({ length: config.cpus }, (_, id) => controlBlock(init.controls, id));
  const ram = HostRam.attach(init.ram);
  const memory = ram.memory;
  const fd = VcpuFd.fromMapping(init.vcpuFd, init.runPageAddress, init.runPageSize);
  const pio = AddressSpace.ports();
  const mmio = AddressSpace.memory();
  const traceFd = config.traceFd ?? 2;
  const tracer = config.traceExits ? new ExitTracer({ line: (text) => writeSync(traceFd, `${text}\n`) }) : null;

  let vcpu: Vcpu | null = null;
  const vm = VmFd.attach(init.vmFd);
  const context: PlatformContext = {
    pio, mmio, memory,
    requestStop: (stop) => vcpu!.requestStop(stop),
    // S3 stops the whole machine; tsvmm sleeps one vCPU only (the others would run on).
    requestSleep: () => config.cpus === 1 && vcpu!.requestSleep(),
    irqLine: (irq) => (init.hasIrqchip ? new KvmInterruptLine(vm, irq, init.irqLevels) : disconnectedLine),
    flushPage: (address) => ram.dropGuestMapping(address),
    ...(init.hasIrqchip ? {
      signalMsi: (message) => void deliverMsi(vm, message),
      remappedIrqLine: (irq, remap) => new RemappableIntxLine(vm, irq, remap, init.irqLevels),
    } satisfies Partial<PlatformContext> : {}),
  };
  // While tracing, console bytes go out at once so they interleave with the
  // trace lines in the order the guest produced them.
  const consoleFd = config.consoleFd ?? 1;
  const consoleSink = tracer ? { writeByte: (byte: number) => writeSync(consoleFd, Uint8Array.of(byte)) } : new ConsoleRingWriter(init.console);
  // The kick signal is blocked in this thread except inside KVM_RUN, so a kick
  // or timer that fires while we handle an exit ends the next KVM_RUN at once.
  const threadMask = blockSignalInThisThread(SIGUSR2);
  fd.setSignalMask(withoutSignal(threadMask, SIGUSR2));
  const threadId = currentThreadId();
  const clock = new MonotonicClock(init.clock);
  const timers = init.hasIrqchip ? new DeviceTimers(clock, new ThreadTimer(SIGUSR2, threadId)) : null;
  // Where a guest may never map a BAR: its RAM, the in-kernel IOAPIC and
  // local APIC, and the pages KVM keeps for its TSS and identity map.
  const forbidden = [
    ...memory.ranges.map((r) => ({ base: r.guestAddress, length: r.size })),
    { base: MmioLayout.IOAPIC, length: MmioLayout.IOAPIC_SIZE },
    { base: MmioLayout.LOCAL_APIC, length: MmioLayout.LOCAL_APIC_SIZE },
    { base: MmioLayout.KVM_IDENTITY_MAP, length: MmioLayout.KVM_TSS + MmioLayout.KVM_TSS_SIZE - MmioLayout.KVM_IDENTITY_MAP },
  ];
  const pciBridge = init.virtio.pciBridgeState ? new PciHostBridge(init.virtio.pciBridgeState) : null;
  pciBridge?.attach(pio);
  const platform = attachDevices(init.devices, context, {
    console: consoleSink,
    input: new InputRing(init.input),
    clock,
    timers,
    pciBridge,
    pciForbidden: forbidden,
  });
  const virtioBars = attachVirtioTransports({ pio, mmio, vm }, init.virtio, pciBridge, { ioeventfd: config.ioeventfd === true, forbidden });
  followPciBars(mmio, [...virtioBars, ...platform.pciBars]);
  const reporters: { report?(): unknown }[] = [];
  for (const path of config.deviceModules ?? []) {
    const module = (await import(path)) as DeviceModule;
    const attached = await module.attach(context);
    if (attached) reporters.push(attached);
  }

  const symbols = init.symbols ? KernelSymbols.fromTransferable(init.symbols) : null;
  const platformSleep = platform.sleep;
  vcpu = new Vcpu({
    id: init.vcpuId, fd, pio, mmio, memory, controls, tracer, hasIrqchip: init.hasIrqchip, symbols,
    deviceLock: init.deviceLock ? new DeviceLock(init.deviceLock) : null,
    onKick: () => {
      consumePendingSignal(SIGUSR2);
      timers?.poll();
      platform.feedInput();
    },
    // Guest time stood still (or was restored) while paused: the timer's host deadline moved.
    onResume: () => {
      timers?.poll();
      platform.feedInput();
    },
    sleep: platformSleep ? {
      wakeAtMs: () => platformSleep.wakeAtMs(),
      // Firmware's S3 resume: the CPU reset, then a jump to the FACS waking vector in real mode.
      wake: (vcpuFd) => {
        const vector = platformSleep.wake();
        const entry = realModeEntry({ regs: vcpuFd.getRegisters(), sregs: vcpuFd.getSpecialRegisters() }, (vector >>> 4) & 0xffff, vector & 0xf);
        vcpuFd.setSpecialRegisters(entry.sregs);
        vcpuFd.setRegisters(entry.regs);
        timers?.poll();
      },
    } : null,
  });
  Atomics.store(controls[init.vcpuId]!, Control.THREAD_ID, threadId);
  post({ kind: 'ready', threadId });

  const started = process.hrtime.bigint();
  markTime('first-kvm-run', started);
  const stop = vcpu.runUntilStop();
  const runNs = Number(process.hrtime.bigint() - started);
  post({
    kind: 'stopped',
    stop,
    exits: vcpu.exits,
    runNs,
    unclaimed: { pio: pio.unclaimedReads + pio.unclaimedWrites, mmio: mmio.unclaimedReads + mmio.unclaimedWrites },
    ...(tracer ? { traceSummary: tracer.summary() } : {}),
    reports: reporters.map((r) => r.report?.()),
  });
}

runThreadBody(main);
