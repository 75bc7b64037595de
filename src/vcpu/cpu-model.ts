// `--cpu MODEL[,+feature|-feature|feature=on|off|vendor=...]`, in QEMU's
// -cpu spelling so that a test suite's configuration carries over. The model
// is `host` (everything this host's KVM supports, as tsvmm has always given),
// `max`, which under KVM QEMU defines the same way, or `qemu64`, QEMU's
// default model: the feature bits of QEMU's definition (target/i386/cpu.c)
// that KVM supports here, with x2apic on as QEMU turns it on under KVM. The
// vendor, family and model stay the host's (vendor= changes the vendor). A feature named with +
// is advertised only where KVM supports it (QEMU warns and drops it too);
// tsc-deadline is KVM's to emulate, and it is on by default when KVM has
// KVM_CAP_TSC_DEADLINE_TIMER, as QEMU's host model has it.
import type { CpuidEntry } from '../kvm/index.ts';

export interface CpuModel {
  /** The model as given. */
  name: 'host' | 'max' | 'qemu64';
  /** Features switched on (true) or off (false), by QEMU's name. */
  features: Record<string, boolean>;
  /** CPUID.0's vendor string (12 characters), if changed. */
  vendor?: string;
}

type Register = 'eax' | 'ebx' | 'ecx' | 'edx';

/** Where each feature tsvmm can switch lives: CPUID leaf, subleaf, register, bit (QEMU's names). */
export const CPU_FEATURES: Record<string, readonly [number, number, Register, number]> = {
  'vmx': [1, 0, 'ecx', 5],
  'cx16': [1, 0, 'ecx', 13],
  'pcid': [1, 0, 'ecx', 17],
  'x2apic': [1, 0, 'ecx', 21],
  'popcnt': [1, 0, 'ecx', 23],
  'tsc-deadline': [1, 0, 'ecx', 24],
  'xsave': [1, 0, 'ecx', 26],
  'avx': [1, 0, 'ecx', 28],
  'hypervisor': [1, 0, 'ecx', 31],
  'tsc-adjust': [7, 0, 'ebx', 1],
  'smep': [7, 0, 'ebx', 7],
  'invpcid': [7, 0, 'ebx', 10],
  'smap': [7, 0, 'ebx', 20],
  'umip': [7, 0, 'ecx', 2],
  'pku': [7, 0, 'ecx', 3],
  'la57': [7, 0, 'ecx', 16],
  'rdpid': [7, 0, 'ecx', 22],
  'arch-capabilities': [7, 0, 'edx', 29],
  'svm': [0x8000_0001, 0, 'ecx', 2],
  'skinit': [0x8000_0001, 0, 'ecx', 12],
  'npt': [0x8000_000a, 0, 'edx', 0],
  'nx': [0x8000_0001, 0, 'edx', 20],
  'pdpe1gb': [0x8000_0001, 0, 'edx', 26],
  'rdtscp': [0x8000_0001, 0, 'edx', 27],
};

export const HOST_CPU: CpuModel = { name: 'host', features: {} };

/** CPUID.1:EDX of QEMU's qemu64: PPRO_FEATURES, MTRR, CLFLUSH, MCA, PSE36 (HTT is the topology's). */
const QEMU64_LEAF1_EDX = [0, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 19, 23, 24, 25, 26, 28];

/** The bits a model keeps of each register (a register not listed keeps all of them). */
const MODEL_MASKS: Record<'qemu64', readonly [number, number, Register, number][]> = {
  qemu64: [
    [1, 0, 'edx', bits(QEMU64_LEAF1_EDX)],
    // SSE3, CX16, x2apic (QEMU's KVM default), hypervisor.
    [1, 0, 'ecx', bits([0, 13, 21, 31])],
    [7, 0, 'ebx', 0], [7, 0, 'ecx', 0], [7, 0, 'edx', 0],
    // The AMD aliases of leaf 1's EDX bits, SYSCALL, NX, LM; LAHF_LM.
    [0x8000_0001, 0, 'edx', bits([...QEMU64_LEAF1_EDX.filter((n) => n <= 9 || (n >= 12 && n <= 17) || n === 23 || n === 24), 11, 20, 29])],
    [0x8000_0001, 0, 'ecx', bits([0])],
  ],
};

function bits(numbers: readonly number[]): number {
  return numbers.reduce((mask, n) => (mask | (1 << n)) >>> 0, 0);
}

/** The model `spec` names, or why tsvmm has no such model (a message for the CLI's error). */
export function parseCpuModel(spec: string): CpuModel | string {
  const [name, ...settings] = spec.split(',');
  if (name !== 'host' && name !== 'max' && name !== 'qemu64') {
    return `unknown CPU model "${name}" (tsvmm has host, max and qemu64, with +feature/-feature changes)`;
  }
  const model: CpuModel = { name, features: {} };
  for (const setting of settings) {
    const flag = /^([+-])(.+)$/.exec(setting);
    const onOff = /^([^=]+)=(on|off|true|false)$/.exec(setting);
    const vendor = /^vendor=(.*)$/.exec(setting);
    // tsvmm always gives the guest the host's physical address width.
    if (setting === 'host-phys-bits' || setting === 'host-phys-bits=on') continue;
    if (vendor) {
      if (vendor[1]!.length !== 12) return `vendor=${vendor[1]}: a vendor string has 12 characters (GenuineIntel, AuthenticAMD)`;
      model.vendor = vendor[1]!;
      continue;
    }
    const [feature, on] = flag ? [flag[2]!, flag[1] === '+'] : onOff ? [onOff[1]!, onOff[2] === 'on' || onOff[2] === 'true'] : [null, false];
    if (feature === null) return `"${setting}" is not +feature, -feature, feature=on|off or vendor=...`;
    if (!(feature in CPU_FEATURES)) return `unknown feature "${feature}" (known: ${Object.keys(CPU_FEATURES).join(', ')})`;
    model.features[feature] = on;
  }
  return model;
}

/**
 * Applies `model` to a guest's CPUID table; `kvmSupported(feature)` says
 * whether KVM can give the feature. Returns the features asked for that KVM
 * cannot give, which stay off.
 */
export function applyCpuModel(entries: CpuidEntry[], model: CpuModel, kvmSupported: (feature: string) => boolean): string[] {
  if (model.name === 'qemu64') {
    for (const [leaf, subleaf, register, mask] of MODEL_MASKS.qemu64) {
      const entry = entries.find((e) => e.function === leaf && e.index === subleaf);
      if (entry) entry[register] = (entry[register] & mask) >>> 0;
    }
  }
  const dropped: string[] = [];
  for (const [feature, on] of Object.entries(model.features)) {
    const [leaf, subleaf, register, bitNumber] = CPU_FEATURES[feature]!;
    const entry = entries.find((e) => e.function === leaf && e.index === subleaf);
    if (on && (!entry || !kvmSupported(feature))) {
      dropped.push(feature);
      continue;
    }
    if (!entry) continue;
    const mask = (1 << bitNumber) >>> 0;
    entry[register] = (on ? entry[register] | mask : entry[register] & ~mask) >>> 0;
  }
  if (model.vendor) {
    const leaf0 = entries.find((e) => e.function === 0);
    if (leaf0) {
      const bytes = Buffer.from(model.vendor, 'latin1');
      leaf0.ebx = bytes.readUInt32LE(0);
      leaf0.edx = bytes.readUInt32LE(4);
      leaf0.ecx = bytes.readUInt32LE(8);
    }
  }
  return dropped;
}

/** Whether KVM's supported CPUID (or, for tsc-deadline, its capability) has `feature`. */
export function kvmHasFeature(supported: readonly CpuidEntry[], tscDeadline: boolean): (feature: string) => boolean {
  return (feature) => {
    if (feature === 'tsc-deadline') return tscDeadline;
    const [leaf, subleaf, register, bitNumber] = CPU_FEATURES[feature]!;
    const entry = supported.find((e) => e.function === leaf && e.index === subleaf);
    return entry !== undefined && ((entry[register] >>> bitNumber) & 1) === 1;
  };
}
