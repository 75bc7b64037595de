// Why KVM_RUN returned: kvm_run.exit_reason and the sub-codes tsvmm decodes.
// Checked against <linux/kvm.h> by test/kvm-abi.test.ts.

export const ExitReason = {
  KVM_EXIT_UNKNOWN: 0,
  KVM_EXIT_EXCEPTION: 1,
  KVM_EXIT_IO: 2,
  KVM_EXIT_HYPERCALL: 3,
  KVM_EXIT_DEBUG: 4,
  KVM_EXIT_HLT: 5,
  KVM_EXIT_MMIO: 6,
  KVM_EXIT_IRQ_WINDOW_OPEN: 7,
  KVM_EXIT_SHUTDOWN: 8,
  KVM_EXIT_FAIL_ENTRY: 9,
  KVM_EXIT_INTR: 10,
  KVM_EXIT_SET_TPR: 11,
  KVM_EXIT_TPR_ACCESS: 12,
  KVM_EXIT_NMI: 16,
  KVM_EXIT_INTERNAL_ERROR: 17,
  KVM_EXIT_SYSTEM_EVENT: 24,
  KVM_EXIT_IOAPIC_EOI: 26,
  KVM_EXIT_HYPERV: 27,
  KVM_EXIT_X86_RDMSR: 29,
  KVM_EXIT_X86_WRMSR: 30,
  KVM_EXIT_DIRTY_RING_FULL: 31,
  KVM_EXIT_X86_BUS_LOCK: 33,
  KVM_EXIT_NOTIFY: 37,
} as const;

const exitNames = new Map<number, string>(Object.entries(ExitReason).map(([name, value]) => [value, name.slice('KVM_EXIT_'.length)]));

/** "IO", "HLT", ... or "exit reason 99". */
export function exitReasonName(reason: number): string {
  return exitNames.get(reason) ?? `exit reason ${reason}`;
}

export const IoDirection = { KVM_EXIT_IO_IN: 0, KVM_EXIT_IO_OUT: 1 } as const;

export const InternalError = {
  KVM_INTERNAL_ERROR_EMULATION: 1,
  KVM_INTERNAL_ERROR_SIMUL_EX: 2,
  KVM_INTERNAL_ERROR_DELIVERY_EV: 3,
  KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON: 4,
} as const;

const internalErrorText = new Map<number, string>([
  [1, 'the instruction emulator could not emulate an instruction'],
  [2, 'an exception was raised while delivering another (simultaneous exceptions)'],
  [3, 'an event could not be delivered to the guest'],
  [4, 'KVM met a VM exit it does not handle'],
]);

export function internalErrorDescription(suberror: number): string {
  return internalErrorText.get(suberror) ?? `suberror ${suberror}`;
}

export const SystemEvent = {
  KVM_SYSTEM_EVENT_SHUTDOWN: 1,
  KVM_SYSTEM_EVENT_RESET: 2,
  KVM_SYSTEM_EVENT_CRASH: 3,
  KVM_SYSTEM_EVENT_WAKEUP: 4,
  KVM_SYSTEM_EVENT_SUSPEND: 5,
} as const;

const systemEventNames = new Map<number, string>(Object.entries(SystemEvent).map(([name, value]) => [value, name.slice('KVM_SYSTEM_EVENT_'.length).toLowerCase()]));

export function systemEventName(type: number): string {
  return systemEventNames.get(type) ?? `type ${type}`;
}

export const MpState = { KVM_MP_STATE_RUNNABLE: 0, KVM_MP_STATE_UNINITIALIZED: 1, KVM_MP_STATE_INIT_RECEIVED: 2, KVM_MP_STATE_HALTED: 3, KVM_MP_STATE_SIPI_RECEIVED: 4 } as const;
