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

  it('on PVM with an AMD CPU advertises XSAVEERPTR', () => {
    const out = guestCpuid(supported, { vcpuId: 0, host: 'pvm', cpuVendor: 'amd' });
    expect(out.find((e) => e.function === 0x8000_0008)!.ebx & 4).toBe(4);
  });

  it('on hardware KVM passes features through', () => {
    const out = guestCpuid(supported, { vcpuId: 0, host: 'vmx', cpuVendor: 'intel' });
    expect(out.find((e) => e.function === 1)!.ecx).toBe(0xffff_ffff);
    expect(out.some((e) => e.function === 0xd)).toBe(true);
  });

  it('sets the APIC id and the hypervisor bit, and adds the KVM signature leaf', () => {
    const out = guestCpuid(supported, { vcpuId: 3, host: 'vmx', cpuVendor: 'intel' });
    expect(out.find((e) => e.function === 1)!.ebx >>> 24).toBe(3);
    const sig = out.find((e) => e.function === 0x4000_0000)!;
    const text = Buffer.alloc(12);
    text.writeUInt32LE(sig.ebx, 0); text.writeUInt32LE(sig.ecx, 4); text.writeUInt32LE(sig.edx, 8);
    expect(text.toString('latin1')).toBe('KVMKVMKVM\0\0\0');
  });
});
