// DomainDefinition → what `tsvmm run` is given for it: the options object
// (the same field names as src/cli/run.ts's RunOptions, which checks them all
// again) and the argv that starts the domain in its own process.
import { InputError } from '../errors.ts';
import type { DiskDefinition, DomainDefinition, InterfaceDefinition, LifecycleAction } from './definition.ts';

/** The TAP name libvirt gives a domain's interface when it names none: the kernel numbers it (vnet0, vnet1, ...). */
export const DEFAULT_TAP_NAME = 'vnet%d';

/**
 * Where a domain's network card is connected on the host: a TAP in a host
 * bridge, which is either named or a libvirt network's (found when the domain
 * starts: src/network knows networks, the domain layer does not).
 */
export type InterfaceConnection = { mac: string; tap: string } & ({ bridge: string } | { network: string });

/** The bridge of a libvirt network, by the network's name (src/network's, given when the domain starts). */
export type NetworkBridgeLookup = (network: string) => string;

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
  /** Network cards in XML order; runArguments makes them `--net bridge,...` specs. */
  interfaces?: InterfaceConnection[];
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

function interfaceConnection(definition: DomainDefinition, card: InterfaceDefinition): InterfaceConnection {
  const host = { mac: card.mac, tap: card.target ?? DEFAULT_TAP_NAME };
  if (card.type === 'bridge') return { ...host, bridge: card.bridge };
  if (card.type === 'network') return { ...host, network: card.network };
  throw new InputError(`domain ${definition.name}: <interface type='user'>: tsvmm cannot connect a domain's interface to user networking yet`);
}

export function domainRunOptions(definition: DomainDefinition): DomainRunOptions {
  const { os, devices } = definition;
  const disks = [...devices.disks].sort(byTargetName).map(diskSpec);
  const interfaces = devices.interfaces.map((card) => interfaceConnection(definition, card));
  return {
    name: definition.name,
    uuid: definition.uuid,
    mem: `${definition.memoryBytes / 1024}K`,
    cpus: String(definition.vcpus),
    ...(os.kernel !== undefined ? { kernel: os.kernel } : {}),
    ...(os.initrd !== undefined ? { initrd: os.initrd } : {}),
    ...(os.cmdline?.trim() ? { append: os.cmdline.trim() } : {}),
    ...(disks.length ? { disk: disks } : {}),
    ...(interfaces.length ? { interfaces } : {}),
    ...(devices.rng || devices.panic ? { device: [...(devices.rng ? ['virtio-rng'] : []), ...(devices.panic ? ['pvpanic'] : [])] } : {}),
    ...(devices.console === 'virtio' ? { console: 'virtio' as const } : {}),
    reboot: runAction(definition.onReboot),
    poweroff: runAction(definition.onPoweroff),
    panic: runAction(definition.onCrash),
  };
}

/** `bridge,br=BR,ifname=TAP,mac=MAC`: QEMU's -nic bridge, which `tsvmm run` sets up as libvirt does. */
function netSpec(connection: InterfaceConnection, bridgeOf: NetworkBridgeLookup | undefined): string {
  let bridge: string;
  if ('bridge' in connection) bridge = connection.bridge;
  else if (bridgeOf) bridge = bridgeOf(connection.network);
  else throw new Error(`network '${connection.network}': runArguments needs the networks' bridges`);
  return `bridge,br=${bridge},ifname=${connection.tap},mac=${connection.mac}`;
}

/**
 * The `tsvmm run` arguments for these options, flag by flag. An interface on
 * a libvirt network needs `bridgeOf` to find that network's bridge.
 */
export function runArguments(options: DomainRunOptions, bridgeOf?: NetworkBridgeLookup): string[] {
  const net = options.interfaces?.map((connection) => netSpec(connection, bridgeOf));
  const flags: [string, string | string[] | undefined][] = [
    ['--name', options.name], ['--uuid', options.uuid], ['--mem', options.mem], ['--cpus', options.cpus],
    ['--kernel', options.kernel], ['--initrd', options.initrd], ['--append', options.append],
    ['--disk', options.disk], ['--net', net], ['--device', options.device], ['--console', options.console],
    ['--reboot', options.reboot], ['--poweroff', options.poweroff], ['--panic', options.panic],
  ];
  return flags.flatMap(([flag, value]) => (value === undefined ? [] : (Array.isArray(value) ? value : [value]).flatMap((v) => [flag, v])));
}
