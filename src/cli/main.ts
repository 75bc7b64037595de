// The tsvmm command line. Every failure a user can cause ends as one line on
// stderr and exit status 2; a VM or guest failure as one line and status 4
// (src/cli/errors.ts).
//
// Each command's module is imported when that command runs, and the img,
// domain and network commands are only declared when the command line may name
// one: `tsvmm run` loads the machine and nothing of the storage tools or the
// libvirt-style domains (start-up time, docs/architecture.md).
import { Command, CommanderError, Option } from 'commander';
import { writeSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { InputError } from '../errors.ts';
import { PROJECT_ROOT } from '../project-root.ts';
import { EXIT_FAILURE, EXIT_USAGE, exitStatusOf } from './errors.ts';
import type { RunOptions } from './run.ts';

/** `tsvmm bench`'s options, as commander hands them over (bench/command.ts takes them). */
export interface BenchOptions {
  runs: string;
  iterations: string;
  bytes: string;
  json?: string;
  chart?: string;
  markdown?: string;
  list?: boolean;
}

/** What bench/command.ts exports. */
interface BenchModule {
  benchCommand: (suites: string[], options: BenchOptions) => Promise<number>;
  listSuites: () => number;
}

/**
 * `tsvmm bench` runs the suites in bench/ of a checkout (dist/bench once
 * compiled). Product code does not import bench/: the command finds it at run
 * time, as git finds an external subcommand.
 */
async function benchModule(): Promise<BenchModule> {
  const compiled = !import.meta.url.endsWith('.ts');
  const path = compiled ? join(PROJECT_ROOT, 'dist', 'bench', 'command.js') : join(PROJECT_ROOT, 'bench', 'command.ts');
  try {
    return await import(pathToFileURL(path).href) as BenchModule;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND') throw new InputError('tsvmm bench needs the bench/ folder of a tsvmm source checkout');
    throw e;
  }
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, ...value.split(',')];
}

function repeat(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** Whether the command line starts with virsh's -c URI (remote.ts's takeConnectOption takes it). */
function namesConnection(argv: readonly string[]): boolean {
  const first = argv[0] ?? '';
  return first === '-c' || first === '--connect' || first.startsWith('--connect=');
}

/** The commands this file declares; any other first word may be an img, domain or network command. */
const OWN_COMMANDS = ['run', 'snapshot', 'check', 'guest', 'bench'];

async function program(setStatus: (status: number) => void, argv: string[]): Promise<Command> {
  const cli = new Command('tsvmm')
    .description('A small, fast, readable KVM hypervisor in TypeScript')
    .version('0.1.0')
    .usage('[-c URI] <command> [options]')
    .showSuggestionAfterError()
    .configureOutput({ writeErr: (text) => writeSync(2, text) })
    .exitOverride();

  cli.command('run')
    .description('run a guest')
    .option('-k, --kernel <file>', 'a Linux kernel: bzImage, or vmlinux (PVH entry when it has one)')
    .option('-i, --initrd <file>', 'an initramfs for the kernel')
    .option('-p, --append <cmdline>', 'kernel command line, after tsvmm\'s console and reboot settings (a multiboot kernel gets it alone, after its file name)')
    .option('--flat <file>', 'a flat real-mode binary, loaded at 0x10000 and started at 1000:0000')
    .option('--system-map <file>', 'kernel symbols, to name where a kernel stopped (default: a System.map beside the kernel)')
    .option('--irqchip', 'give a flat guest the in-kernel PIC/IOAPIC/LAPIC (Linux guests always have them)')
    .option('--pit <who>', 'i8254 PIT emulation: tsvmm (TypeScript, default), kernel (KVM_CREATE_PIT2) or off (no PIT, QEMU\'s -machine pit=off)')
    .addOption(new Option('-m, --mem <size>', 'guest RAM, e.g. 256M, 2G (default 256M; a bare number is MiB)'))
    .option('-c, --cpus <n>', 'vCPUs (default 1); more than one gives a flat guest the in-kernel irqchip too')
    .option('--smp <n>', 'the same as --cpus, in QEMU\'s spelling (N or cpus=N)')
    .option('--cpu <model>', 'the CPU: host or max (default host: what KVM supports here), then [,+feature|-feature|feature=on|off][,vendor=S] (QEMU\'s -cpu spelling)')
    .option('--trace <kinds>', 'trace: exits (every exit, then a table of counts)', collect)
    .option('--disk <spec>', 'a virtio-blk disk: PATH[,format=raw|qcow2][,readonly][,serial=S][,transport=mmio|pci] (repeatable)', repeat)
    .option('--net <spec>', 'a virtio-net device: tap[=NAME] (a TAP you set up) or bridge[,br=BR][,ifname=NAME] (a TAP tsvmm puts into host bridge BR, default br0), then [,mac=52:54:00:..][,transport=mmio|pci] (repeatable)', repeat)
    .option('--device <spec>', 'another device: virtio-rng or virtio-console [,transport=mmio|pci] (repeatable), or QEMU\'s isa-debug-exit[,iobase=N][,iosize=N] (default 0x501, 2 ports) or pc-testdev (kvm-unit-tests\' test device) or pvpanic (the guest reports its panics, at 0x505) or edu (QEMU\'s educational PCI device) or intel-iommu[,intremap=on|off][,eim=off] (a VT-d unit at 0xFED90000)', repeat)
    .option('--fw-cfg <spec>', 'a file in fw_cfg (QEMU\'s -fw_cfg): [name=]opt/NAME,file=PATH or [name=]opt/NAME,string=S (repeatable)', repeat)
    .option('--virtio-transport <kind>', 'transport of virtio devices that name none: mmio (default) or pci')
    .option('--console <kind>', 'guest console and host input: serial (COM1, default) or virtio (hvc0)')
    .option('--no-ioeventfd', 'queue notifications exit to tsvmm instead of going through KVM_IOEVENTFD')
    .option('--no-irqfd', 'device interrupts use KVM_IRQ_LINE instead of KVM_IRQFD')
    .option('--reboot <action>', 'what a guest reboot does: exit (default: tsvmm ends with status 0, like QEMU\'s -no-reboot) or restart (the guest boots again)')
    .option('--poweroff <action>', 'what a guest power-off does: exit (default: tsvmm ends with status 0) or restart (the guest boots again, libvirt\'s on_poweroff restart)')
    .option('--panic <action>', 'what a guest panic reported through --device pvpanic does: exit (default: tsvmm ends with status 6) or restart')
    .option('--shutdown-timeout <seconds>', 'after SIGTERM presses the ACPI power button, stop a guest that has not powered off within this time (default 30)')
    .option('--qmp <endpoint>', 'a QMP monitor (QEMU\'s protocol): unix:PATH[,server=on,wait=off] or tcp:HOST:PORT[,server=on,wait=off] (repeatable)', repeat)
    .option('--serial <chardev>', 'the console on a unix socket instead of the terminal: unix:PATH,server=on,wait=off[,logfile=FILE] (QEMU\'s -serial)')
    .option('-S, --paused', 'start with the vCPUs stopped (status prelaunch) until QMP\'s cont')
    .option('--name <name>', 'the VM\'s name (query-name)')
    .option('--uuid <uuid>', 'the VM\'s UUID (query-uuid)')
    .option('--incoming <uri>', 'wait for the VM\'s state from a migration: tcp:HOST:PORT, unix:PATH, exec:CMD (e.g. "exec:cat FILE"), or defer (the URI comes in QMP\'s migrate-incoming)')
    .option('--restore <file>', 'start from a snapshot file (tsvmm snapshot save): the same as --incoming file:FILE')
    .action(async (options: RunOptions) => {
      const { runCommand } = await import('./run.ts');
      setStatus(await runCommand(options));
    });

  const snapshot = cli.command('snapshot').description('snapshots of a running VM, through its QMP monitor');
  snapshot.command('save')
    .description('save the VM\'s state (not its disks) to FILE; the VM keeps running (restore: tsvmm run ... --restore FILE)')
    .requiredOption('--qmp <endpoint>', 'the VM\'s QMP monitor: unix:PATH or tcp:HOST:PORT')
    .argument('<file>', 'the snapshot file to write')
    .action(async (file: string, options: { qmp: string }) => {
      const { snapshotSaveCommand } = await import('./snapshot.ts');
      setStatus(await snapshotSaveCommand(options.qmp, file));
    });

  cli.command('check')
    .description('report whether tsvmm can run here and what kind of KVM this host has')
    .option('--json', 'print the report as JSON')
    .action(async (options: { json?: boolean }) => {
      const { checkHost, formatCheck } = await import('./check.ts');
      const report = checkHost();
      writeSync(1, `${options.json ? JSON.stringify(report, null, 2) : formatCheck(report)}\n`);
      setStatus(report.canRun ? 0 : 1);
    });

  const guest = cli.command('guest').description('the default Linux guest');
  guest.command('build')
    .description('build the default guest from Debian packages into ~/.cache/tsvmm (cached by recipe hash)')
    .action(async () => {
      const { guestBuildCommand } = await import('./guest.ts');
      setStatus(await guestBuildCommand());
    });

  // Help, a typo and every other command see the whole command set.
  if (!OWN_COMMANDS.includes(argv[0] ?? '')) {
    const [{ registerImgCommand }, { registerDomainCommands }, { registerNetworkCommands }, { registerPoolCommands }] = await Promise.all([
      import('./img.ts'), import('./domain-commands.ts'), import('./network-commands.ts'), import('./pool-commands.ts'),
    ]);
    registerImgCommand(cli, setStatus);
    registerDomainCommands(cli, setStatus);
    registerNetworkCommands(cli);
    registerPoolCommands(cli);
  }

  cli.command('bench')
    .description('run benchmark suites: exit cost against C, serial throughput and start-up against kvmtool and QEMU, memory, PIT')
    .argument('[suites...]', 'suites to run (default: all; --list names them)')
    .option('--list', 'list the suites and what each measures')
    .option('--runs <n>', 'runs per figure (the median is reported, with min and max)', '5')
    .option('--iterations <n>', 'exits: guest loop iterations per run', '20000')
    .option('--bytes <n>', 'serial-flood: bytes the guest writes per run', '20000')
    .option('--json <file>', 'also write the results as JSON')
    .option('--chart <file.svg>', 'also draw the results as an SVG chart')
    .option('--markdown <file.md>', 'also write the tables as Markdown (for the README)')
    .action(async (suites: string[], options: BenchOptions) => {
      const { benchCommand, listSuites } = await benchModule();
      setStatus(options.list ? listSuites() : await benchCommand(suites, options));
    });

  return cli;
}

export async function main(argv: string[]): Promise<number> {
  let status = 0;
  try {
    // virsh's -c URI (or TSVMM_DEFAULT_URI): another host runs the whole command; this one, with its scope's state.
    // remote.ts and the domain layer are loaded only when a connection is named.
    let rest = argv;
    if (namesConnection(argv) || process.env.TSVMM_DEFAULT_URI) {
      const [{ runRemotely, takeConnectOption }, { parseConnectUri }] = await Promise.all([import('./remote.ts'), import('../domain/index.ts')]);
      const taken = takeConnectOption(argv);
      rest = taken.rest;
      const target = taken.uri ?? (process.env.TSVMM_DEFAULT_URI || null);
      if (target !== null) {
        const connection = parseConnectUri(target);
        if (connection.kind === 'ssh') return await runRemotely(connection, rest);
        process.env.TSVMM_DEFAULT_URI = target;
      }
    }
    const cli = await program((s) => (status = s), rest);
    await cli.parseAsync(rest, { from: 'user' });
    return status;
  } catch (e) {
    if (e instanceof CommanderError) {
      // Commander has printed its message (or the help/version text) already.
      return e.exitCode === 0 ? 0 : EXIT_USAGE;
    }
    const expected = exitStatusOf(e);
    if (expected !== null) {
      writeSync(2, `tsvmm: ${(e as Error).message}\n`);
      return expected;
    }
    writeSync(2, `tsvmm: internal error: ${e instanceof Error ? e.message : String(e)}\n`);
    if (process.env.TSVMM_DEBUG && e instanceof Error && e.stack) writeSync(2, `${e.stack}\n`);
    return EXIT_FAILURE;
  }
}
