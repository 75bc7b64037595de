// --cpu: the models, QEMU's feature spelling, and what reaches the guest's CPUID; --pit off.
import { describe, expect, it } from 'vitest';
import { configFromOptions } from '../src/cli/run.ts';
import { machineDevices } from '../src/machine/builder.ts';
import { InputError } from '../src/errors.ts';
import type { CpuidEntry } from '../src/kvm/index.ts';
import { applyCpuModel, guestCpuid, kvmHasFeature, parseCpuModel, type CpuModel } from '../src/vcpu/index.ts';

const entry = (fn: number, index: number, regs: Partial<CpuidEntry>): CpuidEntry => ({ function: fn, index, flags: 0, eax: 0, ebx: 0, ecx: 0, edx: 0, ...regs });
const bit = (n: number) => (1 << n) >>> 0;

/** A KVM that supports x2apic and PCID (leaf 1), INVPCID and SMEP (leaf 7), RDTSCP, but not VMX. */
const supported = [
  entry(0, 0, { eax: 0xd, ebx: 0x6874_7541, edx: 0x6974_6e65, ecx: 0x444d_4163 }),
  entry(1, 0, { ecx: bit(0) | bit(13) | bit(17) | bit(21), edx: 0x178b_fbff }),
  entry(7, 0, { ebx: bit(7) | bit(10) }),
  entry(0x8000_0001, 0, { ecx: bit(0) | bit(5), edx: bit(11) | bit(20) | bit(27) | bit(29) }),
];

function cpuid(model: CpuModel, tscDeadline = true): { entries: CpuidEntry[]; dropped: string[] } {
  const entries = guestCpuid(supported, { vcpuId: 0, host: 'vmx', cpuVendor: 'amd', tscDeadline });
  const dropped = applyCpuModel(entries, model, kvmHasFeature(supported, tscDeadline));
  return { entries, dropped };
}
const leaf = (entries: CpuidEntry[], fn: number) => entries.find((e) => e.function === fn)!;

function model(spec: string): CpuModel {
  const parsed = parseCpuModel(spec);
  if (typeof parsed === 'string') throw new Error(parsed);
  return parsed;
}

describe('--cpu', () => {
  it('parses QEMU\'s spelling: +f, -f, f=on|off, vendor=, host-phys-bits', () => {
    expect(model('qemu64,+x2apic,-pcid,umip=on,pku=off')).toEqual({ name: 'qemu64', features: { x2apic: true, pcid: false, umip: true, pku: false } });
    expect(model('max,vendor=GenuineIntel,host-phys-bits')).toEqual({ name: 'max', features: {}, vendor: 'GenuineIntel' });
    expect(parseCpuModel('IvyBridge')).toMatch(/unknown CPU model "IvyBridge"/);
    expect(parseCpuModel('host,+no-such-thing')).toMatch(/unknown feature "no-such-thing"/);
    expect(parseCpuModel('host,vendor=Intel')).toMatch(/12 characters/);
    expect(() => configFromOptions({ flat: 'x.bin', cpu: 'Skylake-Server' })).toThrow(InputError);
    expect(configFromOptions({ flat: 'x.bin', cpu: 'host,-x2apic' }).cpu).toEqual({ name: 'host', features: { x2apic: false } });
  });

  it('host advertises TSC-deadline when KVM has the capability, and not otherwise', () => {
    expect(leaf(cpuid(model('host')).entries, 1).ecx & bit(24)).toBe(bit(24));
    expect(leaf(cpuid(model('host'), false).entries, 1).ecx & bit(24)).toBe(0);
  });

  it('-feature clears the bit; +feature sets it where KVM supports it and reports it dropped where not', () => {
    const { entries, dropped } = cpuid(model('host,-x2apic,-invpcid,+vmx'));
    expect(leaf(entries, 1).ecx & bit(21)).toBe(0);
    expect(leaf(entries, 7).ebx & bit(10)).toBe(0);
    expect(leaf(entries, 1).ecx & bit(5)).toBe(0);
    expect(dropped).toEqual(['vmx']);
    expect(cpuid(model('host,+tsc-deadline'), false).dropped).toEqual(['tsc-deadline']);
  });

  it('qemu64 keeps only QEMU\'s qemu64 bits of what KVM supports, plus x2apic; + adds back what the test asks', () => {
    const plain = cpuid(model('qemu64')).entries;
    expect(leaf(plain, 1).ecx).toBe((bit(0) | bit(13) | bit(21) | bit(31)) >>> 0);
    expect(leaf(plain, 7).ebx).toBe(0);
    expect(leaf(plain, 0x8000_0001).edx & bit(27)).toBe(0); // no RDTSCP in qemu64
    expect(leaf(plain, 0x8000_0001).edx & bit(29)).toBe(bit(29));
    expect(leaf(plain, 0x8000_0001).ecx).toBe(bit(0));
    const asked = cpuid(model('qemu64,+pcid,+invpcid,+tsc-deadline')).entries;
    expect(leaf(asked, 1).ecx & (bit(17) | bit(24))).toBe((bit(17) | bit(24)) >>> 0);
    expect(leaf(asked, 7).ebx).toBe(bit(10));
  });

  it('vendor= replaces CPUID.0\'s vendor string', () => {
    const leaf0 = leaf(cpuid(model('max,vendor=GenuineIntel')).entries, 0);
    const text = Buffer.alloc(12);
    text.writeUInt32LE(leaf0.ebx, 0);
    text.writeUInt32LE(leaf0.edx, 4);
    text.writeUInt32LE(leaf0.ecx, 8);
    expect(text.toString('latin1')).toBe('GenuineIntel');
  });
});

describe('--pit off (QEMU\'s -machine pit=off)', () => {
  it('leaves the PIT and port 0x61 off the machine; tsvmm and kernel keep theirs', () => {
    expect(configFromOptions({ flat: 'x.bin', pit: 'off' }).pit).toBe('off');
    expect(() => configFromOptions({ flat: 'x.bin', pit: 'none' })).toThrow(/expected "tsvmm".*"kernel".*"off"/);
    const kinds = (pit: 'tsvmm' | 'kernel' | 'off') => machineDevices({ pit }, false).map((d) => d.kind);
    expect(kinds('off')).not.toContain('pit8254');
    expect(kinds('off')).not.toContain('system-control-port');
    expect(kinds('tsvmm')).toContain('pit8254');
  });
});
