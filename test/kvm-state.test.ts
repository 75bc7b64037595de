// Saving a vCPU's and a VM's KVM state and restoring it into a new VM, through
// real KVM: firmware/regcount.S counts in R12, XMM0, RAM and a port read and
// prints each value; it is stopped part way (after a number of PIO exits), its
// state, RAM and the port's count go into a VM made from scratch (new fds),
// and the output must go on with no value lost or repeated.
//
// This test is its own small VMM (COM1 output, debug-exit and the counting
// port served in this thread) so that it can stop the guest at an exact exit
// and reach every fd.
//
// What PVM (the software KVM of the development machines) supports, measured
// 2026-12: KVM_CAP_XSAVE (KVM_CAP_XSAVE2 = 4096), KVM_CAP_XCRS, vCPU events,
// debug registers, KVM_GET_TSC_KHZ, KVM_GET/SET_CLOCK (KVM_CAP_ADJUST_CLOCK
// = TSC_STABLE | REALTIME | HOST_TSC), KVM_GET/SET_PIT2, KVM_GET_DIRTY_LOG;
// every MSR of KVM_GET_MSR_INDEX_LIST (40) reads back, and takes its value
// back except MSR_KVM_ASYNC_PF_INT on a VM without an in-kernel irqchip (as
// on hardware KVM). It has no KVM_CAP_TSC_CONTROL:
// no TSC scaling, so a state saved on a host with another TSC rate cannot be
// restored here. The tests below run every one of those ioctls.
import { deserialize, serialize } from 'node:v8';
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { firmwarePath } from '../bench/lib/artifacts.ts';
import { flatEntryState, loadFlat } from '../src/boot/flat.ts';
import {
  ClockFlag, currentThreadId, detectVirtualization, ExitReason, exitReasonName, IoDirection, KvmSystem, MemoryRegionFlag,
  MpState, RunOffset, SIGUSR2, ThreadTimer, type VcpuFd, type VmFd,
} from '../src/kvm/index.ts';
import { ramLayout } from '../src/layout.ts';
import { restoreVmState, saveVmState, type VmState } from '../src/machine/vm-state.ts';
import { HostRam } from '../src/memory/host-ram.ts';
import { guestCpuid } from '../src/vcpu/cpuid.ts';
import {
  MSR_IA32_TSC, restoreVcpuState, savableMsrs, saveVcpuState, vcpuStateSupport, type VcpuState,
} from '../src/vcpu/vcpu-state.ts';
import { hasKvm } from './helpers/kvm.ts';

const MEMORY_BYTES = 16 << 20;
const COM1 = 0x3f8;
const DEBUG_EXIT = 0x501;
/** regcount reads its count from here: the host answers with the number of reads served. */
const COUNT_PORT = 0x520;
/** Longest a guest may go without ending its run here (a hung restore, say). */
const RUN_LIMIT_MS = 60_000;
/** regcount's `ram_count`: the quadword after its parameter block, at guest-physical 0x10018. */
const RAM_COUNT_PAGE = 0x10;

const MSR_KERNEL_GS_BASE = 0xc000_0102;
const MSR_LSTAR = 0xc000_0082;
const MSR_KVM_ASYNC_PF_INT = 0x4b56_4d06;

interface TestVm {
  vm: VmFd;
  ram: HostRam;
  vcpus: VcpuFd[];
  close(): void;
}

interface VmShape {
  cpus: number;
  irqchip: boolean;
  kernelPit: boolean;
}

const kvm = hasKvm ? KvmSystem.open() : null;
const open: TestVm[] = [];
afterEach(() => {
  for (const machine of open.splice(0)) machine.close();
});

/** A VM as tsvmm's builder makes one for a flat guest: RAM in slot 0 (dirty-logged), each vCPU with its CPUID. */
function createVm(shape: VmShape): TestVm {
  const host = detectVirtualization();
  const supported = kvm!.supportedCpuid();
  const vm = kvm!.createVm();
  vm.setIdentityMapAddress(0xfffb_c000);
  vm.setTssAddress(0xfffb_d000);
  if (shape.irqchip) vm.createIrqchip();
  if (shape.kernelPit) vm.createPit2();
  const ram = HostRam.allocate(ramLayout(MEMORY_BYTES));
  ram.descriptors.forEach((range, slot) => {
    vm.setUserMemoryRegion(slot, range.guestAddress, range.size, range.hostAddress, MemoryRegionFlag.KVM_MEM_LOG_DIRTY_PAGES);
  });
  const vcpus = Array.from({ length: shape.cpus }, (_, id) => {
    const vcpu = vm.createVcpu(id);
    vcpu.setCpuid(guestCpuid(supported, { vcpuId: id, cpus: shape.cpus, host: host.kind, cpuVendor: host.cpuVendor }));
    return vcpu;
  });
  const machine = {
    vm, ram, vcpus,
    close() {
      for (const vcpu of vcpus) vcpu.close();
      vm.close();
    },
  };
  open.push(machine);
  return machine;
}

/** regcount in RAM with its parameters, and the BSP at its entry. */
function bootRegcount(machine: TestVm, params: { lines: number; initAp?: boolean }): void {
  const image = Buffer.from(readFileSync(firmwarePath('regcount')));
  expect(image.readUInt32LE(8)).toBe(0x43525354);
  image.writeUInt32LE(params.lines, 12);
  image.writeUInt32LE(params.initAp ? 1 : 0, 16);
  bootFlat(machine, image);
}

function bootFlat(machine: TestVm, image: Uint8Array): void {
  loadFlat(machine.ram.memory, image);
  const bsp = machine.vcpus[0]!;
  const entry = flatEntryState({ regs: bsp.getRegisters(), sregs: bsp.getSpecialRegisters() });
  bsp.setSpecialRegisters(entry.sregs);
  bsp.setRegisters(entry.regs);
}

/** The counting port's state: the device state a snapshot carries beside the KVM state. */
interface CountPort {
  served: number;
}

interface RunResult {
  output: string;
  /** debug-exit's status, or null when the run stopped at the exit budget. */
  status: number | null;
}

process.on('SIGUSR2', () => {});

/**
 * Runs a vCPU in this thread, serving COM1, debug-exit and the counting port,
 * until the guest ends or has made `exitBudget` PIO exits. The last exit is
 * left as KVM returned it (an `in`'s value not yet in the guest's register),
 * as a vCPU thread's would be.
 */
function runGuest(vcpu: VcpuFd, countPort: CountPort, exitBudget = Infinity): RunResult {
  const run = vcpu.run;
  const watchdog = new ThreadTimer(SIGUSR2, currentThreadId());
  const deadline = Number(process.hrtime.bigint()) + RUN_LIMIT_MS * 1e6;
  watchdog.armAt(deadline);
  let output = '';
  try {
    for (let exits = 0; exits < exitBudget;) {
      if (vcpu.enter() < 0) {
        if (Number(process.hrtime.bigint()) >= deadline) throw new Error(`the guest was still running after ${RUN_LIMIT_MS} ms; output so far: ${output.slice(-200)}`);
        continue;
      }
      const reason = run.getUint32(RunOffset.exitReason, true);
      if (reason !== ExitReason.KVM_EXIT_IO) {
        throw new Error(`unexpected exit ${exitReasonName(reason)} at RIP 0x${vcpu.getRegisters().rip.toString(16)}; output so far: ${output.slice(-200)}`);
      }
      exits++;
      const port = run.getUint16(RunOffset.ioPort, true);
      const data = run.getUint32(RunOffset.ioDataOffset, true);
      const size = run.getUint8(RunOffset.ioSize);
      if (run.getUint8(RunOffset.ioDirection) === IoDirection.KVM_EXIT_IO_IN) {
        if (port !== COUNT_PORT) throw new Error(`unexpected in from port 0x${port.toString(16)}`);
        // 32-bit reads count; narrower ones (stringio's rep insw) read all ones, as from no device.
        const count = run.getUint32(RunOffset.ioCount, true);
        for (let i = 0; i < count; i++) {
          if (size === 4) run.setUint32(data + i * 4, ++countPort.served, true);
          else run.setUint16(data + i * 2, 0xffff, true);
        }
        continue;
      }
      const value = run.getUint8(data);
      if (port === COM1) output += String.fromCharCode(value);
      else if (port === DEBUG_EXIT) return { output, status: (value << 1) | 1 };
      else if (port !== COUNT_PORT) throw new Error(`out to unexpected port 0x${port.toString(16)}`);
    }
    return { output, status: null };
  } finally {
    watchdog.armAt(0);
    watchdog.close();
  }
}

/** regcount's output for lines first..last. */
function countLines(first: number, last: number): string {
  let text = '';
  for (let n = first; n <= last; n++) text += `${n.toString(16).toUpperCase().padStart(8, '0')}\n`;
  return text;
}

/** A saved state as it comes back from a snapshot file or a migration stream. */
function throughV8<T>(value: T): T {
  return deserialize(serialize(value)) as T;
}

describe.skipIf(!hasKvm)('vCPU and VM state through real KVM (firmware/regcount.S)', () => {
  it('stopped at its 1001st exit (an in whose value has not reached EAX yet), saved with its RAM and restored into a new VM, the guest goes on counting exactly where it left off', () => {
    const lines = 300;
    const source = createVm({ cpus: 1, irqchip: true, kernelPit: true });
    bootRegcount(source, { lines });
    const bsp = source.vcpus[0]!;
    // State a fresh VM would not have, so that each check below can fail.
    const hostMsrs = [
      { index: MSR_IA32_TSC, data: 1n << 40n },
      { index: MSR_KERNEL_GS_BASE, data: 0x0000_1234_5678_9ab0n },
      { index: MSR_LSTAR, data: 0xffff_ffff_8100_0000n },
    ];
    bsp.setMsrs(hostMsrs);
    const support = vcpuStateSupport(kvm!, bsp);
    source.vm.setClock(1000n * 1_000_000_000n);
    const ioapic = source.vm.getIrqchip(2);
    new DataView(ioapic.buffer).setBigUint64(24 + 5 * 8, 0x1_0000_0035n, true); // redirection entry 5: masked, vector 0x35
    source.vm.setIrqchip(2, ioapic);
    const pit = source.vm.getPit2();
    pit.set([0x34, 0x12, 0, 0], 0); // channel 0's count: 0x1234
    pit[13] = 2; // channel 0's mode: rate generator
    source.vm.setPit2(pit);

    const countPort = { served: 0 };
    const before = runGuest(bsp, countPort, 1001);
    expect(before.status).toBeNull();
    // 1001 = 100 lines of 10 exits, then line 101's in.
    expect(before.output).toBe(countLines(1, 100));
    expect(countPort.served).toBe(101);

    const vcpuState = throughV8(saveVcpuState(bsp, support));
    const vmState = throughV8(saveVmState(source.vm, { kernelPit: true }));
    const ramCopy = source.ram.memory.read(0, MEMORY_BYTES);
    source.close();
    open.splice(open.indexOf(source), 1);

    const target = createVm({ cpus: 1, irqchip: true, kernelPit: true });
    target.ram.memory.write(0, ramCopy);
    restoreVmState(target.vm, vmState);
    const cpu = target.vcpus[0]!;
    restoreVcpuState(cpu, vcpuState);

    // What the guest does not look at, checked directly.
    const restoredMsrs = cpu.getMsrs(support.msrs);
    expect(restoredMsrs.unreadable).toEqual([]);
    const value = (index: number) => restoredMsrs.entries.find((entry) => entry.index === index)!.data;
    expect(value(MSR_KERNEL_GS_BASE)).toBe(0x0000_1234_5678_9ab0n);
    expect(value(MSR_LSTAR)).toBe(0xffff_ffff_8100_0000n);
    expect(value(MSR_IA32_TSC)).toBeGreaterThanOrEqual(vcpuState.msrs.find((entry) => entry.index === MSR_IA32_TSC)!.data);
    expect(target.vm.getClock().clock).toBeGreaterThanOrEqual(vmState.clock.ns);
    expect(vmState.clock.ns).toBeGreaterThanOrEqual(1000n * 1_000_000_000n);
    expect(target.vm.getIrqchip(2)).toEqual(vmState.irqchips.ioapic);
    expect(target.vm.getIrqchip(0)).toEqual(vmState.irqchips.picMaster);
    const restoredPit = target.vm.getPit2();
    expect(new DataView(restoredPit.buffer).getUint32(0, true)).toBe(0x1234);
    expect(restoredPit[13]).toBe(2);
    expect(cpu.getRegisters()).toEqual(vcpuState.regs);

    const after = runGuest(cpu, throughV8(countPort));
    expect(after.output.slice(0, 200)).toBe(countLines(101, lines).slice(0, 200));
    expect(after.status).toBe(1);
    expect(before.output + after.output).toBe(countLines(1, lines));
  });

  it('an AP that INIT put in wait-for-SIPI is restored waiting (a new VM\'s AP is uninitialized instead)', () => {
    const source = createVm({ cpus: 2, irqchip: true, kernelPit: false });
    bootRegcount(source, { lines: 40, initAp: true });
    const [bsp, ap] = source.vcpus as [VcpuFd, VcpuFd];
    const support = vcpuStateSupport(kvm!, bsp);
    const countPort = { served: 0 };
    // 105 = 10 lines, line 11's in and 4 of its digits: stopped at an out.
    const before = runGuest(bsp, countPort, 105);
    expect(before.output).toBe(countLines(1, 10) + '0000');
    expect(ap.getMpState()).toBe(MpState.KVM_MP_STATE_INIT_RECEIVED);

    const states = source.vcpus.map((vcpu) => throughV8(saveVcpuState(vcpu, support)));
    const vmState = throughV8(saveVmState(source.vm, { kernelPit: false }));
    const ramCopy = source.ram.memory.read(0, MEMORY_BYTES);

    const target = createVm({ cpus: 2, irqchip: true, kernelPit: false });
    expect(target.vcpus[1]!.getMpState()).toBe(MpState.KVM_MP_STATE_UNINITIALIZED);
    target.ram.memory.write(0, ramCopy);
    restoreVmState(target.vm, vmState);
    target.vcpus.forEach((vcpu, id) => restoreVcpuState(vcpu, states[id]!));
    expect(target.vcpus[1]!.getMpState()).toBe(MpState.KVM_MP_STATE_INIT_RECEIVED);
    expect(target.vcpus[0]!.getMpState()).toBe(MpState.KVM_MP_STATE_RUNNABLE);

    const after = runGuest(target.vcpus[0]!, countPort);
    expect(after.status).toBe(1);
    expect(before.output + after.output).toBe(countLines(1, 40));
  });

  it('stopped inside a rep outsb after 3 of its 14 bytes (firmware/stringio.S) and restored, the string comes out once, whole', () => {
    const source = createVm({ cpus: 1, irqchip: false, kernelPit: false });
    bootFlat(source, readFileSync(firmwarePath('stringio')));
    const support = vcpuStateSupport(kvm!, source.vcpus[0]!);
    // Without a LAPIC KVM refuses MSR_KVM_ASYNC_PF_INT's own value back: the probe leaves it out.
    expect(support.msrs).not.toContain(MSR_KVM_ASYNC_PF_INT);
    const countPort = { served: 0 };
    const before = runGuest(source.vcpus[0]!, countPort, 3);
    expect(before.output).toBe('Str');
    const state = throughV8(saveVcpuState(source.vcpus[0]!, support));
    expect(state.regs.rcx).toBe(11n); // what the rep has left, RIP still on it
    expect(state.lapic).toBeNull();
    const ramCopy = source.ram.memory.read(0, MEMORY_BYTES);

    const target = createVm({ cpus: 1, irqchip: false, kernelPit: false });
    target.ram.memory.write(0, ramCopy);
    restoreVcpuState(target.vcpus[0]!, state);
    const after = runGuest(target.vcpus[0]!, countPort);
    expect(before.output + after.output).toBe('String I/O OK\ninsw=FFFF,FFFF,FFFF,FFFF\n');
    expect(after.status).toBe(1);
  });

  it('restoring into a VM without an in-kernel irqchip fails with a line that names the ioctl, and leaves the vCPU untouched', () => {
    const source = createVm({ cpus: 1, irqchip: true, kernelPit: true });
    bootRegcount(source, { lines: 10 });
    const support = vcpuStateSupport(kvm!, source.vcpus[0]!);
    runGuest(source.vcpus[0]!, { served: 0 }, 20);
    const vcpuState = saveVcpuState(source.vcpus[0]!, support);
    const vmState = saveVmState(source.vm, { kernelPit: true });

    const bare = createVm({ cpus: 1, irqchip: false, kernelPit: false });
    const untouched = bare.vcpus[0]!.getRegisters();
    expect(() => restoreVmState(bare.vm, vmState)).toThrow(/^KVM_SET_IRQCHIP: the saved VM has an in-kernel irqchip \(KVM_CREATE_IRQCHIP\), but this VM has none$/);
    expect(() => restoreVcpuState(bare.vcpus[0]!, vcpuState)).toThrow(/^KVM_SET_LAPIC: the saved vCPU has a local APIC, but this VM has no in-kernel irqchip/);
    expect(bare.vcpus[0]!.getRegisters()).toEqual(untouched);

    const noPit = createVm({ cpus: 1, irqchip: true, kernelPit: false });
    expect(() => restoreVmState(noPit.vm, vmState)).toThrow(/^KVM_SET_PIT2: the saved VM has KVM's PIT/);
  });

  it('a VcpuState and a VmState are plain data: v8.serialize and structuredClone give them back equal', () => {
    const machine = createVm({ cpus: 1, irqchip: true, kernelPit: true });
    bootRegcount(machine, { lines: 10 });
    const support = vcpuStateSupport(kvm!, machine.vcpus[0]!);
    runGuest(machine.vcpus[0]!, { served: 0 }, 30);
    const vcpuState: VcpuState = saveVcpuState(machine.vcpus[0]!, support);
    const vmState: VmState = saveVmState(machine.vm, { kernelPit: true });
    for (const state of [vcpuState, vmState]) {
      expect(throughV8(state)).toEqual(state);
      expect(structuredClone(state)).toEqual(state);
    }
    expect(vcpuState.floatingPoint.kind).toBe(kvm!.checkExtension('KVM_CAP_XSAVE') ? 'xsave' : 'fpu');
    expect(vcpuState.lapic).toHaveLength(1024);
    expect(vmState.pit).toHaveLength(112);
  });

  it('with advanceClockByElapsedTime, kvmclock moves on by the wall-clock time since the save (KVM_CLOCK_REALTIME); without, it goes on from the saved value', () => {
    const source = createVm({ cpus: 1, irqchip: true, kernelPit: false });
    source.vm.setClock(5n * 1_000_000_000n);
    const saved = saveVmState(source.vm, { kernelPit: false });
    expect(saved.clock.flags & ClockFlag.KVM_CLOCK_REALTIME).not.toBe(0);
    const anHourAgo = { ...saved, clock: { ...saved.clock, realtime: saved.clock.realtime - 3600n * 1_000_000_000n } };

    const advanced = createVm({ cpus: 1, irqchip: true, kernelPit: false });
    restoreVmState(advanced.vm, anHourAgo, { advanceClockByElapsedTime: true });
    expect(advanced.vm.getClock().clock).toBeGreaterThanOrEqual(saved.clock.ns + 3600n * 1_000_000_000n);

    const resumed = createVm({ cpus: 1, irqchip: true, kernelPit: false });
    restoreVmState(resumed.vm, anHourAgo);
    expect(resumed.vm.getClock().clock).toBeGreaterThanOrEqual(saved.clock.ns);
    expect(resumed.vm.getClock().clock).toBeLessThan(saved.clock.ns + 3600n * 1_000_000_000n);
  });
});

describe.skipIf(!hasKvm)('the KVM state ioctls on this host', () => {
  it('getMsrs reads every readable MSR of a list and names the ones KVM refuses; savableMsrs keeps what reads and writes back, IA32_TSC first', () => {
    const { vcpus } = createVm({ cpus: 1, irqchip: true, kernelPit: false });
    const read = vcpus[0]!.getMsrs([MSR_LSTAR, 0x4000_1234, MSR_IA32_TSC, 0x4000_1235]);
    expect(read.entries.map((entry) => entry.index)).toEqual([MSR_LSTAR, MSR_IA32_TSC]);
    expect(read.unreadable).toEqual([0x4000_1234, 0x4000_1235]);

    const list = kvm!.msrIndexList();
    expect(list).toContain(MSR_IA32_TSC);
    const savable = savableMsrs(kvm!, vcpus[0]!);
    expect(savable[0]).toBe(MSR_IA32_TSC);
    expect(savable.every((index) => list.includes(index))).toBe(true);
    expect(vcpus[0]!.getMsrs(savable).unreadable).toEqual([]);
  });

  it('KVM_GET_DIRTY_LOG names the pages the guest wrote since the last call, and a call clears them', () => {
    const machine = createVm({ cpus: 1, irqchip: true, kernelPit: false });
    bootRegcount(machine, { lines: 10 });
    const pages = machine.ram.descriptors[0]!.size / 4096;
    machine.vm.getDirtyLog(0, pages); // loading the image was tsvmm's write: not in the log, but clear it anyway
    runGuest(machine.vcpus[0]!, { served: 0 }, 20);
    const dirty = machine.vm.getDirtyLog(0, pages);
    expect(dirty).toHaveLength(pages / 8);
    const isDirty = (page: number) => (dirty[page >> 3]! >> (page & 7)) & 1;
    expect(isDirty(RAM_COUNT_PAGE)).toBe(1);
    expect(isDirty(0x2b)).toBe(1); // the ring-3 stack (puthex64's calls)
    expect(isDirty(0x800)).toBe(0); // 8 MiB: nothing there
    expect(machine.vm.getDirtyLog(0, pages).every((byte) => byte === 0)).toBe(true);
  });
});
