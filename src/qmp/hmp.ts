// human-monitor-command: the few HMP commands tsvmm answers, printed as QEMU
// 7.2's HMP prints them (hmp-cmds.c), with its CRLF line ends. A command tsvmm
// does not have answers "unknown command: '...'", as QEMU does for a name it
// does not know; HMP reports its errors as text, never as a QMP error.
//
// `cpu-index` picks HMP's current vCPU, which `info cpus` marks with '*' and
// `info registers` shows when given no vCPU.

import { formatBlockDevices } from './block-info.ts';
import { formatRegisters } from './registers-dump.ts';
import type { MachineControl } from './target.ts';
import { VERSION_INFO } from './version.ts';

interface InfoCommand {
  /** The argument part of QEMU's `help info` line. */
  params: string;
  help: string;
  /** Whether the command takes arguments at all (QEMU refuses extra words otherwise). */
  takesArguments: boolean;
  run(machine: MachineControl, args: string[], currentCpu: number): Promise<string> | string;
}

const INFO_COMMANDS: Record<string, InfoCommand> = {
  block: {
    params: '[-n] [-v] [device]',
    help: 'show info of one block device or all block devices (-n: show named nodes; -v: show details)',
    takesArguments: true,
    // -n and -v add detail tsvmm does not have; the device filters.
    run: (machine, args) => formatBlockDevices(machine.blockDevices(), args.find((arg) => !arg.startsWith('-'))),
  },
  cpus: {
    params: '',
    help: 'show infos for each CPU',
    takesArguments: false,
    run: (machine, _args, currentCpu) =>
      machine.cpus().map((cpu) => `${cpu.index === currentCpu ? '*' : ' '} CPU #${cpu.index}: thread_id=${cpu.threadId}\n`).join(''),
  },
  kvm: {
    params: '',
    help: 'show KVM information',
    takesArguments: false,
    run: () => 'kvm support: enabled\n',
  },
  name: {
    params: '',
    help: 'show the current VM name',
    takesArguments: false,
    run: (machine) => (machine.name === null ? '' : `${machine.name}\n`),
  },
  registers: {
    params: '[-a|vcpu]',
    help: "show the cpu registers (-a: show register info for all cpus; vcpu: specific vCPU to query; show the current CPU's registers if no argument is specified)",
    takesArguments: true,
    run: infoRegisters,
  },
  status: {
    params: '',
    help: 'show the current VM status (running|paused)',
    takesArguments: false,
    run: (machine) => {
      const state = machine.runState();
      if (state === 'running') return 'VM status: running\n';
      return state === 'paused' ? 'VM status: paused\n' : `VM status: paused (${state})\n`;
    },
  },
  uuid: {
    params: '',
    help: 'show the current VM UUID',
    takesArguments: false,
    run: (machine) => `${machine.uuid}\n`,
  },
  version: {
    params: '',
    help: 'show the version of QEMU',
    takesArguments: false,
    // QEMU prints the version and the package with nothing between them.
    run: () => `${VERSION_INFO.qemu.major}.${VERSION_INFO.qemu.minor}.${VERSION_INFO.qemu.micro}${VERSION_INFO.package}\n`,
  },
};

async function infoRegisters(machine: MachineControl, args: string[], currentCpu: number): Promise<string> {
  if (args.length > 1) return extraneous('registers');
  const indexes = machine.cpus().map((cpu) => cpu.index);
  let wanted: number[];
  if (args[0] === '-a') wanted = indexes;
  else if (args[0] === undefined) wanted = [currentCpu];
  else {
    const bad = /[^0-9]/.exec(args[0]);
    if (bad) return `invalid char '${bad[0]}' in expression\nTry "help info registers" for more information\n`;
    const index = Number(args[0]);
    if (!indexes.includes(index)) return `CPU#${index} not available\n`;
    wanted = [index];
  }
  let text = '';
  for (const index of wanted) text += `\nCPU#${index}\n${formatRegisters(await machine.registers(index))}`;
  return text;
}

function extraneous(name: string): string {
  return `${name}: extraneous characters at the end of line\nTry "help info ${name}" for more information\n`;
}

function infoHelp(): string {
  return Object.entries(INFO_COMMANDS)
    .map(([name, command]) => `info ${name} ${command.params} -- ${command.help}\n`)
    .join('');
}

/** Runs one HMP command line; the text has QEMU's CRLF line ends. */
export async function runHmpCommand(machine: MachineControl, commandLine: string, currentCpu: number): Promise<string> {
  const words = commandLine.trim().split(/\s+/).filter((word) => word !== '');
  let text: string;
  if (words.length === 0) text = '';
  else if (words[0] !== 'info') text = `unknown command: '${words[0]}'\n`;
  else if (words.length === 1) text = infoHelp();
  else {
    const name = words[1]!;
    const command = Object.hasOwn(INFO_COMMANDS, name) ? INFO_COMMANDS[name]! : undefined;
    const args = words.slice(2);
    if (command === undefined) text = `unknown command: 'info ${name}'\n`;
    else if (!command.takesArguments && args.length > 0) text = extraneous(name);
    else text = await command.run(machine, args, currentCpu);
  }
  return text.replaceAll('\n', '\r\n');
}
