// How a vCPU's run ends: what the VMM should tell the user, and its exit status.

/**
 * The exit status of a VM that ended in a way its guest did not ask for: a
 * halt nothing can wake, a triple fault, an instruction KVM's emulator could
 * not run, KVM refusing to enter the guest, tsvmm failing to serve an exit.
 * It must never look like a guest's own result: a debug-exit write of v ends
 * with (v << 1) | 1, always odd, and kvm-unit-tests' runner
 * (scripts/vmm.bash, qemu_fixup_return_code) takes 1 as "the test passed",
 * 77 as SKIP, 124 as a timeout and above 127 as a signal; 0 is a clean
 * power-off and 2 bad usage. 4 is even, and every such runner reports it as
 * FAIL.
 */
export const VM_FAILURE_STATUS = 4;

/**
 * The exit status of a guest that reported a panic through pvpanic: the
 * guest failed, not tsvmm, so not 4; even, so no runner takes it for a
 * debug-exit result.
 */
export const GUEST_PANIC_STATUS = 6;

/** Why a run ended; the user-facing words are in `message`. */
export type StopCause =
  | 'stopped'         // the host asked (Ctrl-A x, a signal, close())
  | 'debug-exit'      // the guest wrote the debug-exit port; `value` has what it wrote
  | 'poweroff'        // the guest powered off (ACPI sleep state S5, or KVM's system event)
  | 'reboot'          // the guest asked for a reset (i8042, ACPI reset register, KVM's system event)
  | 'panic'           // the guest reported a kernel panic (pvpanic)
  | 'halt'            // HLT with nothing left to wake the vCPU
  | 'shutdown'        // a triple fault (KVM_EXIT_SHUTDOWN)
  | 'fail-entry'      // KVM could not enter the guest
  | 'internal-error'  // KVM's emulator gave up
  | 'system-event'    // a KVM system event other than shutdown and reset
  | 'debug'           // a debug exit with guest debugging off
  | 'unhandled-exit'  // an exit reason tsvmm does not serve
  | 'console-closed'  // the console's output can no longer be written
  | 'vmm-error';      // tsvmm itself failed serving an exit

export interface VcpuStop {
  readonly cause: StopCause;
  /** The process exit status tsvmm should end with. */
  readonly status: number;
  /** One line for the user; absent when the guest ended normally and quietly. */
  readonly message?: string;
  /** The value a guest wrote to end the VM (debug-exit), when it did. */
  readonly value?: number;
}
