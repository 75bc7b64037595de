// What must be the same for a saved machine to be restored into another: the
// RAM, the vCPUs and every device a guest could have seen. File paths are
// not in it (a disk may sit elsewhere on the destination host, as QEMU
// allows); the guest's images are not either, since its RAM comes along.
import type { MachineConfig } from '../machine/config.ts';

export interface MachineShape {
  memoryBytes: number;
  cpus: number;
  /** The --cpu model and changes, as given (default host). */
  cpu: string;
  /** A kernel guest has ACPI and the PC's interrupt controllers; a flat one is its own firmware. */
  guest: 'kernel' | 'flat';
  irqchip: boolean;
  pit: 'tsvmm' | 'kernel' | 'off';
  console: 'serial' | 'virtio';
  debugExit: string;
  pcTestdev: boolean;
  pvpanic: boolean;
  fwCfgFiles: string[];
  /** Each virtio device: kind, transport, and for a disk whether it is read-only. */
  virtio: string[];
}

export function machineShape(config: MachineConfig): MachineShape {
  const transport = config.virtioTransport ?? 'mmio';
  return {
    memoryBytes: config.memoryBytes,
    cpus: config.cpus ?? 1,
    cpu: JSON.stringify(config.cpu ?? { name: 'host', features: {} }),
    guest: config.flat ? 'flat' : 'kernel',
    irqchip: Boolean(config.irqchip) || Boolean(config.linux) || (config.cpus ?? 1) > 1 || config.pit === 'kernel',
    pit: config.pit ?? 'tsvmm',
    console: config.console ?? 'serial',
    debugExit: config.debugExit ? `${config.debugExit.port}/${config.debugExit.size}` : 'default',
    pcTestdev: Boolean(config.pcTestdev),
    pvpanic: Boolean(config.pvpanic),
    fwCfgFiles: (config.fwCfgFiles ?? []).map((f) => f.name),
    virtio: (config.virtio ?? []).map((d) => `${d.kind}:${d.transport ?? transport}${d.kind === 'blk' && d.readOnly ? ':ro' : ''}`),
  };
}

const LABELS: Record<keyof MachineShape, string> = {
  memoryBytes: 'RAM bytes', cpus: 'vCPUs', cpu: 'CPU model', guest: 'guest kind', irqchip: 'in-kernel irqchip', pit: 'PIT',
  console: 'console', debugExit: 'isa-debug-exit', pcTestdev: 'pc-testdev', pvpanic: 'pvpanic', fwCfgFiles: 'fw_cfg files', virtio: 'virtio devices',
};

/** What a shape saved before a field existed meant by its absence. */
const ADDED_LATER: Partial<MachineShape> = { pvpanic: false };

/** Null when `saved` (from a stream's header) fits `here`; else one line naming the first difference. */
export function describeShapeMismatch(saved: unknown, here: MachineShape): string | null {
  if (typeof saved !== 'object' || saved === null) return 'the stream names no machine (damaged header)';
  const s = saved as Record<string, unknown>;
  for (const key of Object.keys(here) as (keyof MachineShape)[]) {
    const a = JSON.stringify(s[key] ?? ADDED_LATER[key]);
    const b = JSON.stringify(here[key]);
    if (a !== b) return `the saved machine does not match this one: ${LABELS[key]} ${a ?? 'missing'} there, ${b} here`;
  }
  return null;
}
