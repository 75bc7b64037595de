// The vCPU thread's half of the machine's devices: it turns the builder's
// device list into device objects on this thread's buses, wired to sinks,
// interrupt lines and timers (the devices never learn which thread that is),
// and puts the virtio transports on the buses. A register access the guest
// makes exits here; a queue notification that exits here (no ioeventfd for
// it) is passed on to the I/O thread through the queue's eventfd, exactly as
// KVM would have signalled it.
import type { AddressSpace } from '../bus/index.ts';
import { AcpiGed, ACPI_GED_MMIO_SIZE } from '../devices/acpi-ged.ts';
import { AcpiPmTimer, ACPI_PM_TIMER_PORT_COUNT } from '../devices/acpi-pm-timer.ts';
import { AcpiSleep, ACPI_SLEEP_PORT_COUNT } from '../devices/acpi-sleep.ts';
import { AcpiPm1, ACPI_PM1_CONTROL_PORT_COUNT, ACPI_PM1_EVENT_PORT_COUNT, Pm1Status } from '../devices/acpi-pm1.ts';
import { FacsField } from '../boot/acpi/tables.ts';
import type { CharSink } from '../devices/char-sink.ts';
import type { MonotonicClock } from '../devices/clock.ts';
import { CmosRtc, CMOS_PORT_COUNT } from '../devices/cmos-rtc.ts';
import { DebugExit } from '../devices/debug-exit.ts';
import { FwCfg, FW_CFG_DMA_PORT_COUNT, FW_CFG_PORT_COUNT, type FwCfgContents } from '../devices/fw-cfg.ts';
import { I8042 } from '../devices/i8042.ts';
import { Pvpanic, PVPANIC_PORT_COUNT } from '../devices/pvpanic.ts';
import { PcTestdev, PC_TESTDEV_FLUSH_COUNT, PC_TESTDEV_IOMEM_SIZE, PC_TESTDEV_IOPORT_COUNT, PC_TESTDEV_IRQ_COUNT } from '../devices/pc-testdev.ts';
import type { InterruptLine } from '../devices/interrupt-line.ts';
import { IntelVtd, RemappedDma, VTD_REGISTER_SIZE, type IoapicRoute, type MsiMessage } from '../devices/iommu/index.ts';
import { Edu, GuestRamDma, type ForbiddenRange, type MemoryBar, type PciHostBridge } from '../devices/pci/index.ts';
import { Pit8254, PIT_PORT_COUNT } from '../devices/pit8254.ts';
import { Serial16550, UART_PORT_COUNT } from '../devices/serial16550.ts';
import { SystemControlPort } from '../devices/system-control-port.ts';
import { VirtioMmio, VIRTIO_MMIO_SIZE } from '../devices/virtio/mmio.ts';
import { VirtioPci } from '../devices/virtio/pci.ts';
import { VirtioSharedState } from '../devices/virtio/shared-state.ts';
import { VirtioTransport } from '../devices/virtio/transport.ts';
import { KvmError, signalEventFd, type VmFd } from '../kvm/index.ts';
import type { GuestMemory } from '../memory/index.ts';
import { GUEST_PANIC_STATUS, type VcpuStop } from '../vcpu/index.ts';
import type { InputRing } from './byte-rings.ts';
import type { DeviceTimers } from './device-timers.ts';
import type { PlannedVirtioDevice } from './virtio-plan.ts';

export interface PlatformContext {
  readonly pio: AddressSpace;
  readonly mmio: AddressSpace;
  readonly memory: GuestMemory;
  /** Ends the VM after the current exit. */
  requestStop(stop: VcpuStop): void;
  /**
   * The guest put the machine to sleep (ACPI S3): its vCPU stops after the
   * current exit until Platform.sleep wakes it. False when this machine
   * cannot sleep (more than one vCPU), or has no such method: the sleep then
   * ends at once.
   */
  requestSleep?(): boolean;
  /** The interrupt controller input `irq` (ISA IRQ / GSI number). */
  irqLine(irq: number): InterruptLine;
  /** Makes the host drop its mapping of one guest page, so the guest's next access faults in the host (pc-testdev). */
  flushPage(guestAddress: number): void;
  /** Delivers an MSI to the local APICs; absent without the in-kernel irqchip. */
  readonly signalMsi?: (message: MsiMessage) => void;
  /**
   * IOAPIC input `irq` whose every assertion is first put to `remap` (the
   * VT-d unit's interrupt remapping); absent without the in-kernel irqchip.
   */
  readonly remappedIrqLine?: (irq: number, remap: (entry: bigint) => IoapicRoute) => InterruptLine;
}

export interface PlatformOptions {
  console: CharSink;
  /** Host input for COM1 (stdin), if any. */
  input: InputRing | null;
  clock: MonotonicClock;
  /** Deadline service for timed devices; null when no interrupt controller exists to deliver ticks. */
  timers: DeviceTimers | null;
  /** The PCI host bridge PCI functions join (null: the machine has none). */
  pciBridge?: PciHostBridge | null;
  /** Where a PCI function's BAR may never go. */
  pciForbidden?: readonly ForbiddenRange[];
}

/**
 * One device of the machine as plain data, made by the builder: what it is,
 * where it sits, its interrupt lines and its state buffer, created once per
 * machine. Every thread that serves or signals the device (each vCPU thread,
 * the main thread pressing the power button) builds its own object over the
 * same buffer.
 */
export type DeviceSpec =
  | { kind: 'serial16550'; name: string; port: number; irq: number; state: SharedArrayBuffer }
  | { kind: 'pit8254'; port: number; irq: number; state: SharedArrayBuffer }
  | { kind: 'system-control-port'; port: number; state: SharedArrayBuffer }
  | { kind: 'i8042'; dataPort: number; commandPort: number; keyboardIrq: number; auxIrq: number; state: SharedArrayBuffer }
  | { kind: 'cmos-rtc'; port: number; state: SharedArrayBuffer }
  | { kind: 'acpi-sleep'; port: number; state: SharedArrayBuffer }
  /** `facs`: where the FACS is, whose waking vector the machine resumes at after S3. */
  | { kind: 'acpi-pm1'; eventPort: number; controlPort: number; facs: number; state: SharedArrayBuffer }
  | { kind: 'acpi-ged'; address: number; gsi: number; state: SharedArrayBuffer }
  | { kind: 'acpi-pm-timer'; port: number }
  | { kind: 'debug-exit'; port: number; size: number }
  | { kind: 'pvpanic'; port: number }
  | { kind: 'pc-testdev'; ioport: number; flush: number; ioportByte: number; irqPort: number; iomem: number; state: SharedArrayBuffer }
  | { kind: 'fw-cfg'; port: number; dmaPort: number; contents: FwCfgContents; state: SharedArrayBuffer }
  /** The VT-d unit's register page; it comes before the PCI functions it remaps. */
  | { kind: 'intel-iommu'; address: number; state: SharedArrayBuffer }
  /** QEMU's edu in `slot` of bus 0, INTA# on IOAPIC input `gsi`. */
  | { kind: 'edu'; slot: number; gsi: number; state: SharedArrayBuffer };

export interface Platform {
  /** Moves waiting host input into COM1 as far as its receiver has room. */
  feedInput(): void;
  /** The machine's sleep (ACPI S3) as its devices see it; null when it has no PM1 block. */
  sleep: PlatformSleep | null;
  /** The BARs of the PCI functions put on the bus here (followPciBars keeps them current). */
  pciBars: MemoryBar[];
}

/** What wakes a machine asleep in S3, and where it resumes. */
export interface PlatformSleep {
  /** When an enabled wake source next fires (host ms, as Date.now()); null: nothing enabled can wake it. */
  wakeAtMs(): number | null;
  /** Wakes the machine (PM1 WAK_STS and RTC_STS) and returns the FACS's real-mode waking vector. */
  wake(): number;
}

/** How a guest ends the VM on its own: through the i8042 or ACPI reset, or ACPI S5. */
const GUEST_REBOOTED: VcpuStop = { cause: 'reboot', status: 0, message: 'guest rebooted' };
const GUEST_POWERED_OFF: VcpuStop = { cause: 'poweroff', status: 0, message: 'guest powered off' };
const GUEST_PANICKED: VcpuStop = { cause: 'panic', status: GUEST_PANIC_STATUS, message: 'guest panicked (it said so through pvpanic)' };

/**
 * Puts the machine's devices on this thread's buses: one object per device
 * over the device's shared state, so that every vCPU thread serves the same
 * device. The order is the builder's.
 */
export function attachDevices(specs: readonly DeviceSpec[], context: PlatformContext, options: PlatformOptions): Platform {
  const { pio, mmio } = context;
  let com1: Serial16550 | null = null;
  let pit: Pit8254 | null = null;
  let rtc: CmosRtc | null = null;
  let sleep: PlatformSleep | null = null;
  let iommu: IntelVtd | null = null;
  const pciBars: MemoryBar[] = [];
  for (const spec of specs) {
    switch (spec.kind) {
      case 'serial16550': {
        const uart = new Serial16550(`serial ${spec.name}`, options.console, context.irqLine(spec.irq), spec.state);
        pio.register(spec.port, UART_PORT_COUNT, uart);
        com1 ??= uart;
        break;
      }
      case 'pit8254': {
        const timers = options.timers;
        pit = new Pit8254(options.clock, context.irqLine(spec.irq), { onReprogrammed: timers ? () => timers.reschedule() : undefined, state: spec.state });
        pio.register(spec.port, PIT_PORT_COUNT, pit);
        timers?.add(pit);
        break;
      }
      case 'system-control-port':
        if (!pit) throw new Error('the system control port comes after the PIT it gates');
        pio.register(spec.port, 1, new SystemControlPort(pit, spec.state));
        break;
      case 'i8042': {
        const i8042 = new I8042({
          onReset: () => context.requestStop(GUEST_REBOOTED),
          keyboardIrq: context.irqLine(spec.keyboardIrq),
          auxIrq: context.irqLine(spec.auxIrq),
          state: spec.state,
        });
        // Two single ports: 0x61 between them is the system control port.
        pio.register(spec.dataPort, 1, i8042);
        pio.register(spec.commandPort, 1, i8042.commandPort);
        break;
      }
      case 'cmos-rtc':
        rtc = new CmosRtc({ state: spec.state });
        pio.register(spec.port, CMOS_PORT_COUNT, rtc);
        break;
      case 'acpi-sleep':
        pio.register(spec.port, ACPI_SLEEP_PORT_COUNT, new AcpiSleep(
          (what) => context.requestStop(what === 'power-off' ? GUEST_POWERED_OFF : GUEST_REBOOTED), spec.state));
        break;
      case 'acpi-pm1': {
        const pm1: AcpiPm1 = new AcpiPm1((what) => {
          if (what === 'power-off') context.requestStop(GUEST_POWERED_OFF);
          else if (!context.requestSleep?.()) pm1.wake(0);
        }, spec.state);
        pio.register(spec.eventPort, ACPI_PM1_EVENT_PORT_COUNT, pm1.event);
        pio.register(spec.controlPort, ACPI_PM1_CONTROL_PORT_COUNT, pm1.control);
        const facs = spec.facs;
        sleep = {
          wakeAtMs: () => (pm1.rtcWakeEnabled ? rtc?.nextAlarmAtMs() ?? null : null),
          wake: () => {
            pm1.wake(Pm1Status.RTC_STS);
            return context.memory.readU32(facs + FacsField.FIRMWARE_WAKING_VECTOR);
          },
        };
        break;
      }
      case 'acpi-ged':
        mmio.register(spec.address, ACPI_GED_MMIO_SIZE, new AcpiGed(context.irqLine(spec.gsi), spec.state));
        break;
      case 'acpi-pm-timer':
        pio.register(spec.port, ACPI_PM_TIMER_PORT_COUNT, new AcpiPmTimer(options.clock));
        break;
      case 'debug-exit':
        pio.register(spec.port, spec.size, new DebugExit((status, value) => {
          // Silent, like QEMU: the exit status is the guest's message.
          context.requestStop({ cause: 'debug-exit', status, value });
        }));
        break;
      case 'pvpanic':
        pio.register(spec.port, PVPANIC_PORT_COUNT, new Pvpanic(() => context.requestStop(GUEST_PANICKED)));
        break;
      case 'pc-testdev': {
        const testdev = new PcTestdev({ irqLine: (line) => context.irqLine(line), flushPage: (address) => context.flushPage(address) }, spec.state);
        pio.register(spec.ioport, PC_TESTDEV_IOPORT_COUNT, testdev.ioport);
        pio.register(spec.flush, PC_TESTDEV_FLUSH_COUNT, testdev.flush);
        pio.register(spec.ioportByte, PC_TESTDEV_IOPORT_COUNT, testdev.ioportByte);
        pio.register(spec.irqPort, PC_TESTDEV_IRQ_COUNT, testdev.irq);
        mmio.register(spec.iomem, PC_TESTDEV_IOMEM_SIZE, testdev.iomem);
        break;
      }
      case 'fw-cfg': {
        const fwCfg = new FwCfg(spec.contents, context.memory, spec.state);
        pio.register(spec.port, FW_CFG_PORT_COUNT, fwCfg);
        pio.register(spec.dmaPort, FW_CFG_DMA_PORT_COUNT, fwCfg.dma);
        break;
      }
      case 'intel-iommu': {
        const signalMsi = required(context.signalMsi, 'the VT-d unit');
        iommu = new IntelVtd({ memory: context.memory, signalMsi: (message) => signalMsi(message) }, spec.state);
        mmio.register(spec.address, VTD_REGISTER_SIZE, iommu);
        break;
      }
      case 'edu': {
        const edu = attachEdu(spec, context, options, iommu);
        pciBars.push(edu.bar);
        break;
      }
    }
  }
  if (!com1) throw new Error('a tsvmm PC has a COM1');
  const uart = com1;
  const input = options.input;
  // Host input waits in its ring until the receiver has room; when the guest
  // drains a full receiver, the UART asks for more.
  const feedInput = () => {
    if (input && input.pending() > 0) input.deliver(input.pending(), (bytes) => uart.receive(bytes));
  };
  uart.onReceiveSpace = feedInput;
  return { feedInput, sleep, pciBars };
}

function required<T>(what: T | undefined, device: string): T {
  if (what === undefined) throw new Error(`${device} needs the in-kernel irqchip`);
  return what;
}

/**
 * edu on the host bridge: its DMA, MSIs and INTx go through the VT-d unit
 * when the machine has one (its source-id is its slot on bus 0, function 0).
 */
function attachEdu(spec: Extract<DeviceSpec, { kind: 'edu' }>, context: PlatformContext, options: PlatformOptions, iommu: IntelVtd | null): Edu {
  const bridge = options.pciBridge;
  if (!bridge) throw new Error('edu needs the PCI host bridge');
  const signalMsi = required(context.signalMsi, 'edu');
  const sourceId = spec.slot << 3;
  const edu = new Edu({
    mmio: context.mmio,
    ...(options.pciForbidden ? { forbidden: options.pciForbidden } : {}),
    intx: iommu ? required(context.remappedIrqLine, 'edu')(spec.gsi, (entry) => iommu.remapIoapicEntry(entry)) : context.irqLine(spec.gsi),
    sendMsi: (message) => {
      const delivered = iommu ? iommu.remapMsi(sourceId, message) : message;
      if (delivered) signalMsi(delivered);
    },
    dma: iommu ? new RemappedDma(iommu, sourceId, context.memory) : new GuestRamDma(context.memory),
    state: spec.state,
  });
  bridge.addFunction(edu, spec.slot);
  return edu;
}

/**
 * With several vCPUs, another thread may have moved a BAR (its configuration
 * space is shared; where each thread's bus decodes it is not): an access
 * nothing here claims first brings this thread's BARs up to date.
 */
export function followPciBars(mmio: AddressSpace, bars: readonly MemoryBar[]): void {
  if (bars.length === 0) return;
  mmio.onUnclaimed = () => {
    let moved = false;
    for (const bar of bars) {
      const before = bar.mapped;
      bar.sync();
      moved ||= bar.mapped !== before;
    }
    return moved;
  };
}

/** What a device module (MachineConfig.deviceModules) exports. */
export interface DeviceModule {
  attach(context: PlatformContext): { report?(): unknown } | void | Promise<{ report?(): unknown } | void>;
}

/**
 * Puts each virtio device's transport on the buses: a virtio-mmio window, or
 * a PCI function behind `bridge`. Returns the PCI functions' BARs.
 */
export function attachVirtioTransports(
  buses: { pio: AddressSpace; mmio: AddressSpace; vm: VmFd },
  virtio: { devices: readonly PlannedVirtioDevice[]; controlFd: number },
  bridge: PciHostBridge | null,
  options: { ioeventfd: boolean; forbidden: readonly ForbiddenRange[] },
): MemoryBar[] {
  const functions: VirtioPci[] = [];
  for (const planned of virtio.devices) {
    const state = new VirtioSharedState(planned.state, planned.info.queueMaxSizes.length);
    const transport = new VirtioTransport(planned.info, state, {
      notify: (queue) => signalEventFd(planned.notifyFds[queue]!),
      statusChanged: () => signalEventFd(virtio.controlFd),
    });
    if (planned.transport === 'mmio') {
      buses.mmio.register(planned.address, VIRTIO_MMIO_SIZE, new VirtioMmio(transport));
    } else {
      const fn = new VirtioPci(transport, {
        irq: planned.irq,
        mmio: buses.mmio,
        barAddress: planned.address,
        forbidden: options.forbidden,
        state: planned.pciState!,
        ...(options.ioeventfd ? { onNotifyMoved: notifyEventFds(buses.vm, planned.notifyFds) } : {}),
      });
      bridge!.addFunction(fn);
      functions.push(fn);
    }
  }
  return functions.map((fn) => fn.bar);
}

/**
 * Keeps one ioeventfd per queue on the queue's notify address, wherever the
 * guest maps the BAR: Linux writes the queue index there as 16 bits, and any
 * write to the address is the notification.
 */
function notifyEventFds(vm: VmFd, fds: readonly number[]): (queue: number, address: number | null) => void {
  const current: (number | null)[] = fds.map(() => null);
  return (queue, address) => {
    const fd = fds[queue]!;
    const old = current[queue];
    if (old === address) return;
    // A guest's BAR write must never throw out of the exit: should KVM refuse
    // an ioeventfd, the notify write exits and still reaches the transport.
    // Every vCPU thread keeps the ioeventfds where its own view of the BAR
    // is: the first to see a move does the work, and the others find it done
    // (ENOENT on the old address, EEXIST on the new).
    try {
      if (old !== null && old !== undefined) alreadyDone(() => vm.ioeventfd({ address: old, length: 2, fd, pio: false, deassign: true }), 'ENOENT');
      current[queue] = null;
      if (address !== null) {
        alreadyDone(() => vm.ioeventfd({ address, length: 2, fd, pio: false }), 'EEXIST');
        current[queue] = address;
      }
    } catch {
      // Left without an ioeventfd, the queue's notifications take the exit path.
    }
  };
}

/** Runs an ioctl whose failure with `code` means another thread already did the same. */
function alreadyDone(ioctl: () => void, code: 'ENOENT' | 'EEXIST'): void {
  try {
    ioctl();
  } catch (e) {
    if (!(e instanceof KvmError && e.code === code)) throw e;
  }
}
