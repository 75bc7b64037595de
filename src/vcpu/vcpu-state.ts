// A vCPU's whole architectural state as plain data (numbers, bigints,
// Uint8Arrays: it survives structured clone and v8.serialize), and the order
// KVM needs to read and write it in. The order follows Firecracker's
// arch/x86_64/vcpu.rs (save_state/restore_state); each step that depends on
// another says why.
//
// Call both with the vCPU out of KVM_RUN (kicked, or its thread stopped) and,
// on a VM with several vCPUs, with all of them out: KVM_GET/SET_VCPU_EVENTS
// race with a vCPU still running.
import {
  KvmError, type CpuidEntry, type KvmSystem, type MsrEntry, type Registers, type SpecialRegisters, type VcpuFd,
} from '../kvm/index.ts';

/** What this KVM can save of a vCPU: asked once, before the first save (plain data, for any thread). */
export interface VcpuStateSupport {
  /** The MSRs to save: KVM_GET_MSR_INDEX_LIST without those this vCPU does not read and write back (savableMsrs). */
  msrs: number[];
  /** KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2)'s buffer size; 0 when KVM has no XSAVE (the legacy FPU state is saved instead). */
  xsaveSize: number;
  /** KVM_CAP_XCRS: XCR0 is saved. */
  xcrs: boolean;
  /** KVM_CAP_GET_TSC_KHZ: the guest TSC's frequency is saved, so a restore can check or scale it. */
  tscKhz: boolean;
  /** The VM has an in-kernel irqchip, so the vCPU has a local APIC to save. */
  lapic: boolean;
}

/** The floating-point and vector registers: KVM's XSAVE area, or kvm_fpu where KVM has no XSAVE. */
export type FloatingPointState = { kind: 'xsave'; bytes: Uint8Array } | { kind: 'fpu'; bytes: Uint8Array };

export interface VcpuState {
  cpuid: CpuidEntry[];
  mpState: number;
  regs: Registers;
  sregs: SpecialRegisters;
  floatingPoint: FloatingPointState;
  /** kvm_xcrs; null where KVM has no KVM_CAP_XCRS. */
  xcrs: Uint8Array | null;
  /** kvm_debugregs. */
  debugRegs: Uint8Array;
  /** kvm_lapic_state; null on a VM without an in-kernel irqchip. */
  lapic: Uint8Array | null;
  msrs: MsrEntry[];
  /** kHz; null where KVM cannot tell. */
  tscKhz: number | null;
  /** kvm_vcpu_events. */
  events: Uint8Array;
}

export const MSR_IA32_TSC = 0x10;

/**
 * The MSRs of KVM_GET_MSR_INDEX_LIST that this vCPU can save and restore:
 * the list names every MSR KVM knows, but one the vCPU's CPUID does not
 * enable (or one PVM does not emulate) may fail to read, and some read but
 * refuse their own value back in this VM (MSR_KVM_ASYNC_PF_INT without an
 * in-kernel LAPIC). So each is read and written back: probe on a vCPU that
 * has its CPUID and has not run yet. IA32_TSC is never refused, and writing
 * it back would lose the ticks in between: it is only read, and goes first,
 * because KVM turns a TSC deadline into a host timer against the guest TSC
 * at the moment it is written.
 */
export function savableMsrs(kvm: KvmSystem, vcpu: VcpuFd): number[] {
  const { entries } = vcpu.getMsrs(kvm.msrIndexList());
  const writable = entries.filter((entry) => entry.index === MSR_IA32_TSC || writesBack(vcpu, entry));
  const indices = writable.map((entry) => entry.index);
  return [...indices.filter((index) => index === MSR_IA32_TSC), ...indices.filter((index) => index !== MSR_IA32_TSC)];
}

function writesBack(vcpu: VcpuFd, entry: MsrEntry): boolean {
  try {
    vcpu.setMsrs([entry]);
    return true;
  } catch (e) {
    // A refusal is KVM setting fewer MSRs than asked; a failed ioctl is another matter.
    if (e instanceof KvmError) throw e;
    return false;
  }
}

export function vcpuStateSupport(kvm: KvmSystem, vcpu: VcpuFd): VcpuStateSupport {
  return {
    msrs: savableMsrs(kvm, vcpu),
    xsaveSize: kvm.checkExtension('KVM_CAP_XSAVE') ? kvm.checkExtension('KVM_CAP_XSAVE2') || 4096 : 0,
    xcrs: kvm.checkExtension('KVM_CAP_XCRS') !== 0,
    tscKhz: kvm.checkExtension('KVM_CAP_GET_TSC_KHZ') !== 0,
    lapic: hasLocalApic(vcpu),
  };
}

/** KVM_GET_LAPIC fails with EINVAL on a VM without an in-kernel irqchip. */
function hasLocalApic(vcpu: VcpuFd): boolean {
  try {
    vcpu.getLapic();
    return true;
  } catch (e) {
    if (e instanceof KvmError && e.code === 'EINVAL') return false;
    throw e;
  }
}

/**
 * Reads a stopped vCPU's state. The exit KVM_RUN last returned is completed
 * first: an IN's data (and, on hardware KVM, an OUT's RIP) land only at the
 * next KVM_RUN, and a state read before that would replay the instruction
 * after a restore. A `rep outs` stopped part way is consistent once its
 * element is completed: RCX and RSI say what is left, RIP still points at it.
 * Best called in the vCPU's own thread: KVM_RUN from another thread makes KVM
 * move the vCPU to it (an RCU grace period). `exitCompleted`: the caller
 * knows no exit is in flight, and nothing is run.
 */
export function saveVcpuState(vcpu: VcpuFd, support: VcpuStateSupport, { exitCompleted = false } = {}): VcpuState {
  // A vCPU the machine parked after KVM_EXIT_INTR (vcpu.ts, Command.PAUSE) has no exit in flight.
  if (!exitCompleted && !vcpu.completePendingExit()) {
    throw new Error('KVM_RUN: completing the vCPU\'s last exit started another (a string I/O instruction went on): serve that exit, then save');
  }
  // First: KVM_GET_MP_STATE makes the LAPIC accept a pending INIT or SIPI
  // (kvm_apic_accept_events), which resets registers the reads below return.
  const mpState = vcpu.getMpState();
  const regs = vcpu.getRegisters();
  const sregs = vcpu.getSpecialRegisters();
  const floatingPoint: FloatingPointState = support.xsaveSize > 0
    ? { kind: 'xsave', bytes: vcpu.getXsave(support.xsaveSize) }
    : { kind: 'fpu', bytes: vcpu.getFpu() };
  const xcrs = support.xcrs ? vcpu.getXcrs() : null;
  const debugRegs = vcpu.getDebugRegs();
  const lapic = support.lapic ? vcpu.getLapic() : null;
  const tscKhz = support.tscKhz ? vcpu.getTscKhz() : null;
  const cpuid = vcpu.getCpuid();
  const { entries: msrs, unreadable } = vcpu.getMsrs(support.msrs);
  if (unreadable.length > 0) {
    throw new Error(`KVM_GET_MSRS: KVM no longer reads MSR ${unreadable.map((index) => `0x${index.toString(16)}`).join(', ')}, which it read when the save began`);
  }
  // Last: the reads above may change what is pending (an interrupt the LAPIC
  // read accepted), and the events are what says it.
  const events = vcpu.getVcpuEvents();
  return { cpuid, mpState, regs, sregs, floatingPoint, xcrs, debugRegs, lapic, msrs, tscKhz, events };
}

/**
 * Writes a saved state into a vCPU of a new VM (made with the same CPU
 * count and, if the state has a LAPIC, an in-kernel irqchip), before its
 * first KVM_RUN. An error names the ioctl KVM refused.
 */
export function restoreVcpuState(vcpu: VcpuFd, state: VcpuState): void {
  // Checked before anything is written: a vCPU is never left half restored for a VM of the wrong kind.
  if (state.lapic !== null && !hasLocalApic(vcpu)) {
    throw new Error('KVM_SET_LAPIC: the saved vCPU has a local APIC, but this VM has no in-kernel irqchip (KVM_CREATE_IRQCHIP before restoring)');
  }
  // CPUID first: KVM checks MSR writes and the XSAVE features against it.
  vcpu.setCpuid(state.cpuid);
  if (state.tscKhz !== null) restoreTscFrequency(vcpu, state.tscKhz);
  // Early: an AP's wait for INIT/SIPI is part of it, and it depends on being the BSP, which CPUID set.
  vcpu.setMpState(state.mpState);
  // SET_REGS drops a pending exception: the events, last, bring it back.
  vcpu.setRegisters(state.regs);
  // SET_SREGS also sets IA32_APIC_BASE, which the LAPIC below needs.
  vcpu.setSpecialRegisters(state.sregs);
  if (state.floatingPoint.kind === 'xsave') vcpu.setXsave(state.floatingPoint.bytes);
  else vcpu.setFpu(state.floatingPoint.bytes);
  if (state.xcrs !== null) vcpu.setXcrs(state.xcrs);
  vcpu.setDebugRegs(state.debugRegs);
  if (state.lapic !== null) vcpu.setLapic(state.lapic);
  // After the LAPIC: KVM arms the TSC deadline only if the LAPIC timer is in
  // TSC-deadline mode, and after IA32_TSC (first in the list, savableMsrs).
  vcpu.setMsrs(state.msrs);
  vcpu.setVcpuEvents(state.events);
}

/**
 * The guest TSC must tick at the saved rate, or guest time runs fast or slow.
 * KVM accepts a rate within 250 ppm of the host's as it is; another one only
 * with TSC scaling (KVM_CAP_TSC_CONTROL).
 */
function restoreTscFrequency(vcpu: VcpuFd, savedKhz: number): void {
  const currentKhz = vcpu.getTscKhz();
  if (currentKhz === savedKhz) return;
  try {
    vcpu.setTscKhz(savedKhz);
  } catch (e) {
    if (!(e instanceof KvmError)) throw e;
    throw new Error(`KVM_SET_TSC_KHZ: the saved guest TSC ran at ${savedKhz} kHz, this host's at ${currentKhz} kHz, and KVM cannot scale it (${e.code})`);
  }
}
