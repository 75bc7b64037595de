// `tsvmm run`: build a machine from the command line and run it to its end.
import { constants, freemem, totalmem } from 'node:os';
import { existsSync, writeSync } from 'node:fs';
import { resolve } from 'node:path';
import { InputError } from '../errors.ts';
import { detectVirtualization } from '../kvm/index.ts';
import { GUEST_PANIC_STATUS, parseCpuModel, PVM_KERNEL_PARAMETERS, type CpuModel } from '../vcpu/index.ts';
import { DEFAULT_MEMORY, MIN_MEMORY, type MachineConfig } from '../machine/config.ts';
import { VmController, type GuestEndAction, type GuestEndActions } from '../control/vm-controller.ts';
import { parseQmpEndpoint } from '../qmp/endpoint.ts';
import { parseSerialSpec, SerialSocket } from './serial-socket.ts';
import { QmpMonitor } from '../qmp/monitor.ts';
import { markTime } from '../machine/startup-timing.ts';
import { defaultLinuxGuest } from './guest.ts';
import { EXIT_FAILURE } from './errors.ts';
import { DEFAULT_SHUTDOWN_TIMEOUT_S, ShutdownPolicy } from './shutdown.ts';
import { TerminalConsole } from './terminal.ts';
import { formatSize, parseSize } from './size.ts';
import { isPlatformDevice, platformConfigFromOptions } from './platform-options.ts';
import { virtioConfigFromOptions, type VirtioOptions } from './virtio-options.ts';
import { startUserNetworks } from '../network/passt.ts';

export interface RunOptions extends VirtioOptions {
  flat?: string;
  kernel?: string;
  initrd?: string;
  append?: string;
  pit?: string;
  systemMap?: string;
  irqchip?: boolean;
  mem?: string;
  cpus?: string;
  smp?: string;
  cpu?: string;
  trace?: string[];
  /** Commander's --no-ioeventfd / --no-irqfd. */
  ioeventfd?: boolean;
  irqfd?: boolean;
  /** Seconds the guest has to power off after SIGTERM presses its power button. */
  shutdownTimeout?: string;
  /** What a guest reboot, power-off and panic (pvpanic) do: exit (default) or restart. */
  reboot?: string;
  poweroff?: string;
  panic?: string;
  /** `--fw-cfg` files (repeatable). */
  fwCfg?: string[];
  /** QMP monitors (repeatable). */
  qmp?: string[];
  /** -S: start paused. */
  paused?: boolean;
  name?: string;
  uuid?: string;
  incoming?: string;
  restore?: string;
  /** --serial unix:PATH,server=on,wait=off: the console on a socket instead of the terminal. */
  serial?: string;
}

/**
 * What tsvmm puts on every kernel command line before the user's -p: the
 * console on COM1, reboot through the keyboard controller (which tsvmm turns
 * into an exit), and an i8042 probe that does not wait for absent hardware.
 */
export const BASE_CMDLINE = 'console=ttyS0 reboot=k panic=-1 i8042.direct=1 i8042.dumbkbd=1 i8042.nopnp=1 i8042.noaux=1';

const TRACE_KINDS = ['exits'];

/**
 * Every `run` option that takes a value, by its attribute and its flag. An
 * empty value (a script's unset variable) is a mistake, never "not given":
 * `--flat ''` must not boot the default guest.
 */
const VALUE_OPTIONS: [keyof RunOptions, string][] = [
  ['kernel', '--kernel'], ['initrd', '--initrd'], ['append', '--append'], ['flat', '--flat'], ['systemMap', '--system-map'],
  ['pit', '--pit'], ['mem', '--mem'], ['cpus', '--cpus'], ['smp', '--smp'], ['cpu', '--cpu'], ['trace', '--trace'], ['disk', '--disk'], ['net', '--net'], ['device', '--device'],
  ['virtioTransport', '--virtio-transport'], ['console', '--console'], ['shutdownTimeout', '--shutdown-timeout'], ['reboot', '--reboot'], ['poweroff', '--poweroff'], ['panic', '--panic'], ['fwCfg', '--fw-cfg'],
  ['qmp', '--qmp'], ['serial', '--serial'], ['name', '--name'], ['uuid', '--uuid'], ['incoming', '--incoming'], ['restore', '--restore'],
];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** --incoming URI or --restore FILE (a file: URI): where the VM's state comes from, if anywhere. */
export function incomingUri(options: Pick<RunOptions, 'incoming' | 'restore'>): string | null {
  if (options.incoming !== undefined && options.restore !== undefined) throw new InputError('give either --incoming or --restore, not both');
  if (options.restore !== undefined) {
    if (!existsSync(options.restore)) throw new InputError(`--restore ${options.restore}: no such file`);
    return `file:${resolve(options.restore)}`;
  }
  return options.incoming ?? null;
}

/**
 * Checks what can be checked before anything is built or started: empty
 * values, and options that belong to a kernel given without one.
 */
export function checkRunOptions(options: RunOptions): void {
  for (const [key, flag] of VALUE_OPTIONS) {
    const value = options[key];
    const values = Array.isArray(value) ? value : [value];
    if (values.some((v) => v === '')) throw new InputError(`${flag}: empty value`);
  }
  if (options.flat !== undefined && options.kernel !== undefined) throw new InputError('give either --flat or --kernel, not both');
  // Without -k, tsvmm boots the default guest with its own initrd and
  // System.map: the user's would be dropped without a word.
  for (const [key, flag] of [['initrd', '--initrd'], ['systemMap', '--system-map']] as const) {
    if (options[key] !== undefined && options.kernel === undefined) throw new InputError(`${flag} needs --kernel`);
  }
  if (options.append !== undefined && options.flat !== undefined) throw new InputError('--append needs --kernel (a flat guest has no command line)');
  if (options.uuid !== undefined && !UUID.test(options.uuid)) throw new InputError(`--uuid ${options.uuid}: expected a UUID like 5a1c2f3e-0b7d-4c4e-9f21-6a2b8d0c1e33`);
}

/**
 * --reboot, --poweroff, --panic exit|restart: whether the guest's reboot
 * (QEMU's -no-reboot), power-off or panic ends tsvmm, or boots the guest
 * again (libvirt's on_reboot, on_poweroff, on_crash).
 */
export function parseGuestEndActions(options: Pick<RunOptions, 'reboot' | 'poweroff' | 'panic'>): GuestEndActions {
  const parse = (flag: string, text: string | undefined, status: string): GuestEndAction => {
    if (text === undefined || text === 'exit' || text === 'restart') return text ?? 'exit';
    throw new InputError(`${flag} ${text}: expected "exit" (tsvmm ends, ${status}) or "restart" (the guest boots again)`);
  };
  return {
    reboot: parse('--reboot', options.reboot, 'status 0'),
    poweroff: parse('--poweroff', options.poweroff, 'status 0'),
    panic: parse('--panic', options.panic, `status ${GUEST_PANIC_STATUS}`),
  };
}

/** --shutdown-timeout SECONDS: how long a guest may take to power off after SIGTERM. */
export function parseShutdownTimeout(text: string | undefined): number {
  if (text === undefined) return DEFAULT_SHUTDOWN_TIMEOUT_S * 1000;
  const seconds = Number(text);
  if (!/^\d+(\.\d+)?$/.test(text) || !(seconds > 0) || seconds > 86400) throw new InputError(`--shutdown-timeout ${text}: expected seconds, more than 0 and at most 86400`);
  return seconds * 1000;
}

/** --cpu MODEL[,+feature|-feature...] (src/vcpu/cpu-model.ts). */
function parseCpu(spec: string): CpuModel {
  const model = parseCpuModel(spec);
  if (typeof model === 'string') throw new InputError(`--cpu ${spec}: ${model}`);
  return model;
}

/** -c/--cpus N, or QEMU's --smp N / --smp cpus=N. */
export function parseCpus(options: Pick<RunOptions, 'cpus' | 'smp'>): number {
  if (options.cpus !== undefined && options.smp !== undefined) throw new InputError('give either --cpus or --smp, not both');
  const flag = options.smp !== undefined ? '--smp' : '--cpus';
  const text = options.smp !== undefined ? options.smp.replace(/^cpus=/, '') : options.cpus;
  if (text === undefined) return 1;
  if (!/^\d+$/.test(text) || Number(text) < 1) throw new InputError(`${flag} ${options.smp ?? text}: expected a number of vCPUs, 1 or more`);
  return Number(text);
}

export function parseMemory(text: string | undefined): number {
  if (text === undefined) return DEFAULT_MEMORY;
  const bytes = parseSize(text);
  if (bytes === null) throw new InputError(`--mem ${text}: not a size (examples: 256M, 1G, 512 = MiB)`);
  if (bytes < MIN_MEMORY) throw new InputError(`--mem ${text}: a guest needs at least ${formatSize(MIN_MEMORY)}`);
  if (bytes % 4096 !== 0) throw new InputError(`--mem ${text}: must be a whole number of 4 KiB pages`);
  if (bytes > totalmem()) throw new InputError(`--mem ${text}: more than this host's ${formatSize(totalmem())} of RAM`);
  return bytes;
}

export function configFromOptions(options: RunOptions): MachineConfig {
  checkRunOptions(options);
  if (options.flat === undefined && options.kernel === undefined) throw new InputError('no guest given (use -k KERNEL or --flat FILE; with neither, tsvmm run boots the default guest)');
  if (options.pit !== undefined && options.pit !== 'tsvmm' && options.pit !== 'kernel' && options.pit !== 'off') {
    throw new InputError(`--pit ${options.pit}: expected "tsvmm" (the TypeScript i8254), "kernel" (KVM's) or "off" (none)`);
  }
  for (const kind of options.trace ?? []) {
    if (!TRACE_KINDS.includes(kind)) throw new InputError(`--trace ${kind}: unknown (known: ${TRACE_KINDS.join(', ')})`);
  }
  const common = {
    memoryBytes: parseMemory(options.mem),
    cpus: parseCpus(options),
    ...(options.cpu !== undefined ? { cpu: parseCpu(options.cpu) } : {}),
    traceExits: (options.trace ?? []).includes('exits'),
    pit: (options.pit ?? 'tsvmm') as 'tsvmm' | 'kernel' | 'off',
    ...(options.irqchip ? { irqchip: true } : {}),
    ...(options.ioeventfd === false ? { ioeventfd: false } : {}),
    ...(options.irqfd === false ? { irqfd: false } : {}),
    // --device names a virtio device or one of the PC's own (isa-debug-exit, pc-testdev).
    ...platformConfigFromOptions((options.device ?? []).filter(isPlatformDevice), options.fwCfg),
    ...virtioConfigFromOptions({ ...options, device: (options.device ?? []).filter((spec) => !isPlatformDevice(spec)) }),
  };
  if (options.kernel) {
    // On PVM, CPUID cannot hide every feature the emulator fails on: tell Linux too.
    const base = detectVirtualization().kind === 'pvm' ? `${BASE_CMDLINE} ${PVM_KERNEL_PARAMETERS}` : BASE_CMDLINE;
    const cmdline = options.append ? `${base} ${options.append}` : base;
    return {
      ...common,
      linux: {
        kernel: options.kernel, cmdline,
        // A multiboot kernel gets only these, after its file name (as under QEMU).
        ...(options.append ? { args: options.append } : {}),
        ...(options.initrd !== undefined ? { initrd: options.initrd } : {}),
        ...(options.systemMap !== undefined ? { systemMap: options.systemMap } : {}),
      },
    };
  }
  return { ...common, flat: { path: options.flat! } };
}

/** Runs the guest; returns the process exit status. */
export async function runCommand(options: RunOptions): Promise<number> {
  checkRunOptions(options);
  if (options.flat === undefined && options.kernel === undefined) {
    // The default guest: Linux from guests/default, built on first use.
    const guest = await defaultLinuxGuest();
    options = { ...options, kernel: guest.kernel, initrd: guest.initrd, systemMap: guest.systemMap };
  }
  let config = configFromOptions(options);
  const shutdownTimeoutMs = parseShutdownTimeout(options.shutdownTimeout);
  const actions = parseGuestEndActions(options);
  const incoming = incomingUri(options);
  const endpoints = (options.qmp ?? []).map(parseQmpEndpoint);
  markTime('create-vm');
  const say = (line: string) => writeSync(2, `\r\n${line}\r\n`);
  // --net user: a passt per interface, for the process's lifetime (resets and reboots keep it).
  const userNetworks = startUserNetworks(config, (line) => writeSync(2, `tsvmm: ${line}\n`));
  config = userNetworks.config;
  // The console on a socket (a VM in the background): what clients type goes to the guest.
  let controllerForInput: VmController | null = null;
  const serial = options.serial !== undefined
    ? await SerialSocket.listen(parseSerialSpec(options.serial), (bytes) => controllerForInput?.current.sendInput(bytes))
    : null;
  if (serial) config = { ...config, consoleFd: serial.consoleFd };
  let controller: VmController;
  try {
    controller = new VmController(config, {
      name: options.name ?? null, uuid: options.uuid ?? null, paused: options.paused ?? false, incoming, actions, say,
    });
  } catch (e) {
    // A machine that cannot be built (a TAP that cannot join its bridge, a locked disk) ends tsvmm: the console's listening socket must not keep it alive.
    userNetworks.stop();
    await serial?.close();
    throw e;
  }
  controllerForInput = controller;
  for (const warning of controller.current.warnings) writeSync(2, `tsvmm: warning: ${warning}\n`);
  if (config.memoryBytes > freemem() + 0) {
    // MAP_NORESERVE lets this start; say so, since the guest may not touch it all.
    writeSync(2, `tsvmm: note: --mem ${formatSize(config.memoryBytes)} is more than the ${formatSize(freemem())} free on this host\n`);
  }
  if (config.linux && !incoming && detectVirtualization().kind === 'pvm') {
    writeSync(2, 'tsvmm: note: this host is PVM (no VT-x/AMD-V): guest kernel code runs under KVM\'s instruction emulator (~1 µs per instruction), so a kernel boots in minutes, and a stock kernel stops at its first unemulated instruction; the default guest carries the changes that avoid them (guests/)\n');
  }
  // SIGTERM asks the guest to power off; SIGINT, or a SIGTERM it ignores, stops it (src/cli/shutdown.ts).
  const shutdown = new ShutdownPolicy({
    pressPowerButton: () => controller.current.pressPowerButton(),
    powerDownToEnd: () => controller.powerDownToEnd(),
    stop: () => controller.stopForSignal(),
    // \r: the terminal may be in raw mode.
    say,
  }, shutdownTimeoutMs);
  const onSignal = (signal: NodeJS.Signals) => shutdown.onSignal(signal);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let quit = false;
  const terminal = new TerminalConsole({
    sendInput: (bytes) => controller.current.sendInput(bytes),
    quit: () => {
      quit = true;
      controller.stopForSignal();
    },
    powerButton: () => shutdown.onPowerKey(),
  });
  let monitors: QmpMonitor | null = null;
  try {
    if (endpoints.length) {
      monitors = await QmpMonitor.listen(controller, endpoints);
      // wait=on (QEMU's default): the VM starts once a client connected.
      await monitors.waitForClients((where) => writeSync(2, `tsvmm: waiting for a QMP client on ${where}\n`));
    }
    if (!serial) terminal.start();
    markTime('run');
    const ended = await controller.run();
    const result = ended.result;
    shutdown.dispose();
    terminal.stop();
    if (result.traceSummary) writeSync(config.traceFd ?? 2, `${result.traceSummary}\n`);
    if (ended.quit) return 0;
    if (controller.runState() === 'postmigrate') {
      writeSync(2, 'tsvmm: the VM migrated away\n');
      return 0;
    }
    // With --reboot restart a reset is not an end: one that met a stop request (a signal, Ctrl-A x) ends as that stop.
    const stopped = result.stop.cause === 'stopped' || (actions.reboot === 'restart' && result.stop.cause === 'reboot');
    if (stopped) {
      if (quit) {
        writeSync(2, '\ntsvmm: quit (Ctrl-A x)\n');
        return 0;
      }
      writeSync(2, 'tsvmm: stopped\n');
      // Ended by a signal, tsvmm's status says which, as a shell's would (128 + its number).
      return shutdown.stoppedBy ? 128 + constants.signals[shutdown.stoppedBy] : EXIT_FAILURE;
    }
    if (result.stop.message) writeSync(2, `tsvmm: ${result.stop.message}\n`);
    return result.stop.status;
  } finally {
    shutdown.dispose();
    terminal.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await monitors?.close();
    controller.current.close();
    userNetworks.stop();
    await serial?.close();
  }
}
