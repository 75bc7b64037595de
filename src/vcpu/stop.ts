// How a vCPU's run ends: what the VMM should tell the user, and its exit status.

export interface VcpuStop {
  /** Short machine-readable cause: "debug-exit", "halt", "shutdown", "poweroff", "reboot", ... */
  readonly cause: string;
  /** The process exit status tsvmm should end with. */
  readonly status: number;
  /** One line for the user; absent when the guest ended normally and quietly. */
  readonly message?: string;
  /** The value a guest wrote to end the VM (debug-exit), when it did. */
  readonly value?: number;
}
