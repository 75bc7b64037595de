import { describe, expect, it } from 'vitest';
import { guestCpuid } from '../src/vcpu/index.ts';
import type { CpuidEntry } from '../src/kvm/index.ts';

const entry = (fn: number, index: number, regs: Partial<CpuidEntry>): CpuidEntry => ({ function: fn, index, flags: 0, eax: 0, ebx: 0, ecx: 0, edx: 0, ...regs });

const supported = [
  entry(1, 0, { ecx: 0xffff_ffff, ebx: 0x00ff_ffff }),
  entry(7, 0, { ebx: 0xffff_ffff }),
  entry(0xd, 0, { eax: 7 }),
  entry(0x8000_0008, 0, { ebx: 0 }),
];

describe('guest CPUID', () => {
  it('on PVM hides CX16, POPCNT, XSAVE, OSXSAVE and SMAP, and drops the XSAVE leaf', () => {
    const out = guestCpuid(supported, { vcpuId: 0, host: 'pvm', cpuVendor: 'intel' });
    const leaf1 = out.find((e) => e.function === 1)!;
    for (const bit of [13, 23, 26, 27]) expect(leaf1.ecx & (1 << bit)).toBe(0);
    expect(out.find((e) => e.function === 7)!.ebx & (1 << 20)).toBe(0);
    expect(out.some((e) => e.function === 0xd)).toBe(false);
  });

  it('on PVM hides KVM\'s hypercall-based PV features (PV_UNHALT, PV_SEND_IPI, PV_SCHED_YIELD) and keeps the rest', () => {
    const kvmFeatures = entry(0x4000_0001, 0, { eax: 0x0100_7efb }); // what KVM on PVM reports
    const pvm = guestCpuid([...supported, kvmFeatures], { vcpuId: 0, host: 'pvm', cpuVendor: 'intel' });
    expect(pvm.find((e) => e.function === 0x4000_0001)!.eax).toBe(0x0100_567b);
    const vmx = guestCpuid([...supported, kvmFeatures], { vcpuId: 0, host: 'vmx', cpuVendor: 'intel' });
    expect(vmx.find((e) => e.function === 0x4000_0001)!.eax).toBe(0x0100_7efb);
  });

  it('on PVM with an AMD CPU advertises XSAVEERPTR', () => {
    const out = guestCpuid(supported, { vcpuId: 0, host: 'pvm', cpuVendor: 'amd' });
    expect(out.find((e) => e.function === 0x8000_0008)!.ebx & 4).toBe(4);
  });

  it('on hardware KVM passes features through', () => {
    const out = guestCpuid(supported, { vcpuId: 0, host: 'vmx', cpuVendor: 'intel' });
    expect(out.find((e) => e.function === 1)!.ecx).toBe(0xffff_ffff);
    expect(out.some((e) => e.function === 0xd)).toBe(true);
  });

  it('hides the invariant TSC, so that Linux keeps kvm-clock, which stands still while the VM is paused', () => {
    const power = entry(0x8000_0007, 0, { edx: 0x0000_0f00 });
    for (const host of ['pvm', 'vmx'] as const) {
      const out = guestCpuid([...supported, power], { vcpuId: 0, host, cpuVendor: 'amd' });
      expect(out.find((e) => e.function === 0x8000_0007)!.edx).toBe(0x0000_0e00);
    }
  });

  it('sets the APIC id and the hypervisor bit, and adds the KVM signature leaf', () => {
    const out = guestCpuid(supported, { vcpuId: 3, cpus: 4, host: 'vmx', cpuVendor: 'intel' });
    expect(out.find((e) => e.function === 1)!.ebx >>> 24).toBe(3);
    const sig = out.find((e) => e.function === 0x4000_0000)!;
    const text = Buffer.alloc(12);
    text.writeUInt32LE(sig.ebx, 0); text.writeUInt32LE(sig.ecx, 4); text.writeUInt32LE(sig.edx, 8);
    expect(text.toString('latin1')).toBe('KVMKVMKVM\0\0\0');
  });
});

describe('guest CPUID topology: one package, one core per vCPU', () => {
  // What KVM_GET_SUPPORTED_CPUID gives on a 64-thread host: its own topology.
  const host = [
    entry(1, 0, { ebx: 0x2a40_0800, edx: 1 << 28 }),
    entry(4, 0, { eax: 0xfc00_4121, flags: 1 }), // L1d, 64 cores, 2 threads share it
    entry(4, 3, { eax: 0xfc1f_c163, flags: 1 }), // L3, 64 cores, 128 threads share it
    entry(4, 4, { eax: 0, flags: 1 }), // no more caches
    entry(0xb, 0, { eax: 1, ebx: 2, ecx: 0x100, edx: 0x2a, flags: 1 }),
    entry(0xb, 1, { eax: 7, ebx: 128, ecx: 0x201, edx: 0x2a, flags: 1 }),
    entry(0x8000_0008, 0, { ecx: 0x703f }),
  ];
  const cpuid = (vcpuId: number, cpus: number | undefined, cpuVendor: 'intel' | 'amd' = 'intel') =>
    guestCpuid(host, { vcpuId, ...(cpus === undefined ? {} : { cpus }), host: 'vmx', cpuVendor });
  const leaf = (out: CpuidEntry[], fn: number, index = 0) => out.find((e) => e.function === fn && e.index === index)!;

  it('leaf 1 carries each vCPU\'s initial APIC ID, the addressable IDs of the package and HTT', () => {
    for (const vcpuId of [0, 1, 2]) {
      const l1 = leaf(cpuid(vcpuId, 3), 1);
      expect(l1.ebx >>> 24).toBe(vcpuId);
      expect((l1.ebx >>> 16) & 0xff).toBe(4); // 3 CPUs need 2 bits of APIC ID: 4 addressable
      expect(l1.ebx & 0xffff).toBe(0x0800); // CLFLUSH size and brand index untouched
      expect(l1.edx & (1 << 28)).not.toBe(0);
    }
  });

  it('one vCPU (also the default): one logical processor and no HTT', () => {
    for (const out of [cpuid(0, 1), cpuid(0, undefined)]) {
      const l1 = leaf(out, 1);
      expect((l1.ebx >>> 16) & 0xff).toBe(1);
      expect(l1.edx & (1 << 28)).toBe(0);
    }
  });

  it('leaf 0xB replaces the host\'s levels: SMT (1 thread), core (N CPUs, shift ceil(log2 N)), then invalid; EDX = x2APIC ID', () => {
    const out = cpuid(5, 6);
    const levels = out.filter((e) => e.function === 0xb).sort((a, b) => a.index - b.index);
    expect(levels.map((e) => [e.index, e.eax, e.ebx, e.ecx, e.edx, e.flags])).toEqual([
      [0, 0, 1, 0x100, 5, 1],
      [1, 3, 6, 0x201, 5, 1],
      [2, 0, 0, 0x002, 5, 1],
    ]);
  });

  it('leaf 0xB is added only where the host has it', () => {
    const out = guestCpuid([entry(1, 0, {})], { vcpuId: 1, cpus: 2, host: 'vmx', cpuVendor: 'intel' });
    expect(out.some((e) => e.function === 0xb)).toBe(false);
  });

  it('leaf 4 counts the package\'s cores; L1 is private to a core, L3 shared by the package', () => {
    const out = cpuid(1, 2);
    const l1d = leaf(out, 4, 0);
    const l3 = leaf(out, 4, 3);
    expect(l1d.eax >>> 26).toBe(1);
    expect((l1d.eax >>> 14) & 0xfff).toBe(0);
    expect(l1d.eax & 0x3fff).toBe(0x0121); // type, level, the rest of the cache description kept
    expect(l3.eax >>> 26).toBe(1);
    expect((l3.eax >>> 14) & 0xfff).toBe(1);
    expect(leaf(out, 4, 4).eax).toBe(0);
  });

  it('on AMD, leaf 0x80000008 ECX gives the core count and the APIC ID bits that number the cores', () => {
    const ecx = leaf(cpuid(0, 4, 'amd'), 0x8000_0008).ecx;
    expect(ecx & 0xff).toBe(3);
    expect((ecx >>> 12) & 0xf).toBe(2);
    expect(leaf(cpuid(0, 4, 'intel'), 0x8000_0008).ecx).toBe(0x703f);
  });

  it('on AMD, leaf 0x8000001E gives each vCPU its own core (KVM reports zeros: every vCPU core 0)', () => {
    const amdHost = [...host, entry(0x8000_001e, 0, {})];
    for (const vcpuId of [0, 1]) {
      const ext = leaf(guestCpuid(amdHost, { vcpuId, cpus: 2, host: 'vmx', cpuVendor: 'amd' }), 0x8000_001e);
      expect([ext.eax, ext.ebx & 0xff, (ext.ebx >>> 8) & 0xff, ext.ecx]).toEqual([vcpuId, vcpuId, 0, 0]);
    }
  });

  it('a vCPU id outside the machine is refused', () => {
    expect(() => cpuid(2, 2)).toThrow(/vcpuId 2 is not one of the machine's 2 vCPUs/);
    expect(() => cpuid(0, 0)).toThrow(/cpus must be a positive integer/);
  });
});
