// What kind of KVM this host has. The same ioctls work on all three, but on
// PVM guest kernel code runs under KVM's instruction emulator (docs/pvm.md),
// which changes what a guest can be shown and how fast it runs.
import { existsSync, readFileSync } from 'node:fs';

export type HostVirtualization = 'vmx' | 'svm' | 'pvm' | 'unknown';

export interface VirtualizationFacts {
  kind: HostVirtualization;
  cpuVendor: 'intel' | 'amd' | 'other';
  cpuFlags: { vmx: boolean; svm: boolean };
  modules: { kvm_intel: boolean; kvm_amd: boolean; kvm_pvm: boolean };
}

export function detectVirtualization(sysModule = '/sys/module', cpuinfoPath = '/proc/cpuinfo'): VirtualizationFacts {
  let cpuinfo = '';
  try {
    cpuinfo = readFileSync(cpuinfoPath, 'utf8');
  } catch {
    // No /proc: report what the modules say.
  }
  const flags = new Set((/^flags\s*:(.*)$/m.exec(cpuinfo)?.[1] ?? '').trim().split(/\s+/));
  const vendorId = /^vendor_id\s*:\s*(\S+)/m.exec(cpuinfo)?.[1] ?? '';
  const modules = {
    kvm_intel: existsSync(`${sysModule}/kvm_intel`),
    kvm_amd: existsSync(`${sysModule}/kvm_amd`),
    kvm_pvm: existsSync(`${sysModule}/kvm_pvm`),
  };
  // PVM wins: it is loaded precisely where VT-x/AMD-V are not available to KVM.
  const kind: HostVirtualization = modules.kvm_pvm ? 'pvm'
    : modules.kvm_intel && flags.has('vmx') ? 'vmx'
    : modules.kvm_amd && flags.has('svm') ? 'svm'
    : 'unknown';
  return {
    kind,
    cpuVendor: vendorId === 'GenuineIntel' ? 'intel' : vendorId === 'AuthenticAMD' ? 'amd' : 'other',
    cpuFlags: { vmx: flags.has('vmx'), svm: flags.has('svm') },
    modules,
  };
}

export function describeVirtualization(kind: HostVirtualization): string {
  switch (kind) {
    case 'vmx': return 'Intel VT-x: guests run natively';
    case 'svm': return 'AMD-V: guests run natively';
    case 'pvm': return 'software KVM without VT-x/AMD-V: ordinary guest kernels run under instruction emulation and may not boot; ring-3 code is native';
    default: return 'unknown KVM backend';
  }
}
