// The devices of a tsvmm machine and where they sit on the buses. This runs
// in the thread that handles exits; it wires devices to sinks and callbacks,
// and devices never learn which thread that is.
import { AddressSpace } from '../bus/index.ts';
import type { CharSink } from '../devices/char-sink.ts';
import type { InterruptLine } from '../devices/interrupt-line.ts';
import { DebugExit, DEBUG_EXIT_PORT, DEBUG_EXIT_WIDTH } from '../devices/debug-exit.ts';
import { COM_PORTS, Serial16550, UART_PORT_COUNT } from '../devices/serial16550.ts';
import type { GuestMemory } from '../memory/index.ts';
import type { VcpuStop } from '../vcpu/index.ts';

export interface PlatformContext {
  readonly pio: AddressSpace;
  readonly mmio: AddressSpace;
  readonly memory: GuestMemory;
  /** Ends the VM after the current exit. */
  requestStop(stop: VcpuStop): void;
  /** The interrupt controller input `irq` (ISA IRQ / GSI number). */
  irqLine(irq: number): InterruptLine;
}

export interface PlatformSinks {
  console: CharSink;
}

export function buildPlatform(context: PlatformContext, sinks: PlatformSinks): void {
  const com1 = COM_PORTS[0];
  context.pio.register(com1.base, UART_PORT_COUNT, new Serial16550(`serial ${com1.name}`, sinks.console));
  context.pio.register(DEBUG_EXIT_PORT, DEBUG_EXIT_WIDTH, new DebugExit((status, value) => {
    // Silent, like QEMU: the exit status is the guest's message.
    context.requestStop({ cause: 'debug-exit', status, value });
  }));
}

/** What a device module (MachineConfig.deviceModules) exports. */
export interface DeviceModule {
  attach(context: PlatformContext): { report?(): unknown } | void | Promise<{ report?(): unknown } | void>;
}
