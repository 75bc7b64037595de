export { Vcpu, Control, Command, controlBlock, createControlBlocks, type VcpuOptions } from './vcpu.ts';
export { DeviceLock } from './device-lock.ts';
export { ExitTracer, type TraceSink } from './exit-trace.ts';
export { guestCpuid, PVM_HIDDEN, PVM_KERNEL_PARAMETERS, type CpuidOptions } from './cpuid.ts';
export { applyCpuModel, CPU_FEATURES, HOST_CPU, kvmHasFeature, parseCpuModel, type CpuModel } from './cpu-model.ts';
export type { StopCause, VcpuStop } from './stop.ts';
export { GUEST_PANIC_STATUS, VM_FAILURE_STATUS } from './stop.ts';
export { instructionName } from './instruction-names.ts';
export { KernelSymbols, findSystemMap, type TransferableSymbols } from './kernel-symbols.ts';
export {
  saveVcpuState, restoreVcpuState, savableMsrs, vcpuStateSupport, MSR_IA32_TSC,
  type VcpuState, type VcpuStateSupport, type FloatingPointState,
} from './vcpu-state.ts';
