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
const KVM_SIGNATURE = 'KVMKVMKVM\0\0\0';

export interface CpuidOptions {
  vcpuId: number;
  host: HostVirtualization;
  cpuVendor: 'intel' | 'amd' | 'other';
}

function signatureRegisters(signature: string): [number, number, number] {
  const bytes = Buffer.from(signature, 'latin1');
  return [bytes.readUInt32LE(0), bytes.readUInt32LE(4), bytes.readUInt32LE(8)];
}

export function guestCpuid(supported: readonly CpuidEntry[], options: CpuidOptions): CpuidEntry[] {
  const entries = supported.map((e) => ({ ...e }));
  const pvm = options.host === 'pvm';

  for (const e of entries) {
    if (e.function === 1) {
      // Initial APIC id and the hypervisor-present bit.
      e.ebx = ((e.ebx & 0x00ff_ffff) | (options.vcpuId << 24)) >>> 0;
      e.ecx = (e.ecx | bit(HYPERVISOR_PRESENT)) >>> 0;
      if (pvm) for (const n of Object.values(PVM_HIDDEN.leaf1Ecx)) e.ecx = (e.ecx & ~bit(n)) >>> 0;
    }
    if (e.function === 7 && e.index === 0 && pvm) {
      for (const n of Object.values(PVM_HIDDEN.leaf7Ebx)) e.ebx = (e.ebx & ~bit(n)) >>> 0;
    }
    if (e.function === 0xb || e.function === 0x1f) e.edx = options.vcpuId; // x2APIC id
    if (e.function === 0x8000_0008 && pvm && options.cpuVendor === 'amd') e.ebx = (e.ebx | bit(XSAVEERPTR)) >>> 0;
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
