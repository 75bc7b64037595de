// The machine a benchmark ran on, for the report, the JSON and the chart.
import { readFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { detectVirtualization } from '../../src/kvm/index.ts';
import { findPeers } from './peers.ts';

export interface MachineInfo {
  cpu: string;
  cpus: number;
  memoryGiB: number;
  kernel: string;
  /** vmx / svm: hardware KVM; pvm: software KVM (docs/pvm.md). */
  kvm: string;
  node: string;
  peers: Record<string, string>;
}

export function machineInfo(): MachineInfo {
  let cpu = cpus()[0]?.model ?? 'unknown CPU';
  try {
    cpu = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpu;
  } catch {
    // no /proc
  }
  const kind = detectVirtualization().kind;
  const peers = findPeers();
  return {
    cpu,
    cpus: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    kvm: kind === 'pvm' ? 'PVM (software KVM, no VT-x/AMD-V)' : kind === 'vmx' ? 'hardware KVM (VT-x)' : kind === 'svm' ? 'hardware KVM (AMD-V)' : 'unknown',
    node: process.version,
    peers: Object.fromEntries(Object.values(peers).map((p) => [p.label, p.path ? (p.version ?? p.path) : p.note])),
  };
}

export function describeMachine(info: MachineInfo): string {
  return `${info.kvm}; ${info.cpu}, ${info.cpus} CPUs, ${info.memoryGiB} GiB; Linux ${info.kernel}; Node ${info.node}`;
}
