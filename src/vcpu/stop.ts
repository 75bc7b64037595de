// How a vCPU's run ends: what the VMM should tell the user, and its exit status.

/** Why a run ended; the user-facing words are in `message`. */
export type StopCause =
  | 'stopped'         // the host asked (Ctrl-A x, a signal, close())
  | 'debug-exit'      // the guest wrote the debug-exit port; `value` has what it wrote
  | 'poweroff'        // the guest powered off (ACPI sleep state S5, or KVM's system event)
  | 'reboot'          // the guest asked for a reset (i8042, ACPI reset register, KVM's system event)
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
