// The machine builder: it reads a MachineConfig and makes, in order, what a
// tsvmm PC has — the VM, its RAM, the interrupt controllers, the vCPUs, the
// legacy and ACPI devices, the virtio devices, and the guest loaded into
// RAM — placed where src/layout.ts says. What it returns is everything the
// machine's threads need: fds, the RAM, and each device as plain data (where
// it sits, its interrupt, its state buffer), which every vCPU thread turns
// into device objects on its own buses (bus-devices.ts).
import { readFileSync, statSync } from 'node:fs';
import { AcpiLayout, acpiPlatform, type AcpiPlatform } from '../boot/acpi/index.ts';
import { flatEntryState, loadFlat } from '../boot/flat.ts';
import { bootLinux, type LinuxBootPlan } from '../boot/linux.ts';
import { BIOS_PIC_UNMASKED, pitProgrammedByBios } from '../boot/legacy-bios.ts';
import { bootMultiboot, findMultibootHeader, type MultibootHeader } from '../boot/multiboot.ts';
import { AcpiGed } from '../devices/acpi-ged.ts';
import { AcpiPm1 } from '../devices/acpi-pm1.ts';
import { AcpiSleep } from '../devices/acpi-sleep.ts';
import { MonotonicClock } from '../devices/clock.ts';
import { CmosRtc } from '../devices/cmos-rtc.ts';
import { FwCfg, type FwCfgContents } from '../devices/fw-cfg.ts';
import { IntelVtd, VTD_HOST_ADDRESS_WIDTH } from '../devices/iommu/index.ts';
import { Edu } from '../devices/pci/index.ts';
import { I8042 } from '../devices/i8042.ts';
import { PcTestdev } from '../devices/pc-testdev.ts';
import { Pit8254 } from '../devices/pit8254.ts';
import { Serial16550 } from '../devices/serial16550.ts';
import { VIRTIO_MMIO_SIZE } from '../devices/virtio/mmio.ts';
import { SystemControlPort } from '../devices/system-control-port.ts';
import { InputError } from '../errors.ts';
import { detectVirtualization, KvmSystem, type VcpuFd, type VmFd } from '../kvm/index.ts';
import { IrqLayout, MmioLayout, PortLayout, ramLayout } from '../layout.ts';
import { DirtyPageLog } from '../memory/dirty-pages.ts';
import { HostRam } from '../memory/host-ram.ts';
import {
  applyCpuModel, DeviceLock, findSystemMap, guestCpuid, HOST_CPU, KernelSymbols, kvmHasFeature, type CpuModel, type TransferableSymbols,
} from '../vcpu/index.ts';
import type { MachineConfig } from './config.ts';
import { createIrqLevels, initializeLegacyPics, wireLocalApicToPic } from './interrupts.ts';
import type { DeviceSpec } from './bus-devices.ts';
import { machineFwCfg, readFwCfgFiles } from './fw-cfg-items.ts';
import type { PlannedVirtioDevice } from './virtio-plan.ts';
import { wireVirtio, type VirtioWiring } from './virtio-wiring.ts';

/** A built machine: what the main thread keeps, and what its threads are handed. */
export interface BuiltMachine {
  /** The configuration with what KVM decided filled in (ioeventfd, irqfd, cpus). */
  config: MachineConfig & { cpus: number };
  kvm: KvmSystem;
  vm: VmFd;
  ram: HostRam;
  /** The in-kernel PIC, IOAPIC and local APICs exist. */
  irqchip: boolean;
  vcpus: VcpuFd[];
  /** The guest clock's state (devices/clock.ts): every thread's clock reads the same guest time from it. */
  clock: SharedArrayBuffer;
  /** The legacy and ACPI devices, in the order they are put on the buses. */
  devices: DeviceSpec[];
  virtio: VirtioWiring;
  /** State every thread shares: each interrupt line's level, and the device lock's word (SMP). */
  irqLevels: SharedArrayBuffer;
  deviceLock: SharedArrayBuffer | null;
  /** How a Linux guest was loaded (null for a flat guest). */
  bootPlan: LinuxBootPlan | null;
  /** A Linux guest's kernel symbols, to name where it stopped. */
  symbols: TransferableSymbols | null;
  /** Things the user should know that do not stop the machine (one line each). */
  warnings: string[];
  /** Guest pages tsvmm's own threads write, logged during a migration (memory/dirty-pages.ts). */
  dirtyLog: SharedArrayBuffer;
}

export interface BuildOptions {
  /**
   * The machine's RAM, vCPUs and devices will come from a snapshot or an
   * incoming migration: the guest is not loaded, and the disk images are
   * locked only once the state has arrived (the source may still hold them).
   */
  restoring?: boolean;
}

export function buildMachine(requested: MachineConfig, { restoring = false }: BuildOptions = {}): BuiltMachine {
  const guest = readGuest(requested); // the guest's files first: a bad path fails before any KVM work
  const warnings: string[] = [];
  const fwCfgFiles = readFwCfgFiles(requested.fwCfgFiles ?? [], readGuestFile, warnings);
  const kvm = KvmSystem.open();
  const config = { ...requested, ...kvmFeatures(kvm, requested), cpus: vcpuCount(kvm, requested, warnings) };

  const vm = kvm.createVm();
  vm.setIdentityMapAddress(MmioLayout.KVM_IDENTITY_MAP);
  vm.setTssAddress(MmioLayout.KVM_TSS);
  // A kernel (Linux or multiboot) starts after "the firmware", with the PC's interrupt controllers and ACPI tables.
  const kernel = guest.kind !== 'flat';
  // A multiboot kernel may drop to real mode: it finds IRQ0 ticking into the IVT, as after a BIOS.
  const irqchip = addInterruptControllers(vm, config, kernel, guest.kind === 'multiboot' ? BIOS_PIC_UNMASKED : []);
  const ram = addRam(vm, config.memoryBytes);
  const vcpus = addVcpus(kvm, vm, config.cpus, config.cpu ?? HOST_CPU, warnings);
  const clock = MonotonicClock.createState();
  if ((config.edu || config.iommu) && !irqchip) {
    throw new InputError(`--device ${config.edu ? 'edu' : 'intel-iommu'} needs the interrupt controllers: use --irqchip with a flat guest`);
  }
  const virtio = wireVirtio(vm, config, irqchip, { lockImages: !restoring });
  const devices = machineDevices(config, kernel, { clock, fwCfg: machineFwCfg(config, fwCfgFiles), pciSlotsTaken: virtioPciCount(virtio.devices) });
  const bootPlan = restoring ? null : loadGuest(guest, config, ram, vcpus, irqchip, virtio);

  return {
    config, kvm, vm, ram, irqchip, vcpus, clock, devices, virtio,
    irqLevels: createIrqLevels(),
    deviceLock: config.cpus > 1 ? DeviceLock.createState() : null,
    bootPlan,
    symbols: guest.kind === 'linux' ? guest.symbols?.toTransferable() ?? null : null,
    warnings,
    dirtyLog: DirtyPageLog.create(ram.memory.end),
  };
}

/** ioeventfd and irqfd where this KVM has them; otherwise notifications exit and interrupts are KVM_IRQ_LINE. */
function kvmFeatures(kvm: KvmSystem, config: MachineConfig): Pick<MachineConfig, 'ioeventfd' | 'irqfd'> {
  return {
    ioeventfd: config.ioeventfd !== false && kvm.checkExtension('KVM_CAP_IOEVENTFD') > 0,
    irqfd: config.irqfd !== false && kvm.checkExtension('KVM_CAP_IRQFD') > 0,
  };
}

/** 1 to KVM_CAP_MAX_VCPUS; above KVM_CAP_NR_VCPUS (what KVM recommends) works, with a warning. */
function vcpuCount(kvm: KvmSystem, config: MachineConfig, warnings: string[]): number {
  const cpus = config.cpus ?? 1;
  // KVM_CAP_MAX_VCPUS may be 0 on old kernels: then NR_VCPUS is the limit too.
  const recommended = Math.max(1, kvm.checkExtension('KVM_CAP_NR_VCPUS'));
  const max = Math.max(recommended, kvm.checkExtension('KVM_CAP_MAX_VCPUS'));
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > max) {
    throw new InputError(`--cpus ${cpus}: this KVM runs 1 to ${max} vCPUs per VM`);
  }
  if (cpus > recommended) warnings.push(`${cpus} vCPUs: this KVM recommends at most ${recommended} (KVM_CAP_NR_VCPUS); it may run slowly`);
  return cpus;
}

/**
 * The PIC, IOAPIC and local APICs in KVM. A kernel (Linux, multiboot) needs
 * them, and so does a second vCPU (started by an IPI). A flat guest on one vCPU runs without by
 * default, so that a halt with nothing to wake it comes back as KVM_EXIT_HLT.
 * KVM's in-kernel PIT needs the in-kernel irqchip.
 */
function addInterruptControllers(
  vm: VmFd, config: MachineConfig & { cpus: number }, kernel: boolean, unmaskedIrqs: readonly number[],
): boolean {
  const irqchip = kernel || config.irqchip === true || config.pit === 'kernel' || config.cpus > 1;
  if (!irqchip) return false;
  vm.createIrqchip();
  if (config.pit === 'kernel') {
    vm.createPit2();
    // tsvmm's own PIT ticks from power-on as after a BIOS; KVM's must be started as a BIOS would.
    if (unmaskedIrqs.includes(IrqLayout.PIT)) vm.setPit2(pitProgrammedByBios(vm.getPit2()));
  }
  // A kernel starts after "the firmware": a flat guest is the firmware and finds the PICs as at power-on.
  if (kernel) initializeLegacyPics(vm, unmaskedIrqs);
  return true;
}

function addRam(vm: VmFd, memoryBytes: number): HostRam {
  const ram = HostRam.allocate(ramLayout(memoryBytes));
  ram.descriptors.forEach((range, slot) => vm.setUserMemoryRegion(slot, range.guestAddress, range.size, range.hostAddress));
  return ram;
}

/** vCPU 0 is the bootstrap processor; the others wait in KVM for INIT and SIPI from it. */
function addVcpus(kvm: KvmSystem, vm: VmFd, cpus: number, model: CpuModel, warnings: string[]): VcpuFd[] {
  const host = detectVirtualization();
  const supported = kvm.supportedCpuid();
  // KVM emulates the TSC-deadline timer but leaves it out of its supported CPUID.
  const tscDeadline = kvm.checkExtension('KVM_CAP_TSC_DEADLINE_TIMER') > 0;
  const vcpus = Array.from({ length: cpus }, (_, id) => {
    const vcpu = vm.createVcpu(id);
    const entries = guestCpuid(supported, { vcpuId: id, cpus, host: host.kind, cpuVendor: host.cpuVendor, tscDeadline });
    const dropped = applyCpuModel(entries, model, kvmHasFeature(supported, tscDeadline));
    if (id === 0 && dropped.length) warnings.push(`--cpu: this host's KVM does not support ${dropped.join(', ')}; the guest runs without`);
    vcpu.setCpuid(entries);
    return vcpu;
  });
  return vcpus;
}

/** The host bridge is slot 0 and takes the virtio-pci functions in order into slots 1, 2, ...; edu comes after them. */
function virtioPciCount(virtio: readonly PlannedVirtioDevice[]): number {
  return virtio.filter((d) => d.transport === 'pci').length;
}

/**
 * What the ACPI tables of a kernel guest (Linux or multiboot) describe: its vCPUs, COM1, the PCI
 * host bridge with each function's interrupt when a virtio device or edu is on PCI,
 * each virtio-mmio device
 * (which the guest then finds in the DSDT rather than on its command line),
 * and the VT-d unit (a DMAR table).
 */
export function linuxAcpiPlatform(
  virtio: readonly PlannedVirtioDevice[], cpus: number, platform: Pick<MachineConfig, 'pvpanic' | 'edu' | 'iommu'> = {},
): AcpiPlatform {
  const onPci = virtio.filter((d) => d.transport === 'pci');
  const interrupts = [
    ...onPci.map((d, i) => ({ slot: i + 1, gsi: d.irq })),
    ...(platform.edu ? [{ slot: onPci.length + 1, gsi: IrqLayout.EDU }] : []),
  ];
  return acpiPlatform(cpus, undefined, {
    ...(interrupts.length ? { pci: { interrupts } } : {}),
    virtioMmio: virtio.filter((d) => d.transport === 'mmio').map((d) => ({ address: d.address, size: VIRTIO_MMIO_SIZE, irq: d.irq })),
    pvpanic: platform.pvpanic ?? false,
    ...(platform.iommu ? {
      iommu: { address: MmioLayout.INTEL_IOMMU, hostAddressWidth: VTD_HOST_ADDRESS_WIDTH, interruptRemapping: platform.iommu.interruptRemapping },
    } : {}),
  });
}

/**
 * The PC's legacy devices, and ACPI's when the guest boots with ACPI tables
 * (Linux); fw_cfg with `fwCfg`'s contents (the builder always gives them).
 * `clock` is the guest clock the PIT counts from.
 */
export function machineDevices(
  config: Pick<MachineConfig, 'pit' | 'debugExit' | 'pcTestdev' | 'pvpanic' | 'edu' | 'iommu'>, acpi: boolean,
  { clock = MonotonicClock.createState(), fwCfg, pciSlotsTaken = 0 }: { clock?: SharedArrayBuffer; fwCfg?: FwCfgContents; pciSlotsTaken?: number } = {},
): DeviceSpec[] {
  return [
    { kind: 'serial16550', name: 'COM1', port: PortLayout.COM1, irq: IrqLayout.COM1_COM3, state: Serial16550.createState() },
    // KVM's own PIT (--pit kernel) also serves port 0x61.
    ...(config.pit === 'kernel' || config.pit === 'off' ? [] : [
      { kind: 'pit8254', port: PortLayout.PIT, irq: IrqLayout.PIT, state: Pit8254.createState(new MonotonicClock(clock)) },
      { kind: 'system-control-port', port: PortLayout.SYSTEM_CONTROL_B, state: SystemControlPort.createState() },
    ] satisfies DeviceSpec[]),
    { kind: 'i8042', dataPort: PortLayout.I8042_DATA, commandPort: PortLayout.I8042_COMMAND, keyboardIrq: IrqLayout.KEYBOARD, auxIrq: IrqLayout.MOUSE, state: I8042.createState() },
    { kind: 'cmos-rtc', port: PortLayout.CMOS, state: CmosRtc.createState() },
    // Where the FADT points the guest: the sleep control/status and reset registers, and the power button's GED.
    ...(acpi ? [
      { kind: 'acpi-sleep', port: PortLayout.ACPI_SLEEP, state: AcpiSleep.createState() },
      {
        kind: 'acpi-pm1', eventPort: PortLayout.ACPI_PM1A_EVENT, controlPort: PortLayout.ACPI_PM1A_CONTROL,
        facs: AcpiLayout.FACS_ADDRESS, state: AcpiPm1.createState(),
      },
      { kind: 'acpi-ged', address: MmioLayout.ACPI_GED, gsi: IrqLayout.ACPI_GED, state: AcpiGed.createState() },
      { kind: 'acpi-pm-timer', port: PortLayout.ACPI_PM_TIMER },
    ] satisfies DeviceSpec[] : []),
    { kind: 'debug-exit', port: config.debugExit?.port ?? PortLayout.DEBUG_EXIT, size: config.debugExit?.size ?? PortLayout.DEBUG_EXIT_COUNT },
    ...(config.pvpanic ? [{ kind: 'pvpanic', port: PortLayout.PVPANIC }] satisfies DeviceSpec[] : []),
    ...(config.pcTestdev ? [{
      kind: 'pc-testdev', ioport: PortLayout.PC_TESTDEV_IOPORT, flush: PortLayout.PC_TESTDEV_FLUSH,
      ioportByte: PortLayout.PC_TESTDEV_IOPORT_BYTE, irqPort: PortLayout.PC_TESTDEV_IRQ,
      iomem: MmioLayout.PC_TESTDEV_IOMEM, state: PcTestdev.createState(),
    }] satisfies DeviceSpec[] : []),
    ...(fwCfg ? [
      { kind: 'fw-cfg', port: PortLayout.FW_CFG, dmaPort: PortLayout.FW_CFG_DMA, contents: fwCfg, state: FwCfg.createState() },
    ] satisfies DeviceSpec[] : []),
    // The VT-d unit before the PCI function it remaps.
    ...(config.iommu ? [
      { kind: 'intel-iommu', address: MmioLayout.INTEL_IOMMU, state: IntelVtd.createState(config.iommu) },
    ] satisfies DeviceSpec[] : []),
    ...(config.edu ? [{
      kind: 'edu', slot: pciSlotsTaken + 1, gsi: IrqLayout.EDU, state: Edu.createState({ irq: IrqLayout.EDU, barAddress: MmioLayout.EDU_BAR }),
    }] satisfies DeviceSpec[] : []),
  ];
}

type Guest =
  | { kind: 'linux'; kernel: Uint8Array; initrd?: Uint8Array; symbols: KernelSymbols | null }
  | { kind: 'multiboot'; kernel: Uint8Array; header: MultibootHeader; initrd?: Uint8Array }
  | { kind: 'flat'; image: Uint8Array };

function readGuest(config: MachineConfig): Guest {
  if (config.linux) {
    const kernel = readGuestFile(config.linux.kernel, 'kernel');
    const initrd = config.linux.initrd ? readGuestFile(config.linux.initrd, 'initrd') : undefined;
    // The multiboot header first: it is what marks a kernel as not Linux (neither format has one).
    const header = findMultibootHeader(kernel);
    if (header) return { kind: 'multiboot', kernel, header, ...(initrd ? { initrd } : {}) };
    return { kind: 'linux', kernel, ...(initrd ? { initrd } : {}), symbols: kernelSymbols(config.linux) };
  }
  if (config.flat) return { kind: 'flat', image: readGuestFile(config.flat.path, 'flat image') };
  throw new InputError('no guest given');
}

/** Loads the guest into RAM and sets the bootstrap processor's registers to enter it. */
function loadGuest(
  guest: Guest, config: MachineConfig & { cpus: number }, ram: HostRam, vcpus: VcpuFd[], irqchip: boolean, virtio: VirtioWiring,
): LinuxBootPlan | null {
  const bsp = vcpus[0]!;
  const reset = { regs: bsp.getRegisters(), sregs: bsp.getSpecialRegisters() };
  // The BSP's LINT0 takes the PIC's interrupts, as a PC's firmware leaves it.
  if (irqchip) bsp.setLapic(wireLocalApicToPic(bsp.getLapic()));
  let entry;
  let plan: LinuxBootPlan | null = null;
  if (guest.kind === 'linux') {
    const linux = config.linux!;
    const booted = bootLinux(ram.memory, {
      kernel: guest.kernel, kernelSource: linux.kernel,
      ...(guest.initrd ? { initrd: guest.initrd, initrdSource: linux.initrd! } : {}),
      // The virtio-mmio devices are in the ACPI tables, not on the command line.
      cmdline: [linux.cmdline, config.console === 'virtio' ? 'console=hvc0' : ''].filter(Boolean).join(' '),
      ram: ramLayout(config.memoryBytes),
      acpi: linuxAcpiPlatform(virtio.devices, config.cpus, config),
      // An MP table too: a kernel booted with acpi=off finds its CPUs there.
      cpus: config.cpus,
    }, reset);
    entry = booted.state;
    plan = booted.plan;
  } else if (guest.kind === 'multiboot') {
    const linux = config.linux!;
    entry = bootMultiboot(ram.memory, {
      kernel: guest.kernel, kernelSource: linux.kernel, args: linux.args ?? '',
      ...(guest.initrd ? { initrd: guest.initrd, initrdSource: linux.initrd! } : {}),
      ram: ramLayout(config.memoryBytes),
      acpi: linuxAcpiPlatform(virtio.devices, config.cpus, config),
      cpus: config.cpus,
    }, guest.header, reset).state;
  } else {
    loadFlat(ram.memory, guest.image, config.flat!.path);
    entry = flatEntryState(reset);
  }
  bsp.setSpecialRegisters(entry.sregs);
  bsp.setRegisters(entry.regs);
  return plan;
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
