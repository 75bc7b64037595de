// How a Linux guest finds tsvmm's ACPI tables and reaches the devices behind
// them: the loader writes the tables below 1 MiB and their RSDP's address
// into boot_params (64-bit entry) or the PVH start_info, and the platform
// puts the sleep/reset registers and the GED where the tables say.
import { describe, expect, it } from 'vitest';
import { AddressSpace } from '../src/bus/index.ts';
import { AcpiLayout, acpiPlatform } from '../src/boot/acpi/index.ts';
import { bootLinux } from '../src/boot/linux.ts';
import { E820 } from '../src/boot/memory-map.ts';
import { BootLayout, ramLayout } from '../src/layout.ts';
import { AcpiGed, GedEvent } from '../src/devices/acpi-ged.ts';
import { SleepBits, SleepType } from '../src/devices/acpi-sleep.ts';
import { MonotonicClock } from '../src/devices/clock.ts';
import { RecordingLine } from '../src/devices/interrupt-line.ts';
import { KvmSystem, Layouts } from '../src/kvm/index.ts';
import { initializeLegacyPics } from '../src/machine/interrupts.ts';
import { attachDevices, type DeviceSpec } from '../src/machine/bus-devices.ts';
import { machineDevices } from '../src/machine/builder.ts';
import { GuestMemory } from '../src/memory/index.ts';
import type { VcpuStop } from '../src/vcpu/index.ts';
import { POWER_ON_STATE } from './helpers/fake-kernels.ts';
import { hasKvm } from './helpers/kvm.ts';

/** boot_params.acpi_rsdp_addr and hvm_start_info.rsdp_paddr. */
const BOOT_PARAMS_RSDP = 0x070;
const START_INFO_RSDP = 0x20;


/** An ELF64 vmlinux: one PT_LOAD at 16 MiB and, with `pvhEntry`, the Xen PVH entry note. */
function vmlinux(pvhEntry?: number): Buffer {
  const note = Buffer.alloc(pvhEntry === undefined ? 0 : 20);
  if (pvhEntry !== undefined) {
    note.writeUInt32LE(4, 0); note.writeUInt32LE(4, 4); note.writeUInt32LE(18, 8); // XEN_ELFNOTE_PHYS32_ENTRY
    note.write('Xen\0', 12, 'latin1'); note.writeUInt32LE(pvhEntry, 16);
  }
  const phnum = note.length ? 2 : 1;
  const dataAt = 64 + phnum * 56;
  const image = Buffer.alloc(dataAt + note.length + 0x1000);
  image.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
  image.writeUInt16LE(2, 16); image.writeUInt16LE(62, 18);
  image.writeBigUInt64LE(0xffffffff81000000n, 24);
  image.writeBigUInt64LE(64n, 32); image.writeUInt16LE(56, 54); image.writeUInt16LE(phnum, 56);
  const header = (i: number, type: number, offset: number, paddr: number, size: number) => {
    const at = 64 + i * 56;
    image.writeUInt32LE(type, at); image.writeBigUInt64LE(BigInt(offset), at + 8);
    image.writeBigUInt64LE(0xffffffff81000000n, at + 16); image.writeBigUInt64LE(BigInt(paddr), at + 24);
    image.writeBigUInt64LE(BigInt(size), at + 32); image.writeBigUInt64LE(BigInt(size), at + 40);
  };
  header(0, 1, dataAt + note.length, 0x100_0000, 0x1000); // PT_LOAD
  if (note.length) { header(1, 4, dataAt, 0, note.length); note.copy(image, dataAt); } // PT_NOTE
  return image;
}

function boot(kernel: Buffer, acpi: boolean) {
  const ram = ramLayout(64 * 2 ** 20);
  const memory = GuestMemory.ofArrayBuffers([ram[0]!]);
  const { plan } = bootLinux(memory, { kernel, kernelSource: 'vmlinux', cmdline: '', ram, ...(acpi ? { acpi: acpiPlatform(1) } : {}) }, POWER_ON_STATE);
  return { memory, plan };
}

const signature = (memory: GuestMemory, address: number) => Buffer.from(memory.read(address, 8)).toString('latin1');

describe('the loader hands Linux the ACPI tables', () => {
  it('64-bit entry: the tables at TABLES_ADDRESS, boot_params.acpi_rsdp_addr pointing at the RSDP', () => {
    const { memory, plan } = boot(vmlinux(), true);
    expect(plan.entryKind).toBe('64-bit');
    expect(memory.readU64(BootLayout.ZERO_PAGE + BOOT_PARAMS_RSDP)).toBe(BigInt(AcpiLayout.TABLES_ADDRESS));
    expect(signature(memory, AcpiLayout.TABLES_ADDRESS)).toBe('RSD PTR ');
    expect(plan.acpi?.map((t) => t.signature)).toEqual(['RSD PTR ', 'FACS', 'XSDT', 'FACP', 'APIC', 'DSDT']);
    // Every table is where the plan says it is.
    for (const table of plan.acpi!) expect(signature(memory, table.address).startsWith(table.signature)).toBe(true);
  });

  it('PVH entry: hvm_start_info.rsdp_paddr pointing at the RSDP', () => {
    const { memory, plan } = boot(vmlinux(0x100_0010), true);
    expect(plan.entryKind).toBe('PVH');
    expect(memory.readU64(BootLayout.PVH_START_INFO + START_INFO_RSDP)).toBe(BigInt(AcpiLayout.TABLES_ADDRESS));
    expect(signature(memory, AcpiLayout.TABLES_ADDRESS)).toBe('RSD PTR ');
  });

  it('the tables sit in memory the e820 map reserves, so the kernel never takes them for RAM', () => {
    const { plan } = boot(vmlinux(0x100_0010), true);
    const last = plan.acpi!.at(-1)!;
    const end = last.address + last.length;
    const holder = plan.e820.find((e) => e.address <= AcpiLayout.TABLES_ADDRESS && end <= e.address + e.size);
    expect(holder?.type).toBe(E820.RESERVED);
  });

  it('without an ACPI platform (the request leaves it out) no RSDP is given and nothing is written there', () => {
    for (const kernel of [vmlinux(), vmlinux(0x100_0010)]) {
      const { memory, plan } = boot(kernel, false);
      expect(plan.acpi).toBeUndefined();
      expect(memory.readU64(BootLayout.ZERO_PAGE + BOOT_PARAMS_RSDP)).toBe(0n);
      expect(memory.readU64(BootLayout.PVH_START_INFO + START_INFO_RSDP)).toBe(0n);
      expect(signature(memory, AcpiLayout.TABLES_ADDRESS)).not.toBe('RSD PTR ');
    }
  });
});

/** The builder's devices as a vCPU thread puts them on its buses, with stop requests and interrupt lines recorded. */
function platform(devices: DeviceSpec[]) {
  const pio = AddressSpace.ports();
  const mmio = AddressSpace.memory();
  const stops: VcpuStop[] = [];
  const lines = new Map<number, RecordingLine>();
  const irqLine = (irq: number) => lines.get(irq) ?? lines.set(irq, new RecordingLine()).get(irq)!;
  attachDevices(
    devices,
    { pio, mmio, memory: GuestMemory.ofArrayBuffers([{ guestAddress: 0, size: 0x1000 }]), requestStop: (stop) => stops.push(stop), irqLine, flushPage() {} },
    { console: { writeByte() {} }, input: null, clock: new MonotonicClock(), timers: null },
  );
  return { pio, mmio, stops, irqLine };
}

describe('the platform puts the ACPI devices where the tables point', () => {
  it('SLP_TYP(S5) | SLP_EN on the sleep control port ends the VM: "guest powered off", status 0', () => {
    const { pio, stops } = platform(machineDevices({ pit: 'kernel' }, true));
    pio.write(AcpiLayout.SLEEP_CONTROL_PORT, 1, (SleepType.S5 << SleepBits.SLP_TYP_SHIFT) | SleepBits.SLP_EN);
    expect(stops).toEqual([{ cause: 'poweroff', status: 0, message: 'guest powered off' }]);
  });

  it('RESET_VALUE on the reset port ends the VM: "guest rebooted", status 0', () => {
    const { pio, stops } = platform(machineDevices({ pit: 'kernel' }, true));
    pio.write(AcpiLayout.RESET_PORT, 1, AcpiLayout.RESET_VALUE);
    expect(stops).toEqual([{ cause: 'reboot', status: 0, message: 'guest rebooted' }]);
  });

  it('a power button pressed from another thread\'s AcpiGed over the same state: the guest reads the event at the GED, once', () => {
    const devices = machineDevices({ pit: 'kernel' }, true);
    const { mmio, irqLine } = platform(devices);
    const mainThreadLine = new RecordingLine();
    const ged = devices.find((d) => d.kind === 'acpi-ged')!;
    new AcpiGed(mainThreadLine, ged.state).pressPowerButton();
    expect(mainThreadLine.risingEdges).toBe(1);
    expect(mmio.read(AcpiLayout.GED_MMIO_BASE, 4)).toBe(GedEvent.POWER_BUTTON);
    expect(mmio.read(AcpiLayout.GED_MMIO_BASE, 4)).toBe(0);
    // The vCPU thread's GED drives GSI 23, the interrupt the DSDT gives it.
    expect(irqLine(AcpiLayout.GED_GSI).levels).toEqual([]);
  });

  it('a machine without ACPI (flat guests) has neither device', () => {
    const { pio, mmio, stops } = platform(machineDevices({ pit: 'kernel' }, false));
    pio.write(AcpiLayout.SLEEP_CONTROL_PORT, 1, (SleepType.S5 << SleepBits.SLP_TYP_SHIFT) | SleepBits.SLP_EN);
    pio.write(AcpiLayout.RESET_PORT, 1, AcpiLayout.RESET_VALUE);
    expect(stops).toEqual([]);
    expect(pio.unclaimedWrites).toBe(2);
    mmio.read(AcpiLayout.GED_MMIO_BASE, 4);
    expect(mmio.unclaimedReads).toBe(1);
  });
});

describe.skipIf(!hasKvm)('the 8259 PICs a kernel finds (real KVM)', () => {
  it('initialized and all masked, not KVM\'s power-on state, where an ISA interrupt would arrive as vector 0-15 (a CPU exception)', () => {
    const kvm = KvmSystem.open();
    const vm = kvm.createVm();
    try {
      vm.createIrqchip();
      const pic = Layouts.kvm_pic_state.fields;
      const state = (chip: number) => { const s = vm.getIrqchip(chip); return { base: s[pic.irq_base.offset], imr: s[pic.imr.offset] }; };
      expect([state(0), state(1)]).toEqual([{ base: 0, imr: 0 }, { base: 0, imr: 0 }]);
      initializeLegacyPics(vm);
      expect([state(0), state(1)]).toEqual([{ base: 0x08, imr: 0xff }, { base: 0x70, imr: 0xff }]);
      // What a multiboot kernel finds: the inputs a BIOS left open (IRQ0 and the cascade; 11 on the slave here too).
      initializeLegacyPics(vm, [0, 2, 11]);
      expect([state(0), state(1)]).toEqual([{ base: 0x08, imr: 0xfa }, { base: 0x70, imr: 0xf7 }]);
    } finally {
      vm.close();
      kvm.close();
    }
  });
});
