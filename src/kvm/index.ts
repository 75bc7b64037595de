// The kernel interface of tsvmm: everything above src/kvm imports from here.
export { KvmSystem, VmFd, VcpuFd, KVM_API_VERSION, type ClockData, type IoEventFdRequest, type MsrRead } from './kvm.ts';
export { KvmError } from './errors.ts';
export { Capability, ClockFlag, Ioctl, MemoryRegionFlag, type CapabilityName, type IoctlName } from './ioctls.ts';
export { Layouts, RunOffset, type Layout, type StructName } from './structs.ts';
export type { CpuidEntry, MsrEntry, Registers, SpecialRegisters, Segment, DescriptorTable } from './codec.ts';
export {
  mapAnonymous, unmap, mapFilePrivateOver, dropGuestMappingOfPage, viewOf, createEventFd, createPipe, createStreamSocketPair, signalEventFd, drainEventFd, ReadableWaiter, closeFd, currentThreadId, signalThread, SIGUSR2, type HostMapping,
} from './host.ts';
export { errnoName } from './libc.ts';
export {
  ExitReason, IoDirection, InternalError, MpState, SystemEvent, exitReasonName, internalErrorDescription, systemEventName,
} from './exits.ts';
export { detectVirtualization, describeVirtualization, type HostVirtualization, type VirtualizationFacts } from './virtualization.ts';
export { blockSignalInThisThread, consumePendingSignal, withoutSignal, ThreadTimer } from './thread-signals.ts';
export { bridgeTap, openTap, TapError, type Tap } from './tap.ts';
export { ofdByteLocks } from './file-locks.ts';
