// The QMP commands tsvmm has, with QEMU 7.2's argument schemas and answer
// shapes (qapi/*.json: control, misc, run-state, machine, block-core,
// migration). Each command turns into calls on MachineControl; a
// MonitorError it throws becomes {"error":{"class","desc"}} in the session.
//
// qmp_capabilities is not here: it belongs to the session's negotiation
// (session.ts).

import { checkArguments, type ArgSchema } from './arguments.ts';
import { queryBlockEntry } from './block-info.ts';
import { runHmpCommand } from './hmp.ts';
import { MonitorError, type MachineControl, type MigrationInfo, type MigrationParameters } from './target.ts';
import { VERSION_INFO } from './version.ts';

export interface CommandContext {
  machine: MachineControl;
  /** Every command name the session accepts, for query-commands. */
  commandNames: readonly string[];
}

export interface QmpCommand {
  args: ArgSchema;
  run(context: CommandContext, args: Record<string, unknown>): unknown;
  /** Runs once the reply has reached the client's socket (quit: the process may end then). */
  afterReply?(context: CommandContext): void;
}

/** QEMU 7.2's MigrationCapability enum, in its order: query-migrate-capabilities lists all of them. */
export const MIGRATION_CAPABILITIES = [
  'xbzrle', 'rdma-pin-all', 'auto-converge', 'zero-blocks', 'compress', 'events', 'postcopy-ram', 'x-colo',
  'release-ram', 'block', 'return-path', 'pause-before-switchover', 'multifd', 'dirty-bitmaps',
  'postcopy-blocktime', 'late-block-activate', 'x-ignore-shared', 'validate-uuid', 'background-snapshot',
  'zero-copy-send', 'postcopy-preempt',
] as const;

/** The URI schemes QEMU's migrate knows (file: since QEMU 8.2); which of them work is the machine's business. */
const MIGRATION_SCHEMES = ['tcp:', 'unix:', 'exec:', 'fd:', 'rdma:', 'vsock:', 'file:'];

/** QEMU's MAX_MIGRATE_DOWNTIME (ms). */
const MAX_DOWNTIME_LIMIT_MS = 2000n * 1000n;

function checkMigrationUri(uri: string): void {
  if (!MIGRATION_SCHEMES.some((scheme) => uri.startsWith(scheme))) {
    throw new MonitorError("Parameter 'uri' expects a valid migration protocol");
  }
}

/** QEMU's MigrationInfo: {} before any migration, then only the members that apply. */
export function migrationInfoReply(info: MigrationInfo): Record<string, unknown> {
  if (info.status === 'none') return {};
  const reply: Record<string, unknown> = { status: info.status };
  if (info.setupTimeMs !== undefined) reply['setup-time'] = info.setupTimeMs;
  if (info.downtimeMs !== undefined) reply['downtime'] = info.downtimeMs;
  if (info.expectedDowntimeMs !== undefined) reply['expected-downtime'] = info.expectedDowntimeMs;
  if (info.totalTimeMs !== undefined) reply['total-time'] = info.totalTimeMs;
  if (info.ram !== undefined) {
    const ram = info.ram;
    reply['ram'] = {
      total: ram.total,
      'postcopy-requests': ram.postcopyRequests,
      'dirty-sync-count': ram.dirtySyncCount,
      'multifd-bytes': ram.multifdBytes,
      'pages-per-second': ram.pagesPerSecond,
      'downtime-bytes': ram.downtimeBytes,
      'page-size': ram.pageSize,
      remaining: ram.remaining,
      // tsvmm has no postcopy and no zero-copy send; QEMU's skipped is always 0.
      'postcopy-bytes': 0,
      mbps: ram.mbps,
      transferred: ram.transferred,
      'dirty-sync-missed-zero-copy': 0,
      'precopy-bytes': ram.precopyBytes,
      duplicate: ram.duplicate,
      'dirty-pages-rate': ram.dirtyPagesRate,
      skipped: 0,
      'normal-bytes': ram.normalBytes,
      normal: ram.normal,
    };
  }
  if (info.disk !== undefined) {
    // QEMU's block migration fills in these three of its MigrationStats; the rest are 0.
    const { transferred, remaining, total } = info.disk;
    reply['disk'] = {
      total, 'postcopy-requests': 0, 'dirty-sync-count': 0, 'multifd-bytes': 0, 'pages-per-second': 0, 'downtime-bytes': 0,
      'page-size': 0, remaining, 'postcopy-bytes': 0, mbps: 0, transferred, 'dirty-sync-missed-zero-copy': 0,
      'precopy-bytes': 0, duplicate: 0, 'dirty-pages-rate': 0, skipped: 0, 'normal-bytes': 0, normal: 0,
    };
  }
  if (info.errorDesc !== undefined) reply['error-desc'] = info.errorDesc;
  return reply;
}

const NO_ARGS: ArgSchema = {};

export const COMMANDS: Readonly<Record<string, QmpCommand>> = {
  'query-version': { args: NO_ARGS, run: () => VERSION_INFO },
  'query-commands': {
    args: NO_ARGS,
    run: ({ commandNames }) => commandNames.map((name) => ({ name })),
  },
  'query-status': {
    args: NO_ARGS,
    run: ({ machine }) => {
      const status = machine.runState();
      return { status, singlestep: false, running: status === 'running' };
    },
  },
  'query-kvm': { args: NO_ARGS, run: () => ({ enabled: true, present: true }) },
  'query-cpus-fast': {
    args: NO_ARGS,
    // QEMU 7.2 numbers -smp N as N cores of one socket.
    run: ({ machine }) => machine.cpus().map((cpu) => ({
      'thread-id': cpu.threadId,
      props: { 'core-id': cpu.index, 'thread-id': 0, 'socket-id': 0 },
      'qom-path': `/machine/unattached/device[${cpu.index}]`,
      'cpu-index': cpu.index,
      target: 'x86_64',
    })),
  },
  'query-block': { args: NO_ARGS, run: ({ machine }) => machine.blockDevices().map(queryBlockEntry) },
  'query-name': { args: NO_ARGS, run: ({ machine }) => (machine.name === null ? {} : { name: machine.name }) },
  'query-uuid': { args: NO_ARGS, run: ({ machine }) => ({ UUID: machine.uuid }) },
  stop: { args: NO_ARGS, run: async ({ machine }) => { await machine.stop(); return {}; } },
  cont: { args: NO_ARGS, run: async ({ machine }) => { await machine.cont(); return {}; } },
  system_reset: { args: NO_ARGS, run: async ({ machine }) => { await machine.systemReset(); return {}; } },
  system_powerdown: { args: NO_ARGS, run: ({ machine }) => { machine.systemPowerdown(); return {}; } },
  // tsvmm's own, named as QAPI names a downstream extension (__RFQDN_): `tsvmm reboot` (libvirt's --mode acpi).
  '__org.tsvmm_system_reboot': { args: NO_ARGS, run: ({ machine }) => { machine.systemRebootByPowerButton(); return {}; } },
  quit: {
    args: NO_ARGS,
    run: () => ({}),
    afterReply: ({ machine }) => machine.quit(),
  },
  'human-monitor-command': {
    args: { 'command-line': 'str', '*cpu-index': 'int' },
    run: ({ machine }, args) => {
      const cpus = machine.cpus().map((cpu) => cpu.index);
      const currentCpu = args['cpu-index'] === undefined ? (cpus[0] ?? 0) : (args['cpu-index'] as number);
      if (!cpus.includes(currentCpu)) throw new MonitorError("Parameter 'cpu-index' expects a CPU number");
      return runHmpCommand(machine, args['command-line'] as string, currentCpu);
    },
  },
  migrate: {
    args: { uri: 'str', '*blk': 'bool', '*inc': 'bool', '*detach': 'bool', '*resume': 'bool' },
    run: async ({ machine }, args) => {
      const uri = args['uri'] as string;
      checkMigrationUri(uri);
      if (args['inc'] === true) {
        throw new MonitorError('tsvmm has no incremental block migration (inc): use blk to copy the whole disks');
      }
      if (args['resume'] === true) throw new MonitorError('tsvmm has no postcopy migration to resume');
      // blk: the disks travel in the stream, as the block capability asks too (the machine looks at that).
      await machine.migrate(uri, args['blk'] === true ? { block: true } : {});
      return {};
    },
  },
  'migrate-incoming': {
    args: { uri: 'str' },
    run: async ({ machine }, args) => {
      const uri = args['uri'] as string;
      checkMigrationUri(uri);
      await machine.migrateIncoming(uri);
      return {};
    },
  },
  'query-migrate': { args: NO_ARGS, run: ({ machine }) => migrationInfoReply(machine.migrationInfo()) },
  migrate_cancel: { args: NO_ARGS, run: ({ machine }) => { machine.migrateCancel(); return {}; } },
  'migrate-set-capabilities': {
    args: {
      capabilities: { list: { struct: { capability: { enum: MIGRATION_CAPABILITIES }, state: 'bool' } } },
    },
    run: ({ machine }, args) => {
      for (const entry of args['capabilities'] as Array<{ capability: string; state: boolean }>) {
        machine.setMigrationCapability(entry.capability, entry.state);
      }
      return {};
    },
  },
  'query-migrate-capabilities': {
    args: NO_ARGS,
    run: ({ machine }) => {
      const states = machine.migrationCapabilities();
      return MIGRATION_CAPABILITIES.map((capability) => ({ state: states[capability] ?? false, capability }));
    },
  },
  'migrate-set-parameters': {
    // tsvmm's MigrateSetParameters: the two members it honours. QEMU's others
    // are unknown here, so they are refused as unexpected.
    args: { '*downtime-limit': 'uint64', '*max-bandwidth': 'uint64' },
    run: ({ machine }, args) => {
      const changes: Partial<MigrationParameters> = {};
      const downtime = args['downtime-limit'] as bigint | undefined;
      if (downtime !== undefined) {
        if (downtime > MAX_DOWNTIME_LIMIT_MS) {
          throw new MonitorError("Parameter 'downtime_limit' expects an integer in the range of 0 to (2000 * 1000) ms");
        }
        changes.downtimeLimitMs = Number(downtime);
      }
      const bandwidth = args['max-bandwidth'] as bigint | undefined;
      // Above 2^53 is beyond any link: it stays a (rounded) very large limit.
      if (bandwidth !== undefined) changes.maxBandwidth = Number(bandwidth);
      machine.setMigrationParameters(changes);
      return {};
    },
  },
  'query-migrate-parameters': {
    args: NO_ARGS,
    run: ({ machine }) => {
      const parameters = machine.migrationParameters();
      return { 'downtime-limit': parameters.downtimeLimitMs, 'max-bandwidth': parameters.maxBandwidth };
    },
  },
};

/** Checks the arguments and runs the command; throws MonitorError. */
export async function runCommand(name: string, rawArgs: Record<string, unknown>, context: CommandContext): Promise<unknown> {
  const command = COMMANDS[name]!;
  return await command.run(context, checkArguments(rawArgs, command.args));
}
