export { Vcpu, Control, Command, type VcpuOptions } from './vcpu.ts';
export { ExitTracer, type TraceSink } from './exit-trace.ts';
export { guestCpuid, PVM_HIDDEN, type CpuidOptions } from './cpuid.ts';
export type { VcpuStop } from './stop.ts';
