// What the QMP monitor asks of the machine it controls. The monitor
// (src/qmp/) speaks QEMU's wire protocol and shapes every answer as QEMU 7.2's
// qapi/*.json does; the machine side (src/control/) answers in these terms
// and knows nothing of JSON or sockets.

/** QEMU's RunState (qapi/run-state.json), the subset tsvmm enters. */
export type RunState =
  | 'prelaunch' | 'running' | 'paused' | 'shutdown' | 'inmigrate' | 'postmigrate'
  | 'finish-migrate' | 'internal-error' | 'guest-panicked' | 'restore-vm' | 'save-vm';

/** One vCPU as query-cpus-fast and `info cpus` show it. */
export interface CpuInfo {
  index: number;
  /** The host thread id running it (0 before its thread started). */
  threadId: number;
}

/** One disk as query-block and `info block` show it. */
export interface BlockInfo {
  /** QEMU's device name for it: "virtio0", "virtio1", ... */
  device: string;
  /** The qdev id QEMU would give ("/machine/peripheral-anon/device[N]/virtio-backend"). */
  qdev: string;
  file: string;
  format: 'raw' | 'qcow2';
  readOnly: boolean;
  /** Virtual size in bytes. */
  virtualSize: number;
  /** Backing file (qcow2 overlays), or null. */
  backingFile: string | null;
}

/** The registers of one vCPU, for `info registers` (names as QEMU prints them: RAX, RIP, CS, CR0, EFER...). */
export interface CpuRegisters {
  general: Record<string, bigint>;
  segments: Record<string, { selector: number; base: bigint; limit: number; flags: number }>;
  control: Record<string, bigint>;
  descriptorTables: Record<'GDT' | 'IDT', { base: bigint; limit: number }>;
}

/** QEMU's MigrationStatus (qapi/migration.json), the subset tsvmm enters. */
export type MigrationStatus = 'none' | 'setup' | 'active' | 'device' | 'completed' | 'failed' | 'cancelling' | 'cancelled';

/** What query-migrate reports (QEMU's MigrationInfo, RAM part). Times in ms. */
export interface MigrationInfo {
  status: MigrationStatus;
  /** Present once the migration started. */
  totalTimeMs?: number;
  /** Present once completed. */
  downtimeMs?: number;
  /** Present while active: what setup took, and the expected downtime. */
  setupTimeMs?: number;
  expectedDowntimeMs?: number;
  ram?: {
    transferred: number; remaining: number; total: number; duplicate: number; normal: number;
    normalBytes: number; dirtySyncCount: number; mbps: number; pagesPerSecond: number; dirtyPagesRate: number;
    pageSize: number; multifdBytes: number; postcopyRequests: number;
    /** Bytes sent while the guest ran, and while it was stopped (QEMU 7.2's precopy-bytes, downtime-bytes). */
    precopyBytes: number; downtimeBytes: number;
  };
  /** A block migration's disks (QEMU's `disk`), in bytes of the disks. */
  disk?: { transferred: number; remaining: number; total: number };
  /** Set when status is 'failed'. */
  errorDesc?: string;
}

export interface MigrateOptions {
  /** Copy the writable disks in the stream too (QEMU's blk, or the block capability). */
  block?: boolean;
}

export interface MigrationParameters {
  /** Maximum downtime in ms (QEMU's downtime-limit; default 300 here like Cloud Hypervisor). */
  downtimeLimitMs: number;
  /** Bytes per second; 0 = unlimited. */
  maxBandwidth: number;
}

/** Events the machine raises; the monitor sends each to every negotiated client. */
export type MachineEvent =
  | { event: 'STOP' }
  | { event: 'RESUME' }
  | { event: 'RESET'; data: { guest: boolean; reason: 'guest-reset' | 'guest-shutdown' | 'guest-panic' | 'host-qmp-system-reset' | 'host-ui' } }
  | { event: 'POWERDOWN' }
  | { event: 'SHUTDOWN'; data: { guest: boolean; reason: 'guest-shutdown' | 'host-qmp-quit' | 'host-signal' | 'guest-reset' | 'guest-panic' | 'host-error' } }
  | { event: 'MIGRATION'; data: { status: MigrationStatus } }
  /** QEMU's GUEST_PANICKED: what the VM does after the guest's panic (run again: tsvmm's restart). */
  | { event: 'GUEST_PANICKED'; data: { action: 'pause' | 'poweroff' | 'run' } };

/**
 * The machine as the monitor sees it. Every method that changes the machine
 * may throw a MonitorError (its message becomes the QMP error's desc).
 */
export interface MachineControl {
  readonly name: string | null;
  /** "00000000-0000-0000-0000-000000000000" when none was given (QEMU's default). */
  readonly uuid: string;
  runState(): RunState;
  cpus(): CpuInfo[];
  registers(cpuIndex: number): Promise<CpuRegisters>;
  blockDevices(): BlockInfo[];
  /** Pauses every vCPU and the guest clock; resolves once no vCPU runs. */
  stop(): Promise<void>;
  /** Resumes from paused or prelaunch; MonitorError in other states. */
  cont(): Promise<void>;
  /** A hard reset: the guest boots again from its images. */
  systemReset(): Promise<void>;
  /** Presses the ACPI power button. */
  systemPowerdown(): void;
  /**
   * libvirt's ACPI reboot, done by the VM's own process since tsvmm has no
   * daemon: the power button, and when the guest has powered off, the
   * machine boots again instead of ending.
   */
  systemRebootByPowerButton(): void;
  /** Ends tsvmm (after the reply is sent). */
  quit(): void;
  migrate(uri: string, options?: MigrateOptions): Promise<void>;
  migrateIncoming(uri: string): Promise<void>;
  migrationInfo(): MigrationInfo;
  migrateCancel(): void;
  migrationCapabilities(): Record<string, boolean>;
  setMigrationCapability(name: string, state: boolean): void;
  migrationParameters(): MigrationParameters;
  setMigrationParameters(changes: Partial<MigrationParameters>): void;
  /** Registers the monitor's event sink. */
  onEvent(listener: (event: MachineEvent) => void): void;
}

/** A command the machine refuses; class is QMP's error class. */
export class MonitorError extends Error {
  constructor(message: string, readonly errorClass: 'GenericError' | 'CommandNotFound' | 'DeviceNotActive' | 'DeviceNotFound' | 'KVMMissingCap' = 'GenericError') {
    super(message);
  }
}
