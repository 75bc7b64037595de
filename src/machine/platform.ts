// The devices of a tsvmm PC and where they sit on the buses. This runs in the
// thread that handles exits; it wires devices to sinks, interrupt lines and
// timers, and the devices never learn which thread that is.
import type { AddressSpace } from '../bus/index.ts';
import { AcpiLayout, acpiPlatform, type AcpiPlatform } from '../boot/acpi/index.ts';
import { VIRTIO_MMIO_SIZE } from '../devices/virtio/mmio.ts';
import { AcpiGed } from '../devices/acpi-ged.ts';
import { AcpiSleep } from '../devices/acpi-sleep.ts';
import type { CharSink } from '../devices/char-sink.ts';
import type { MonotonicClock } from '../devices/clock.ts';
import { CmosRtc, CMOS_BASE, CMOS_PORT_COUNT } from '../devices/cmos-rtc.ts';
import { DebugExit, DEBUG_EXIT_PORT, DEBUG_EXIT_WIDTH } from '../devices/debug-exit.ts';
import { I8042, I8042_AUX_IRQ, I8042_BASE, I8042_KEYBOARD_IRQ } from '../devices/i8042.ts';
import type { InterruptLine } from '../devices/interrupt-line.ts';
import { Pit8254, PIT_IRQ, PIT_PORT_BASE, PIT_PORT_COUNT } from '../devices/pit8254.ts';
import { COM_PORTS, Serial16550, UART_PORT_COUNT } from '../devices/serial16550.ts';
import { SystemControlPort, SYSTEM_CONTROL_PORT } from '../devices/system-control-port.ts';
import type { GuestMemory } from '../memory/index.ts';
import type { VcpuStop } from '../vcpu/index.ts';
import type { InputRing } from './console-ring.ts';
import type { DeviceTimers } from './device-timers.ts';
import type { PlannedVirtioDevice } from './virtio-plan.ts';

export interface PlatformContext {
  readonly pio: AddressSpace;
  readonly mmio: AddressSpace;
  readonly memory: GuestMemory;
  /** Ends the VM after the current exit. */
  requestStop(stop: VcpuStop): void;
  /** The interrupt controller input `irq` (ISA IRQ / GSI number). */
  irqLine(irq: number): InterruptLine;
}

export interface PlatformOptions {
  console: CharSink;
  /** Host input for COM1 (stdin), if any. */
  input: InputRing | null;
  /** Who emulates the PIT: tsvmm, or KVM (which then also owns port 0x61). */
  pit: 'tsvmm' | 'kernel';
  clock: MonotonicClock;
  /** Deadline service for timed devices; null when no interrupt controller exists to deliver ticks. */
  timers: DeviceTimers | null;
  /** The ACPI devices' shared state, when the guest has ACPI tables (Linux); null for none. */
  acpi: AcpiDeviceState | null;
}

/**
 * The state of the ACPI devices, one SharedArrayBuffer each, created once
 * per machine: every thread that serves or signals a device (each vCPU
 * thread, the main thread pressing the power button) builds its own device
 * object over the same buffer.
 */
export interface AcpiDeviceState {
  sleep: SharedArrayBuffer;
  ged: SharedArrayBuffer;
}

/**
 * What the ACPI tables of a Linux guest describe: one vCPU, COM1, the PCI
 * host bridge with each function's interrupt when a virtio device is on PCI,
 * and each virtio-mmio device
 * (which the guest then finds in the DSDT rather than on its command line).
 */
export function linuxAcpiPlatform(virtio: readonly PlannedVirtioDevice[]): AcpiPlatform {
  // The host bridge is slot 0 and takes the PCI devices in order into slots 1, 2, ...
  const onPci = virtio.filter((d) => d.transport === 'pci');
  return acpiPlatform(1, undefined, {
    ...(onPci.length ? { pci: { interrupts: onPci.map((d, i) => ({ slot: i + 1, gsi: d.irq })) } } : {}),
    virtioMmio: virtio.filter((d) => d.transport === 'mmio').map((d) => ({ address: d.address, size: VIRTIO_MMIO_SIZE, irq: d.irq })),
  });
}

export function createAcpiDeviceState(): AcpiDeviceState {
  return { sleep: AcpiSleep.createState(), ged: AcpiGed.createState() };
}

export interface Platform {
  com1: Serial16550;
  /** Moves waiting host input into COM1 as far as its receiver has room. */
  feedInput(): void;
}

/** How a guest ends the VM on its own: through the i8042 or ACPI reset, or ACPI S5. */
const GUEST_REBOOTED: VcpuStop = { cause: 'reboot', status: 0, message: 'guest rebooted' };
const GUEST_POWERED_OFF: VcpuStop = { cause: 'poweroff', status: 0, message: 'guest powered off' };

export function buildPlatform(context: PlatformContext, options: PlatformOptions): Platform {
  const { pio } = context;
  const com1Port = COM_PORTS[0];
  const com1 = new Serial16550(`serial ${com1Port.name}`, options.console, context.irqLine(com1Port.irq));
  const input = options.input;
  // Host input waits in its ring until the receiver has room; when the guest
  // drains a full receiver, the UART asks for more.
  const feedInput = () => {
    if (input && input.pending() > 0) input.deliver(input.pending(), (bytes) => com1.receive(bytes));
  };
  com1.onReceiveSpace = feedInput;
  pio.register(com1Port.base, UART_PORT_COUNT, com1);

  if (options.pit === 'tsvmm') {
    const timers = options.timers;
    const pit = new Pit8254(options.clock, context.irqLine(PIT_IRQ), { onReprogrammed: timers ? () => timers.reschedule() : undefined });
    pio.register(PIT_PORT_BASE, PIT_PORT_COUNT, pit);
    pio.register(SYSTEM_CONTROL_PORT, 1, new SystemControlPort(pit));
    timers?.add(pit);
  }

  const i8042 = new I8042({
    onReset: () => context.requestStop(GUEST_REBOOTED),
    keyboardIrq: context.irqLine(I8042_KEYBOARD_IRQ),
    auxIrq: context.irqLine(I8042_AUX_IRQ),
  });
  // 0x60 and 0x64 only: 0x61 in between is the system control port.
  pio.register(I8042_BASE, 1, i8042);
  pio.register(I8042_BASE + 4, 1, i8042.commandPort);

  pio.register(CMOS_BASE, CMOS_PORT_COUNT, new CmosRtc());

  if (options.acpi) {
    // Where the FADT points the guest: the sleep control/status and reset
    // registers, and the GED its DSDT describes (src/boot/acpi/platform.ts).
    const sleep = new AcpiSleep((what) => context.requestStop(what === 'power-off' ? GUEST_POWERED_OFF : GUEST_REBOOTED), options.acpi.sleep);
    pio.register(AcpiLayout.SLEEP_PORT_BASE, AcpiLayout.SLEEP_PORT_COUNT, sleep);
    const ged = new AcpiGed(context.irqLine(AcpiLayout.GED_GSI), options.acpi.ged);
    context.mmio.register(AcpiLayout.GED_MMIO_BASE, AcpiLayout.GED_MMIO_SIZE, ged);
  }

  pio.register(DEBUG_EXIT_PORT, DEBUG_EXIT_WIDTH, new DebugExit((status, value) => {
    // Silent, like QEMU: the exit status is the guest's message.
    context.requestStop({ cause: 'debug-exit', status, value });
  }));
  return { com1, feedInput };
}

/** What a device module (MachineConfig.deviceModules) exports. */
export interface DeviceModule {
  attach(context: PlatformContext): { report?(): unknown } | void | Promise<{ report?(): unknown } | void>;
}
