// The CPUID a guest sees: what this host's KVM supports, tagged as a KVM
// guest, minus what the PVM instruction emulator cannot execute.
import type { CpuidEntry, HostVirtualization } from '../kvm/index.ts';

const bit = (n: number) => (1 << n) >>> 0;

/** Features PVM's emulator fails on when guest ring-0 code uses them (docs/pvm.md). */
export const PVM_HIDDEN = {
  /** CPUID.1:ECX — lock cmpxchg16b (SLUB), popcnt, xsave/xrstor (FPU init). */
  leaf1Ecx: { CX16: 13, POPCNT: 23, XSAVE: 26, OSXSAVE: 27 },
  /** CPUID.(7,0):EBX — SMAP brings clac/stac into interrupt entry. */
  leaf7Ebx: { SMAP: 20 },
  /**
   * CPUID.40000001:EAX, KVM's paravirt features that the guest uses through a
   * `vmcall` hypercall, on which a PVM guest's vCPU stops making progress:
   * with PV_SEND_IPI and PV_SCHED_YIELD advertised, an SMP Linux hangs
   * bringing up its second CPU (measured: QEMU -smp 2 on PVM; with both off
   * it boots). PV_UNHALT's kick (paravirt spinlocks) is a hypercall too.
   */
  kvmFeaturesEax: { PV_UNHALT: 7, PV_SEND_IPI: 11, PV_SCHED_YIELD: 13 },
} as const;

/**
 * Kernel parameters that hide the same features from Linux on PVM hosts.
 * Measured (firmware/cpuid.S): PVM answers a guest's CPUID with the host's
 * feature bits and applies the VMM's table only to the bits KVM reports as
 * supported, so CX16 can be hidden by CPUID but XSAVE, POPCNT and SMAP cannot.
 * Numbers, not names: Linux 6.1's clearcpuid= takes X86_FEATURE bit numbers
 * (POPCNT = 4*32+23, SMAP = 9*32+20). `pvm_host` switches on the default
 * guest's own PVM workarounds (guests/default/patches); other kernels ignore it.
 */
export const PVM_KERNEL_PARAMETERS = 'noxsave clearcpuid=151,308 pvm_host';

/** CPUID.80000008:EBX bit 2: without it Linux on AMD takes a path PVM cannot emulate. */
const XSAVEERPTR = 2;
const HYPERVISOR_PRESENT = 31;
const TSC_DEADLINE = 24;
/**
 * CPUID.80000007:EDX bit 8. With it Linux prefers the TSC to kvm-clock, and
 * the TSC runs on while the VM is paused (QMP stop), so the guest's clock
 * would jump by the pause on cont. QEMU's migratable CPU models leave it out
 * for the same reason; without it Linux keeps kvm-clock, which tsvmm holds
 * still across a pause with KVM_GET_CLOCK/KVM_SET_CLOCK.
 */
const INVARIANT_TSC = 8;
const KVM_SIGNATURE = 'KVMKVMKVM\0\0\0';
const KVM_FEATURES_LEAF = 0x4000_0001;

export interface CpuidOptions {
  /** This vCPU's index, which is also its APIC ID (KVM sets the LAPIC ID to the vCPU id). */
  vcpuId: number;
  /** How many vCPUs the machine has (default 1). */
  cpus?: number;
  host: HostVirtualization;
  cpuVendor: 'intel' | 'amd' | 'other';
  /** KVM has KVM_CAP_TSC_DEADLINE_TIMER: advertise the LAPIC's TSC-deadline mode, as QEMU does. */
  tscDeadline?: boolean;
}

/**
 * The topology tsvmm presents: one package whose cores are the vCPUs, one
 * thread per core (no SMT), so APIC ID = core number = vCPU index. Fields
 * that count "addressable IDs" are powers of two (Intel SDM, CPUID leaf 1 and 4).
 */
interface CpuTopology {
  cpus: number;
  /** Bits of the APIC ID that number the cores of the package: ceil(log2(cpus)). */
  coreIdBits: number;
}

function cpuTopology(cpus: number): CpuTopology {
  if (!Number.isInteger(cpus) || cpus < 1) throw new RangeError(`cpus must be a positive integer, not ${cpus}`);
  return { cpus, coreIdBits: Math.ceil(Math.log2(cpus)) };
}

const KVM_CPUID_FLAG_SIGNIFICANT_INDEX = 1;
/** CPUID.1:EDX bit 28: EBX[23:16] of leaf 1 is valid (more than one logical processor per package). */
const HTT = 28;
/** Leaf 0xB/0x1F level types (ECX[15:8]). */
const LevelType = { INVALID: 0, SMT: 1, CORE: 2 } as const;

/**
 * Leaf 0xB (and 0x1F, its superset) for one vCPU: subleaf 0 the SMT level
 * (one thread, shift 0), subleaf 1 the core level (all vCPUs), subleaf 2 the
 * terminating invalid level. EDX is the x2APIC ID in every subleaf.
 */
function extendedTopologyLeaf(fn: number, vcpuId: number, topology: CpuTopology): CpuidEntry[] {
  const level = (index: number, eax: number, ebx: number, type: number): CpuidEntry =>
    ({ function: fn, index, flags: KVM_CPUID_FLAG_SIGNIFICANT_INDEX, eax, ebx, ecx: ((type << 8) | index) >>> 0, edx: vcpuId });
  return [
    level(0, 0, 1, LevelType.SMT),
    level(1, topology.coreIdBits, topology.cpus, LevelType.CORE),
    level(2, 0, 0, LevelType.INVALID),
  ];
}

function signatureRegisters(signature: string): [number, number, number] {
  const bytes = Buffer.from(signature, 'latin1');
  return [bytes.readUInt32LE(0), bytes.readUInt32LE(4), bytes.readUInt32LE(8)];
}

export function guestCpuid(supported: readonly CpuidEntry[], options: CpuidOptions): CpuidEntry[] {
  const topology = cpuTopology(options.cpus ?? 1);
  const { vcpuId } = options;
  if (!Number.isInteger(vcpuId) || vcpuId < 0 || vcpuId >= topology.cpus) {
    throw new RangeError(`vcpuId ${vcpuId} is not one of the machine's ${topology.cpus} vCPUs`);
  }
  const pvm = options.host === 'pvm';
  // KVM reports the host's topology in these; the guest gets tsvmm's instead.
  const topologyLeaves = new Set(supported.filter((e) => e.function === 0xb || e.function === 0x1f).map((e) => e.function));
  const entries = supported.filter((e) => !topologyLeaves.has(e.function)).map((e) => ({ ...e }));
  for (const fn of topologyLeaves) entries.push(...extendedTopologyLeaf(fn, vcpuId, topology));
  const addressableIds = 1 << topology.coreIdBits;

  for (const e of entries) {
    if (e.function === 1) {
      // Initial (8-bit) APIC ID, addressable logical processors, HTT, hypervisor-present.
      e.ebx = ((e.ebx & 0x0000_ffff) | ((vcpuId & 0xff) << 24) | (Math.min(addressableIds, 0xff) << 16)) >>> 0;
      e.edx = topology.cpus > 1 ? (e.edx | bit(HTT)) >>> 0 : (e.edx & ~bit(HTT)) >>> 0;
      e.ecx = (e.ecx | bit(HYPERVISOR_PRESENT)) >>> 0;
      if (options.tscDeadline) e.ecx = (e.ecx | bit(TSC_DEADLINE)) >>> 0;
      if (pvm) for (const n of Object.values(PVM_HIDDEN.leaf1Ecx)) e.ecx = (e.ecx & ~bit(n)) >>> 0;
    }
    if (e.function === 4 && (e.eax & 0x1f) !== 0) {
      // Intel deterministic cache parameters: EAX[31:26] addressable cores - 1;
      // EAX[25:14] logical processors sharing the cache - 1: L1 and L2 belong
      // to one core (no SMT), L3 to the whole package.
      const cacheLevel = (e.eax >>> 5) & 0x7;
      const sharing = cacheLevel >= 3 ? addressableIds - 1 : 0;
      e.eax = ((e.eax & 0x3fff) | (sharing << 14) | (Math.min(addressableIds - 1, 0x3f) << 26)) >>> 0;
    }
    if (e.function === 7 && e.index === 0 && pvm) {
      for (const n of Object.values(PVM_HIDDEN.leaf7Ebx)) e.ebx = (e.ebx & ~bit(n)) >>> 0;
    }
    if (e.function === KVM_FEATURES_LEAF && pvm) {
      for (const n of Object.values(PVM_HIDDEN.kvmFeaturesEax)) e.eax = (e.eax & ~bit(n)) >>> 0;
    }
    if (e.function === 0x8000_0007) e.edx = (e.edx & ~bit(INVARIANT_TSC)) >>> 0;
    if (e.function === 0x8000_0008) {
      if (pvm && options.cpuVendor === 'amd') e.ebx = (e.ebx | bit(XSAVEERPTR)) >>> 0;
      // AMD: ECX[7:0] cores - 1 (NC), ECX[15:12] the APIC ID bits that number them.
      if (options.cpuVendor === 'amd') e.ecx = ((e.ecx & ~0xf0ff) | (topology.coreIdBits << 12) | Math.min(topology.cpus - 1, 0xff)) >>> 0;
    }
    if (e.function === 0x8000_001e && options.cpuVendor === 'amd') {
      // AMD extended APIC ID; EBX core ID, one thread per core; ECX node 0 of one.
      // (KVM reports zeros here; Linux would take every vCPU for core 0: SMT siblings.)
      e.eax = vcpuId;
      e.ebx = vcpuId & 0xff;
      e.ecx = 0;
    }
  }

  // Without XSAVE the XSAVE state leaf would only mislead the guest.
  const withoutXsave = pvm ? entries.filter((e) => e.function !== 0xd) : entries;

  // KVM's signature leaf: how a guest kernel knows to use KVM's paravirt clock.
  if (!withoutXsave.some((e) => e.function === 0x4000_0000)) {
    const [ebx, ecx, edx] = signatureRegisters(KVM_SIGNATURE);
    withoutXsave.push({ function: 0x4000_0000, index: 0, flags: 0, eax: 0x4000_0001, ebx, ecx, edx });
  }
  return withoutXsave;
}
