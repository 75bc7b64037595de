// A MachineControl without a guest, for the QMP tests: it keeps a RunState and
// moves through it the way QEMU's does (prelaunch -> running <-> paused,
// migration to postmigrate), raises the events QEMU raises for each command,
// and records every call so a test can check what the monitor asked for.

import {
  MonitorError,
  type BlockInfo, type CpuInfo, type CpuRegisters, type MachineControl, type MachineEvent,
  type MigrateOptions, type MigrationInfo, type MigrationParameters, type RunState,
} from '../../src/qmp/target.ts';

export interface FakeMachineOptions {
  name?: string | null;
  uuid?: string;
  state?: RunState;
  cpus?: CpuInfo[];
  disks?: BlockInfo[];
  registers?: CpuRegisters;
  /** Called by quit(), after SHUTDOWN: the real machine ends the process there. */
  onQuit?: () => void;
}

/** The registers of a vCPU at reset (real mode, CS:IP f000:fff0), as QEMU's `info registers` shows them. */
export const RESET_REGISTERS: CpuRegisters = {
  general: {
    RAX: 0n, RBX: 0n, RCX: 0n, RDX: 0x60fb1n, RSI: 0n, RDI: 0n, RBP: 0n, RSP: 0n,
    R8: 0n, R9: 0n, R10: 0n, R11: 0n, R12: 0n, R13: 0n, R14: 0n, R15: 0n, RIP: 0xfff0n, RFL: 2n,
  },
  segments: {
    ES: { selector: 0, base: 0n, limit: 0xffff, flags: 0x9300 },
    CS: { selector: 0xf000, base: 0xffff0000n, limit: 0xffff, flags: 0x9b00 },
    SS: { selector: 0, base: 0n, limit: 0xffff, flags: 0x9300 },
    DS: { selector: 0, base: 0n, limit: 0xffff, flags: 0x9300 },
    FS: { selector: 0, base: 0n, limit: 0xffff, flags: 0x9300 },
    GS: { selector: 0, base: 0n, limit: 0xffff, flags: 0x9300 },
    LDT: { selector: 0, base: 0n, limit: 0xffff, flags: 0x8200 },
    TR: { selector: 0, base: 0n, limit: 0xffff, flags: 0x8b00 },
  },
  control: {
    CR0: 0x60000010n, CR2: 0n, CR3: 0n, CR4: 0n, EFER: 0n,
    DR0: 0n, DR1: 0n, DR2: 0n, DR3: 0n, DR6: 0xffff0ff0n, DR7: 0x400n,
  },
  descriptorTables: { GDT: { base: 0n, limit: 0xffff }, IDT: { base: 0n, limit: 0xffff } },
};

export class FakeMachine implements MachineControl {
  readonly name: string | null;
  readonly uuid: string;
  state: RunState;
  readonly calls: string[] = [];
  private readonly cpuList: CpuInfo[];
  private readonly disks: BlockInfo[];
  private readonly regs: CpuRegisters;
  private readonly listeners: Array<(event: MachineEvent) => void> = [];
  private migration: MigrationInfo = { status: 'none' };
  private readonly capabilities: Record<string, boolean> = { events: false };
  private parameters: MigrationParameters = { downtimeLimitMs: 300, maxBandwidth: 0 };
  private readonly onQuit: () => void;

  constructor(options: FakeMachineOptions = {}) {
    this.name = options.name ?? null;
    this.uuid = options.uuid ?? '00000000-0000-0000-0000-000000000000';
    this.state = options.state ?? 'prelaunch';
    this.cpuList = options.cpus ?? [{ index: 0, threadId: process.pid }];
    this.disks = options.disks ?? [];
    this.regs = options.registers ?? RESET_REGISTERS;
    this.onQuit = options.onQuit ?? (() => {});
  }

  emit(event: MachineEvent): void {
    for (const listener of this.listeners) listener(event);
  }

  onEvent(listener: (event: MachineEvent) => void): void {
    this.listeners.push(listener);
  }

  runState(): RunState { return this.state; }
  cpus(): CpuInfo[] { return this.cpuList; }
  blockDevices(): BlockInfo[] { return this.disks; }

  registers(cpuIndex: number): Promise<CpuRegisters> {
    this.calls.push(`registers ${cpuIndex}`);
    return Promise.resolve(this.regs);
  }

  stop(): Promise<void> {
    this.calls.push('stop');
    if (this.state === 'running') {
      this.state = 'paused';
      this.emit({ event: 'STOP' });
    }
    return Promise.resolve();
  }

  cont(): Promise<void> {
    this.calls.push('cont');
    if (this.state === 'inmigrate') return Promise.reject(new MonitorError("Migration is not supported in state 'inmigrate'"));
    if (this.state !== 'running') {
      this.state = 'running';
      this.emit({ event: 'RESUME' });
    }
    return Promise.resolve();
  }

  systemReset(): Promise<void> {
    this.calls.push('system_reset');
    this.emit({ event: 'RESET', data: { guest: false, reason: 'host-qmp-system-reset' } });
    return Promise.resolve();
  }

  systemPowerdown(): void {
    this.calls.push('system_powerdown');
    this.emit({ event: 'POWERDOWN' });
  }

  systemRebootByPowerButton(): void {
    this.calls.push('__org.tsvmm_system_reboot');
    this.emit({ event: 'POWERDOWN' });
  }

  quit(): void {
    this.calls.push('quit');
    this.emit({ event: 'SHUTDOWN', data: { guest: false, reason: 'host-qmp-quit' } });
    this.onQuit();
  }

  /** Completes at once, raising QEMU's MIGRATION sequence; the source ends in postmigrate. */
  migrate(uri: string, options: MigrateOptions = {}): Promise<void> {
    this.calls.push(`migrate ${uri}${options.block ? ' (block)' : ''}`);
    for (const status of ['setup', 'active', 'completed'] as const) this.emit({ event: 'MIGRATION', data: { status } });
    if (this.state === 'running') this.emit({ event: 'STOP' });
    this.state = 'postmigrate';
    this.migration = {
      status: 'completed', setupTimeMs: 1, downtimeMs: 2, totalTimeMs: 40,
      ram: {
        transferred: 4096, remaining: 0, total: 128 << 20, duplicate: 32000, normal: 1, normalBytes: 4096,
        dirtySyncCount: 2, mbps: 1.5, pagesPerSecond: 100, dirtyPagesRate: 0, pageSize: 4096, multifdBytes: 0,
        postcopyRequests: 0, precopyBytes: 4000, downtimeBytes: 96,
      },
    };
    return Promise.resolve();
  }

  migrateIncoming(uri: string): Promise<void> {
    this.calls.push(`migrate-incoming ${uri}`);
    return Promise.reject(new MonitorError("'-incoming' was not specified on the command line"));
  }

  migrationInfo(): MigrationInfo { return this.migration; }
  setMigrationInfo(info: MigrationInfo): void { this.migration = info; }

  migrateCancel(): void { this.calls.push('migrate_cancel'); }

  migrationCapabilities(): Record<string, boolean> { return { ...this.capabilities }; }

  setMigrationCapability(name: string, state: boolean): void {
    this.calls.push(`capability ${name}=${state}`);
    if (name !== 'events') throw new MonitorError(`tsvmm does not support the migration capability '${name}'`);
    this.capabilities[name] = state;
  }

  migrationParameters(): MigrationParameters { return { ...this.parameters }; }

  setMigrationParameters(changes: Partial<MigrationParameters>): void {
    this.calls.push(`parameters ${JSON.stringify(changes)}`);
    this.parameters = { ...this.parameters, ...changes };
  }
}
