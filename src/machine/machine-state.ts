// A machine's state apart from its RAM, as plain data: what a snapshot file
// and a migration stream carry. Each part comes from where it lives:
//   - each vCPU's registers, FPU, MSRs, LAPIC... from KVM (vcpu-state.ts);
//   - the in-kernel PIC, IOAPIC, PIT and kvmclock from KVM (vm-state.ts);
//   - the TypeScript devices' state buffers (device-state.ts), copied as
//     bytes from here: the vCPU threads only read and write them, and they
//     are parked while this runs;
//   - the virtio devices from their I/O thread (virtio-io-thread.ts).
import { ACPI_GED_STATE } from '../devices/acpi-ged.ts';
import { ACPI_SLEEP_STATE } from '../devices/acpi-sleep.ts';
import { ACPI_PM1_STATE } from '../devices/acpi-pm1.ts';
import { MonotonicClock } from '../devices/clock.ts';
import { CMOS_RTC_STATE } from '../devices/cmos-rtc.ts';
import type { DeviceStateLayout, SavedDeviceState, StateField } from '../devices/device-state.ts';
import { FW_CFG_STATE } from '../devices/fw-cfg.ts';
import { I8042_STATE } from '../devices/i8042.ts';
import { PC_TESTDEV_STATE } from '../devices/pc-testdev.ts';
import { VTD_STATE } from '../devices/iommu/index.ts';
import { EDU_STATE, PCI_HOST_BRIDGE_STATE } from '../devices/pci/index.ts';
import { PIT8254_STATE } from '../devices/pit8254.ts';
import { SERIAL16550_STATE } from '../devices/serial16550.ts';
import { SYSTEM_CONTROL_PORT_STATE } from '../devices/system-control-port.ts';
import { VIRTIO_PCI_STATE } from '../devices/virtio/pci.ts';
import { InputError } from '../errors.ts';
import { restoreVcpuState, saveVcpuState, vcpuStateSupport, type VcpuState, type VcpuStateSupport } from '../vcpu/vcpu-state.ts';
import type { BuiltMachine } from './builder.ts';
import type { DeviceSpec } from './bus-devices.ts';
import { restoreVmState, saveVmState, type VmState } from './vm-state.ts';

export interface MachineState {
  vcpus: VcpuState[];
  vm: VmState;
  /** The guest clock the TypeScript devices (the PIT) count from. */
  clock: SavedDeviceState;
  /** Each interrupt line's level as the devices last drove it (interrupts.ts). */
  irqLevels: Uint8Array;
  /** The legacy and ACPI devices with state, in the builder's order. */
  devices: SavedDeviceState[];
  /** The PCI host bridge, then each virtio-pci function's transport, when there are PCI devices. */
  pci: SavedDeviceState[];
  /** Each virtio device, in wiring order. */
  virtio: SavedDeviceState[];
}

type AnyLayout = DeviceStateLayout<Record<string, StateField>>;

/** Devices with no state of their own (the PM timer counts from the machine's clock; pvpanic acts on a write at once). */
type StatelessKind = 'debug-exit' | 'acpi-pm-timer' | 'pvpanic';

/** The state layout of each legacy and ACPI device kind. */
const LEGACY_LAYOUTS: Record<Exclude<DeviceSpec['kind'], StatelessKind>, AnyLayout> = {
  'serial16550': SERIAL16550_STATE,
  'pit8254': PIT8254_STATE,
  'system-control-port': SYSTEM_CONTROL_PORT_STATE,
  'i8042': I8042_STATE,
  'cmos-rtc': CMOS_RTC_STATE,
  'acpi-sleep': ACPI_SLEEP_STATE,
  'acpi-pm1': ACPI_PM1_STATE,
  'acpi-ged': ACPI_GED_STATE,
  'fw-cfg': FW_CFG_STATE,
  'pc-testdev': PC_TESTDEV_STATE,
  'intel-iommu': VTD_STATE,
  'edu': EDU_STATE,
};

/** Each device state buffer with its layout, in a fixed order. */
function stateBuffers(built: BuiltMachine): { legacy: [AnyLayout, SharedArrayBuffer][]; pci: [AnyLayout, SharedArrayBuffer][] } {
  const legacy = built.devices.flatMap((spec): [AnyLayout, SharedArrayBuffer][] => (spec.kind === 'debug-exit' || spec.kind === 'acpi-pm-timer' || spec.kind === 'pvpanic' ? [] : [[LEGACY_LAYOUTS[spec.kind], spec.state]]));
  const { pciBridgeState, devices } = built.virtio;
  const pci: [AnyLayout, SharedArrayBuffer][] = pciBridgeState
    ? [[PCI_HOST_BRIDGE_STATE, pciBridgeState], ...devices.flatMap((d): [AnyLayout, SharedArrayBuffer][] => (d.pciState ? [[VIRTIO_PCI_STATE, d.pciState]] : []))]
    : [];
  return { legacy, pci };
}

/** What KVM can save of a vCPU here (its MSRs, XSAVE size...): asked once per machine. */
const supports = new WeakMap<BuiltMachine, VcpuStateSupport>();

/**
 * The machine's state but the virtio devices' (the caller asks their thread)
 * and RAM. Every vCPU must be parked (machine.ts, pause); `kvmClockNs` is
 * kvmclock as the pause read it, where the guest's time stopped.
 */
export function saveMachineState(built: BuiltMachine, kvmClockNs: bigint): Omit<MachineState, 'virtio'> {
  let support = supports.get(built);
  if (!support) supports.set(built, (support = vcpuStateSupport(built.kvm, built.vcpus[0]!)));
  const { legacy, pci } = stateBuffers(built);
  const vm = saveVmState(built.vm, { kernelPit: built.config.pit === 'kernel' });
  return {
    vcpus: built.vcpus.map((fd) => saveVcpuState(fd, support, { exitCompleted: true })),
    vm: { ...vm, clock: { ...vm.clock, ns: kvmClockNs } },
    clock: new MonotonicClock(built.clock).saveState(),
    irqLevels: new Uint8Array(built.irqLevels).slice(),
    devices: legacy.map(([layout, buffer]) => layout.save(buffer)),
    pci: pci.map(([layout, buffer]) => layout.save(buffer)),
  };
}

/**
 * Puts a saved state into a machine built with `restoring` whose threads
 * have not started. Every part is checked first (InputError naming the part),
 * so a state that does not fit this machine changes nothing.
 */
export function restoreMachineState(built: BuiltMachine, state: MachineState): void {
  const { legacy, pci } = stateBuffers(built);
  if (state.vcpus.length !== built.vcpus.length) throw new InputError(`the saved machine has ${state.vcpus.length} vCPUs, this one ${built.vcpus.length}`);
  if (state.devices.length !== legacy.length || state.pci.length !== pci.length) {
    throw new InputError(`the saved machine has ${state.devices.length + state.pci.length} devices with state, this one ${legacy.length + pci.length}`);
  }
  if (state.irqLevels.byteLength !== built.irqLevels.byteLength) throw new InputError('interrupt line levels: another size (damaged state)');
  legacy.forEach(([layout], i) => layout.check(state.devices[i]!));
  pci.forEach(([layout], i) => layout.check(state.pci[i]!));
  const clock = new MonotonicClock(built.clock);
  clock.restoreState(state.clock);

  restoreVmState(built.vm, state.vm);
  built.vcpus.forEach((fd, i) => {
    try {
      restoreVcpuState(fd, state.vcpus[i]!);
    } catch (e) {
      throw new InputError(`vCPU ${i}: ${(e as Error).message}`);
    }
  });
  legacy.forEach(([layout, buffer], i) => layout.restore(state.devices[i]!, buffer));
  pci.forEach(([layout, buffer], i) => layout.restore(state.pci[i]!, buffer));
  new Uint8Array(built.irqLevels).set(state.irqLevels);
}
