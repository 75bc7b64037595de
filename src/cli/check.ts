// `tsvmm check`: can tsvmm run here, and what kind of KVM is this?
import { accessSync, constants, statSync } from 'node:fs';
import {
  describeVirtualization, detectVirtualization, KvmError, KvmSystem, type CapabilityName,
  type VirtualizationFacts,
} from '../kvm/index.ts';

/** Capabilities tsvmm cannot run without, and the ones it uses when present. */
const REQUIRED: CapabilityName[] = ['KVM_CAP_USER_MEMORY', 'KVM_CAP_SET_TSS_ADDR', 'KVM_CAP_EXT_CPUID', 'KVM_CAP_IMMEDIATE_EXIT'];
const USED: CapabilityName[] = [
  'KVM_CAP_IRQCHIP', 'KVM_CAP_PIT2', 'KVM_CAP_IOEVENTFD', 'KVM_CAP_IRQFD', 'KVM_CAP_SET_IDENTITY_MAP_ADDR', 'KVM_CAP_HLT',
];
const COUNTS: CapabilityName[] = ['KVM_CAP_NR_VCPUS', 'KVM_CAP_MAX_VCPUS', 'KVM_CAP_NR_MEMSLOTS'];

export interface CheckReport {
  device: { path: string; present: boolean; mode?: string; readWrite: boolean; error?: string };
  apiVersion?: number;
  capabilities: { name: CapabilityName; value: number; required: boolean }[];
  virtualization: VirtualizationFacts;
  canRun: boolean;
  problems: string[];
}

export function checkHost(path = '/dev/kvm'): CheckReport {
  const problems: string[] = [];
  const device: CheckReport['device'] = { path, present: false, readWrite: false };
  try {
    const stat = statSync(path);
    device.present = true;
    device.mode = `${(stat.mode & 0o777).toString(8).padStart(4, '0')} uid ${stat.uid} gid ${stat.gid}`;
    accessSync(path, constants.R_OK | constants.W_OK);
    device.readWrite = true;
  } catch (e) {
    device.error = (e as NodeJS.ErrnoException).code ?? String(e);
  }

  const report: CheckReport = { device, capabilities: [], virtualization: detectVirtualization(), canRun: false, problems };
  let kvm: KvmSystem | null = null;
  try {
    kvm = KvmSystem.open(path);
    report.apiVersion = kvm.apiVersion();
    for (const name of [...REQUIRED, ...USED, ...COUNTS]) {
      const value = kvm.checkExtension(name);
      report.capabilities.push({ name, value, required: REQUIRED.includes(name) });
      if (REQUIRED.includes(name) && value === 0) problems.push(`${name} is missing`);
    }
  } catch (e) {
    problems.push(e instanceof KvmError ? e.message : (e as Error).message);
  } finally {
    kvm?.close();
  }
  report.canRun = kvm !== null && problems.length === 0;
  return report;
}

export function formatCheck(report: CheckReport): string {
  const lines: string[] = [];
  const d = report.device;
  lines.push(`${d.path}: ${d.present ? `present (mode ${d.mode}), ${d.readWrite ? 'read/write OK' : `no read/write access (${d.error})`}` : `absent (${d.error})`}`);
  if (report.apiVersion !== undefined) lines.push(`KVM API version: ${report.apiVersion}`);
  const v = report.virtualization;
  const kindName = { vmx: 'VMX (Intel VT-x)', svm: 'SVM (AMD-V)', pvm: 'PVM', unknown: 'unknown' }[v.kind];
  lines.push(`virtualization: ${kindName} — ${describeVirtualization(v.kind)}`);
  lines.push(`  cpu flags: vmx=${v.cpuFlags.vmx ? 'yes' : 'no'} svm=${v.cpuFlags.svm ? 'yes' : 'no'}; modules: ${Object.entries(v.modules).filter(([, on]) => on).map(([m]) => m).join(', ') || 'none'}`);
  if (report.capabilities.length) {
    lines.push('capabilities:');
    for (const c of report.capabilities) {
      const shown = COUNTS.includes(c.name) ? String(c.value) : c.value ? 'yes' : 'no';
      lines.push(`  ${c.name.padEnd(30)} ${shown}${c.required ? ' (required)' : ''}`);
    }
  }
  for (const p of report.problems) lines.push(`problem: ${p}`);
  lines.push(report.canRun ? 'tsvmm can run guests on this host.' : 'tsvmm cannot run guests on this host.');
  return lines.join('\n');
}

