// DomainDefinition → what `tsvmm run` is given for it: the options object
// (the same field names as src/cli/run.ts's RunOptions, which checks them all
// again) and the argv that starts the domain in its own process.
import type { DiskDefinition, DomainDefinition, InterfaceDefinition, LifecycleAction, PortForward } from './definition.ts';

/** The TAP name libvirt gives a domain's interface when it names none: the kernel numbers it (vnet0, vnet1, ...). */
export const DEFAULT_TAP_NAME = 'vnet%d';

/**
 * Where a domain's network card is connected on the host: a TAP in a host
 * bridge, which is either named or a libvirt network's (found when the domain
 * starts: src/network knows networks, the domain layer does not), or passt
 * (user networking) with its forwarded ports.
 */
export type InterfaceConnection =
  | ({ mac: string; tap: string } & ({ bridge: string } | { network: string }))
  | { mac: string; user: { portForwards: PortForward[] } };

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

function interfaceConnection(card: InterfaceDefinition): InterfaceConnection {
  if (card.type === 'user') return { mac: card.mac, user: { portForwards: card.portForwards } };
  const host = { mac: card.mac, tap: card.target ?? DEFAULT_TAP_NAME };
  if (card.type === 'bridge') return { ...host, bridge: card.bridge };
  return { ...host, network: card.network };
}

export function domainRunOptions(definition: DomainDefinition): DomainRunOptions {
  const { os, devices } = definition;
  const disks = [...devices.disks].sort(byTargetName).map(diskSpec);
  const interfaces = devices.interfaces.map(interfaceConnection);
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

/** hostfwd=tcp:[ADDRESS]:HOSTPORT-:GUESTPORT, QEMU's -nic user spelling of a <portForward> range. */
function hostForward(forward: PortForward): string {
  return `hostfwd=${forward.protocol}:${forward.address ?? ''}:${forward.hostPort}-:${forward.guestPort}`;
}

/**
 * `bridge,br=BR,ifname=TAP,mac=MAC`: QEMU's -nic bridge, which `tsvmm run`
 * sets up as libvirt does; `user,hostfwd=...,mac=MAC`: QEMU's -nic user,
 * which `tsvmm run` gives to passt.
 */
function netSpec(connection: InterfaceConnection, bridgeOf: NetworkBridgeLookup | undefined): string {
  if ('user' in connection) return ['user', ...connection.user.portForwards.map(hostForward), `mac=${connection.mac}`].join(',');
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
