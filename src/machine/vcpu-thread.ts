// The body of a vCPU thread: it sees the VM the main thread created (fds and
// memory are process-wide), builds the devices that serve its exits, and runs
// the loop until the guest or the main thread ends it.
import { parentPort } from 'node:worker_threads';
import { writeSync } from 'node:fs';
import { AddressSpace } from '../bus/index.ts';
import { blockSignalInThisThread, consumePendingSignal, currentThreadId, SIGUSR2, ThreadTimer, VcpuFd, VmFd, withoutSignal } from '../kvm/index.ts';
import { MonotonicClock } from '../devices/clock.ts';
import { DeviceTimers } from './device-timers.ts';
import { disconnectedLine, KvmInterruptLine } from './interrupts.ts';
import { HostRam, type RamDescriptor } from '../memory/host-ram.ts';
import { Control, ExitTracer, KernelSymbols, Vcpu, type TransferableSymbols, type VcpuStop } from '../vcpu/index.ts';
import type { MachineConfig } from './config.ts';
import { ConsoleRingWriter, InputRing, type ConsoleRingBuffers } from './console-ring.ts';
import { buildPlatform, type AcpiDeviceState, type DeviceModule, type PlatformContext } from './platform.ts';
import { attachVirtioTransports } from './virtio-transports.ts';
import { IDENTITY_MAP_ADDRESS, IOAPIC_ADDRESS, LOCAL_APIC_ADDRESS, TSS_ADDRESS } from './layout.ts';
import type { PlannedVirtioDevice } from './virtio-plan.ts';
import { markTime } from './startup-timing.ts';
import { workerInit } from './worker-url.ts';

export interface VcpuThreadInit {
  config: MachineConfig;
  vcpuId: number;
  vcpuFd: number;
  runPageAddress: bigint;
  runPageSize: number;
  ram: RamDescriptor[];
  control: SharedArrayBuffer;
  console: ConsoleRingBuffers;
  input: ConsoleRingBuffers;
  hasIrqchip: boolean;
  vmFd: number;
  virtio: { devices: PlannedVirtioDevice[]; controlFd: number };
  /** A Linux guest's kernel symbols, read and checked by the main thread (null: none). */
  symbols: TransferableSymbols | null;
  /** The ACPI devices' shared state; null when the guest has no ACPI tables. */
  acpi: AcpiDeviceState | null;
}

export type VcpuThreadMessage =
  | { kind: 'ready'; threadId: number }
  | { kind: 'stopped'; stop: VcpuStop; exits: number; runNs: number; unclaimed: { pio: number; mmio: number }; traceSummary?: string; reports: unknown[] }
  | { kind: 'failed'; message: string; stack?: string };

function post(message: VcpuThreadMessage): void {
  parentPort!.postMessage(message);
}

async function main(init: VcpuThreadInit): Promise<void> {
  markTime('worker-main');
  const { config } = init;
  const control = new Int32Array(init.control);
  const memory = HostRam.attach(init.ram).memory;
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
    irqLine: (irq) => (init.hasIrqchip ? new KvmInterruptLine(vm, irq) : disconnectedLine),
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
  const clock = new MonotonicClock();
  const timers = init.hasIrqchip ? new DeviceTimers(clock, new ThreadTimer(SIGUSR2, threadId)) : null;
  const platform = buildPlatform(context, {
    console: consoleSink,
    input: new InputRing(init.input),
    pit: config.pit ?? 'tsvmm',
    clock,
    timers,
    acpi: init.acpi,
  });
  attachVirtioTransports({ pio, mmio, vm }, init.virtio, {
    ioeventfd: config.ioeventfd === true,
    // Where a guest may never map a BAR: its RAM, the in-kernel IOAPIC and
    // local APIC, and the pages KVM keeps for its TSS and identity map.
    forbidden: [
      ...memory.ranges.map((r) => ({ base: r.guestAddress, length: r.size })),
      { base: IOAPIC_ADDRESS, length: 0x1000 },
      { base: LOCAL_APIC_ADDRESS, length: 0x10_0000 },
      { base: IDENTITY_MAP_ADDRESS, length: TSS_ADDRESS + 0x3000 - IDENTITY_MAP_ADDRESS },
    ],
  });
  const reporters: { report?(): unknown }[] = [];
  for (const path of config.deviceModules ?? []) {
    const module = (await import(path)) as DeviceModule;
    const attached = await module.attach(context);
    if (attached) reporters.push(attached);
  }

  const symbols = init.symbols ? KernelSymbols.fromTransferable(init.symbols) : null;
  vcpu = new Vcpu({
    id: init.vcpuId, fd, pio, mmio, memory, control, tracer, hasIrqchip: init.hasIrqchip, symbols,
    onKick: () => {
      consumePendingSignal(SIGUSR2);
      timers?.poll();
      platform.feedInput();
    },
  });
  Atomics.store(control, Control.THREAD_ID, threadId);
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

workerInit<VcpuThreadInit>().then(main).catch((e: unknown) => {
  const error = e instanceof Error ? e : new Error(String(e));
  post({ kind: 'failed', message: error.message, ...(error.stack ? { stack: error.stack } : {}) });
});
