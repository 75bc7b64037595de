// DomainDefinition → what `tsvmm run` is given for it: the options object
// (the same field names as src/cli/run.ts's RunOptions, which checks them all
// again) and the argv that starts the domain in its own process.
import { InputError } from '../errors.ts';
import type { DiskDefinition, DomainDefinition, LifecycleAction } from './definition.ts';

export interface DomainRunOptions {
  name: string;
  uuid: string;
  /** Guest RAM, as `--mem` reads it ("262144K"). */
  mem: string;
  cpus: string;
  /** Without a kernel, `tsvmm run` boots its default guest. */
  kernel?: string;
  initrd?: string;
  /** The domain's <cmdline>; tsvmm puts its console and reboot settings before it. */
  append?: string;
  /** `--disk` specs, by target name: vda first, as the guest will name them. */
  disk?: string[];
  device?: string[];
  console?: 'virtio';
  /** on_reboot, on_poweroff, on_crash: restart boots the guest again in the same process; destroy ends it. */
  reboot: 'exit' | 'restart';
  poweroff: 'exit' | 'restart';
  panic: 'exit' | 'restart';
}

/** vda < vdb < ... < vdz < vdaa, as Linux names virtio disks in the order it finds them. */
function byTargetName(a: DiskDefinition, b: DiskDefinition): number {
  return a.target.length - b.target.length || (a.target < b.target ? -1 : a.target > b.target ? 1 : 0);
}

/** `PATH,format=F[,readonly][,serial=S]` (parse.ts refused paths with commas; a serial has none). */
function diskSpec(disk: DiskDefinition): string {
  return [disk.path, `format=${disk.format}`, ...(disk.readOnly ? ['readonly'] : []), ...(disk.serial !== undefined ? [`serial=${disk.serial}`] : [])].join(',');
}

function runAction(action: LifecycleAction): 'exit' | 'restart' {
  return action === 'restart' ? 'restart' : 'exit';
}

export function domainRunOptions(definition: DomainDefinition): DomainRunOptions {
  const [network] = definition.devices.interfaces;
  if (network) {
    throw new InputError(`domain ${definition.name}: <interface type='${network.type}'>: tsvmm cannot connect a domain's interface to a ${network.type} yet`);
  }
  const { os, devices } = definition;
  const disks = [...devices.disks].sort(byTargetName).map(diskSpec);
  return {
    name: definition.name,
    uuid: definition.uuid,
    mem: `${definition.memoryBytes / 1024}K`,
    cpus: String(definition.vcpus),
    ...(os.kernel !== undefined ? { kernel: os.kernel } : {}),
    ...(os.initrd !== undefined ? { initrd: os.initrd } : {}),
    ...(os.cmdline?.trim() ? { append: os.cmdline.trim() } : {}),
    ...(disks.length ? { disk: disks } : {}),
    ...(devices.rng || devices.panic ? { device: [...(devices.rng ? ['virtio-rng'] : []), ...(devices.panic ? ['pvpanic'] : [])] } : {}),
    ...(devices.console === 'virtio' ? { console: 'virtio' as const } : {}),
    reboot: runAction(definition.onReboot),
    poweroff: runAction(definition.onPoweroff),
    panic: runAction(definition.onCrash),
  };
}

/** The `tsvmm run` arguments for these options, flag by flag. */
export function runArguments(options: DomainRunOptions): string[] {
  const flags: [string, string | string[] | undefined][] = [
    ['--name', options.name], ['--uuid', options.uuid], ['--mem', options.mem], ['--cpus', options.cpus],
    ['--kernel', options.kernel], ['--initrd', options.initrd], ['--append', options.append],
    ['--disk', options.disk], ['--device', options.device], ['--console', options.console],
    ['--reboot', options.reboot], ['--poweroff', options.poweroff], ['--panic', options.panic],
  ];
  return flags.flatMap(([flag, value]) => (value === undefined ? [] : (Array.isArray(value) ? value : [value]).flatMap((v) => [flag, v])));
}
