// The machine under control: what `tsvmm run` drives and what the QMP
// monitor talks to (src/qmp/target.ts). It owns the current Machine and its
// run state, as QEMU's runstate.c does: it starts it (paused with -S, or from
// an incoming migration or a snapshot), pauses and resumes it, resets it by
// building it again from its images, raises QMP's events, and hands
// migrations to migration.ts.
import { InputError } from '../errors.ts';
import { Machine, type MachineResult } from '../machine/machine.ts';
import type { MachineConfig } from '../machine/config.ts';
import { imageInfo, probeFormat } from '../storage/image-info.ts';
import {
  MonitorError, type BlockInfo, type CpuInfo, type CpuRegisters, type MachineControl, type MachineEvent,
  type MigrateOptions, type MigrationInfo, type MigrationParameters, type RunState,
} from '../qmp/target.ts';
import { cpuRegisters } from './registers.ts';
import { MIGRATION_CAPABILITIES } from '../qmp/commands.ts';
import { IncomingMigration, OutgoingMigration, DEFAULT_MIGRATION_PARAMETERS } from './migration.ts';

/** QEMU's ShutdownCause for each way a guest ends itself. */
const GUEST_SHUTDOWN_REASONS: Partial<Record<MachineResult['stop']['cause'], 'guest-shutdown' | 'guest-reset' | 'guest-panic'>> = {
  poweroff: 'guest-shutdown', reboot: 'guest-reset', panic: 'guest-panic',
};

/** How a VM that was quit before it ever ran (waiting for a migration) ended. */
const QUIT_BEFORE_START: MachineResult = {
  stop: { cause: 'stopped', status: 0 }, exits: 0, runNs: 0, unclaimed: { pio: 0, mmio: 0 }, reports: [], virtio: [],
};

/** The migration capabilities tsvmm acts on: MIGRATION events, and block (the disks in the stream). */
const SUPPORTED_CAPABILITIES = new Set(['events', 'block']);

/** What a guest's own ending does: end tsvmm, or boot the guest again (libvirt's destroy and restart). */
export type GuestEndAction = 'exit' | 'restart';

/** The action for each way a guest ends itself (`--reboot`, `--poweroff`, `--panic`). */
export interface GuestEndActions {
  reboot: GuestEndAction;
  poweroff: GuestEndAction;
  /** A panic the guest reports through pvpanic. */
  panic: GuestEndAction;
}

/** Each ending as the user reads it, and the flag that chose its action. */
const GUEST_ENDINGS = {
  reboot: { words: 'rebooted', flag: '--reboot' },
  poweroff: { words: 'powered off', flag: '--poweroff' },
  panic: { words: 'panicked', flag: '--panic' },
} as const;

export interface ControllerOptions {
  name?: string | null;
  uuid?: string | null;
  /** -S: the vCPUs wait for `cont`. */
  paused?: boolean;
  /** --incoming URI / --restore FILE: the machine's state comes from there, not from its images. */
  incoming?: string | null;
  /** What the guest's reboot, power-off and panic do (default: each ends tsvmm, as QEMU's -no-reboot). */
  actions?: Partial<GuestEndActions>;
  /** A line for the user (stderr), e.g. a failed migration the guest survived. */
  say?: (line: string) => void;
}

/** How the VM ended: the last machine's result, and whether `quit` ended it. */
export interface ControllerResult {
  result: MachineResult;
  quit: boolean;
}

export class VmController implements MachineControl {
  readonly name: string | null;
  readonly uuid: string;
  private machine: Machine;
  private state: RunState;
  private readonly listeners: ((event: MachineEvent) => void)[] = [];
  /** Set while a system_reset waits for the machine to be built again: resolves its answer. */
  private resetDone: (() => void) | null = null;
  private quitRequested = false;
  /**
   * The host wants the VM to end (a signal stopped it, or SIGTERM pressed the
   * power button): a guest reboot or power-off that follows is not restarted.
   */
  private stopRequested = false;
  /** `__org.tsvmm_system_reboot` pressed the power button: the power-off that follows boots the guest again. */
  private rebootAtPoweroff = false;
  private outgoing: OutgoingMigration | null = null;
  /** With --incoming defer: hands over migrate-incoming's URI. */
  private deferredIncoming: ((uri: string) => void) | null = null;
  private incomingStarted = false;
  /** Ends a wait for an incoming migration (quit). */
  private readonly incomingAbort = new AbortController();
  private readonly capabilities: Record<string, boolean> = Object.fromEntries(MIGRATION_CAPABILITIES.map((c) => [c, false]));
  private parameters: MigrationParameters = { ...DEFAULT_MIGRATION_PARAMETERS };
  private readonly say: (line: string) => void;

  constructor(readonly config: MachineConfig, private readonly options: ControllerOptions = {}) {
    this.name = options.name ?? null;
    this.uuid = options.uuid ?? '00000000-0000-0000-0000-000000000000';
    this.say = options.say ?? (() => {});
    this.machine = Machine.create(config, { restoring: Boolean(options.incoming) });
    this.state = options.incoming ? 'inmigrate' : options.paused ? 'prelaunch' : 'running';
  }

  get current(): Machine {
    return this.machine;
  }

  /**
   * Runs the VM to its end: through an incoming migration first when there
   * is one, across resets, until the guest powers off, fails, or is quit.
   */
  async run(): Promise<ControllerResult> {
    if (this.options.incoming) {
      try {
        // -incoming defer (libvirt's way): the URI comes later, in QMP's migrate-incoming.
        const uri = this.options.incoming === 'defer'
          ? await new Promise<string>((resolve, reject) => {
            this.deferredIncoming = resolve;
            this.incomingAbort.signal.addEventListener('abort', () => reject(new Error('quit')), { once: true });
          })
          : this.options.incoming;
        this.incomingStarted = true;
        await new IncomingMigration(this.machine, this.config, (status) => this.migrationEvent(status)).receive(uri, this.incomingAbort.signal);
      } catch (e) {
        if (this.quitRequested) return { result: QUIT_BEFORE_START, quit: true };
        throw e instanceof InputError ? e : new InputError(`incoming migration failed: ${(e as Error).message}`);
      }
      if (this.quitRequested) return { result: QUIT_BEFORE_START, quit: true };
      this.state = this.options.paused ? 'paused' : 'running';
    }
    try {
      return await this.runMachines();
    } finally {
      // A reset asked for as the VM ended is answered all the same.
      this.settleReset();
    }
  }

  private async runMachines(): Promise<ControllerResult> {
    for (;;) {
      const result = await this.machine.run({ paused: this.state === 'prelaunch' || this.state === 'paused' });
      // A quit that came with the reset wins: the VM ends.
      if (this.resetDone && !this.quitRequested && result.stop.cause === 'stopped') {
        this.rebuild();
        this.emit({ event: 'RESET', data: { guest: false, reason: 'host-qmp-system-reset' } });
        this.settleReset();
        continue;
      }
      const { cause } = result.stop;
      const asked = cause === 'poweroff' && this.rebootAtPoweroff;
      this.rebootAtPoweroff = false;
      const restart = (cause === 'reboot' || cause === 'poweroff' || cause === 'panic')
        && (asked || this.options.actions?.[cause] === 'restart') && !this.quitRequested && !this.stopRequested;
      if (cause === 'reboot') this.emit({ event: 'RESET', data: { guest: true, reason: 'guest-reset' } });
      // QEMU's event, with what the VM does next: run again, or power off.
      if (cause === 'panic') this.emit({ event: 'GUEST_PANICKED', data: { action: restart ? 'run' : 'poweroff' } });
      if (restart) {
        const ending = GUEST_ENDINGS[cause];
        this.say(`tsvmm: guest ${ending.words}: starting it again (${asked ? 'a reboot through the power button' : `${ending.flag} restart`})`);
        if (cause !== 'reboot') this.emit({ event: 'RESET', data: { guest: true, reason: cause === 'panic' ? 'guest-panic' : 'guest-shutdown' } });
        this.rebuild();
        continue;
      }
      this.finish(result);
      return { result, quit: this.quitRequested };
    }
  }

  /** A fresh machine from the same configuration, as after a power cycle (disks keep what was written). */
  private rebuild(): void {
    this.machine.close();
    this.machine = Machine.create(this.config);
    // Paused, or not started yet (-S), it stays so, as QEMU's does.
    if (this.state !== 'paused' && this.state !== 'prelaunch') this.state = 'running';
  }

  private settleReset(): void {
    const done = this.resetDone;
    this.resetDone = null;
    done?.();
  }

  private finish(result: MachineResult): void {
    const { cause } = result.stop;
    if (this.state === 'postmigrate') {
      // The guest lives on elsewhere: this end is only the process's.
      if (this.quitRequested) this.emit({ event: 'SHUTDOWN', data: { guest: false, reason: 'host-qmp-quit' } });
      return;
    }
    this.state = cause === 'poweroff' || cause === 'reboot' || cause === 'stopped' ? 'shutdown' : cause === 'panic' ? 'guest-panicked' : 'internal-error';
    const reason = this.quitRequested ? 'host-qmp-quit' : GUEST_SHUTDOWN_REASONS[cause] ?? (cause === 'stopped' ? 'host-signal' : 'host-error');
    this.emit({ event: 'SHUTDOWN', data: { guest: reason.startsWith('guest-'), reason } });
  }

  // ---- MachineControl ----------------------------------------------------

  runState(): RunState {
    return this.state;
  }

  cpus(): CpuInfo[] {
    return this.machine.vcpuThreadIds.map((threadId, index) => ({ index, threadId }));
  }

  async registers(cpuIndex: number): Promise<CpuRegisters> {
    const vcpu = this.machine.kvm.vcpus[cpuIndex];
    if (!vcpu) throw new MonitorError(`CPU ${cpuIndex} does not exist`);
    // KVM_GET_REGS would wait for a vCPU inside KVM_RUN (a halted guest: for ever): park it first.
    return this.whilePaused(() => cpuRegisters(vcpu));
  }

  blockDevices(): BlockInfo[] {
    const disks = (this.config.virtio ?? []).filter((d) => d.kind === 'blk');
    const planned = this.machine.virtio.devices.filter((d) => d.config.kind === 'blk');
    return disks.map((disk, i) => {
      const format = disk.format ?? probeFormat(disk.path);
      const capacitySectors = planned[i] ? new DataView(planned[i]!.info.config.buffer, planned[i]!.info.config.byteOffset).getBigUint64(0, true) : 0n;
      return {
        device: `virtio${i}`,
        qdev: `/machine/peripheral-anon/device[${i}]/virtio-backend`,
        file: disk.path,
        format,
        readOnly: disk.readOnly ?? false,
        virtualSize: Number(capacitySectors) * 512,
        // As the image's header names it (a qcow2 overlay's base), the way QEMU shows it.
        backingFile: imageInfo(disk.path, format)['backing-filename'] ?? null,
      };
    });
  }

  async stop(): Promise<void> {
    if (this.state === 'running') {
      await this.machine.pause();
      this.state = 'paused';
      this.emit({ event: 'STOP' });
    } else if (this.state === 'prelaunch' || this.state === 'inmigrate') {
      // QEMU: stop before the guest ever ran only cancels the automatic start.
      this.options.paused = true;
    }
  }

  async cont(): Promise<void> {
    if (this.state === 'running') return;
    if (this.state === 'inmigrate') {
      this.options.paused = false;
      return;
    }
    if (this.state === 'postmigrate') {
      // As QEMU: the VM may run here again after a migration (a snapshot), if its disks are still free.
      try {
        this.machine.lockImages();
      } catch (e) {
        throw new MonitorError(`the VM migrated away and its disks are in use: ${(e as Error).message}`);
      }
    }
    if (this.state === 'shutdown' || this.state === 'internal-error') throw new MonitorError(`Resetting the Virtual Machine is required (state ${this.state})`);
    if (this.state === 'finish-migrate') throw new MonitorError('Migration is not finished yet');
    await this.machine.resume();
    this.state = 'running';
    this.emit({ event: 'RESUME' });
  }

  systemReset(): Promise<void> {
    if (this.state === 'inmigrate' || this.state === 'finish-migrate' || this.state === 'postmigrate') {
      throw new MonitorError(`system_reset is not possible while the VM is ${this.state}`);
    }
    // Answered once the new machine is in place (QEMU's main loop, too, resets
    // before it takes the next command): what follows, a power button press
    // or a query, reaches the machine after the reset, and RESET comes first.
    const done = new Promise<void>((resolve) => {
      const earlier = this.resetDone;
      this.resetDone = () => {
        earlier?.();
        resolve();
      };
    });
    this.machine.stop();
    return done;
  }

  systemPowerdown(): void {
    if (!this.machine.pressPowerButton()) throw new MonitorError('this guest has no ACPI power button (a flat guest)');
    this.emit({ event: 'POWERDOWN' });
  }

  systemRebootByPowerButton(): void {
    this.systemPowerdown();
    this.rebootAtPoweroff = true;
  }

  quit(): void {
    this.quitRequested = true;
    // Still waiting for a migration or its URI: nothing runs yet, the wait just ends.
    if (this.state === 'inmigrate') {
      this.incomingAbort.abort(new Error('quit'));
    }
    this.outgoing?.cancel();
    this.machine.stop();
  }

  /** SIGINT or a guest that ignored its power button: the VM ends as stopped. */
  stopForSignal(): void {
    this.stopRequested = true;
    this.machine.stop();
  }

  /** SIGTERM's way to end the VM: the power button, and a power-off (or reboot) that follows ends it. */
  powerDownToEnd(): boolean {
    if (!this.machine.pressPowerButton()) return false;
    this.stopRequested = true;
    return true;
  }

  migrate(uri: string, options: MigrateOptions = {}): Promise<void> {
    if (this.outgoing?.active) throw new MonitorError('There\'s a migration process in progress');
    if (this.state !== 'running' && this.state !== 'paused') throw new MonitorError(`migrate: the VM is ${this.state}`);
    const wasRunning = this.state === 'running';
    const migration = new OutgoingMigration(this.machine, this.config, {
      parameters: this.parameters,
      block: options.block === true || this.capabilities.block === true,
      onStatus: (status) => this.migrationEvent(status),
      // Stop-and-copy: the run state QEMU shows while the last pages and the devices go out.
      onStopped: () => {
        this.state = 'finish-migrate';
        if (wasRunning) this.emit({ event: 'STOP' });
      },
    });
    this.outgoing = migration;
    // Started now, answered now: query-migrate follows it (QEMU's migrate returns at once too).
    void migration.run(uri).then((completed) => {
      if (completed) this.state = 'postmigrate';
      else this.migrationAbandoned(wasRunning);
    }, (e: unknown) => {
      this.migrationAbandoned(wasRunning);
      this.say(`tsvmm: migration to ${uri} failed: ${(e as Error).message}; the guest keeps ${wasRunning ? 'running' : 'paused'} here`);
    });
    return Promise.resolve();
  }

  /** A migration cancelled or failed: the VM is as it was before (the migration resumed the machine if it paused it). */
  private migrationAbandoned(wasRunning: boolean): void {
    if (this.state !== 'finish-migrate') return;
    this.state = wasRunning ? 'running' : 'paused';
    // Its STOP came with stop-and-copy: say the guest runs again.
    if (wasRunning) this.emit({ event: 'RESUME' });
  }

  migrateIncoming(uri: string): Promise<void> {
    if (this.options.incoming !== 'defer') return Promise.reject(new MonitorError("The incoming migration is disabled: start tsvmm with --incoming defer"));
    if (this.incomingStarted || !this.deferredIncoming) return Promise.reject(new MonitorError('The incoming migration has already been started'));
    this.deferredIncoming(uri);
    this.deferredIncoming = null;
    return Promise.resolve();
  }

  migrationInfo(): MigrationInfo {
    return this.outgoing ? this.outgoing.info() : { status: 'none' };
  }

  migrateCancel(): void {
    this.outgoing?.cancel();
  }

  migrationCapabilities(): Record<string, boolean> {
    return { ...this.capabilities };
  }

  setMigrationCapability(name: string, state: boolean): void {
    if (!(name in this.capabilities)) throw new MonitorError(`Invalid parameter '${name}'`);
    if (this.outgoing?.active) throw new MonitorError('There\'s a migration process in progress');
    if (state && !SUPPORTED_CAPABILITIES.has(name)) throw new MonitorError(`Migration capability '${name}' is not supported by tsvmm`);
    this.capabilities[name] = state;
  }

  migrationParameters(): MigrationParameters {
    return { ...this.parameters };
  }

  setMigrationParameters(changes: Partial<MigrationParameters>): void {
    if (changes.downtimeLimitMs !== undefined && !(changes.downtimeLimitMs >= 0 && changes.downtimeLimitMs <= 2000000)) {
      throw new MonitorError("Parameter 'downtime_limit' expects an integer in the range of 0 to 2000 seconds");
    }
    if (changes.maxBandwidth !== undefined && !(changes.maxBandwidth >= 0)) throw new MonitorError("Parameter 'max_bandwidth' expects a non-negative size");
    this.parameters = { ...this.parameters, ...changes };
  }

  onEvent(listener: (event: MachineEvent) => void): void {
    this.listeners.push(listener);
  }

  private emit(event: MachineEvent): void {
    for (const listener of this.listeners) listener(event);
  }

  private migrationEvent(status: MigrationInfo['status']): void {
    if (this.capabilities.events) this.emit({ event: 'MIGRATION', data: { status } });
  }

  private async whilePaused<T>(read: () => T): Promise<T> {
    const running = !this.machine.paused;
    if (running) await this.machine.pause();
    try {
      return read();
    } finally {
      if (running) await this.machine.resume();
    }
  }
}
