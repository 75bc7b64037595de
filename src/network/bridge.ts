// A network's bridge, made and removed with iproute2 as libvirt makes its
// virbrN: its MAC fixed (so it never takes a port's), spanning tree as the
// definition says, the host's address on it, up.
import { existsSync } from 'node:fs';
import { InputError } from '../errors.ts';
import type { NetworkDefinition } from './definition.ts';
import { runHostCommand } from './host-command.ts';
import { formatIpv4, overlaps, subnetText, type Ipv4Interface } from './ipv4.ts';

export function interfaceExists(name: string): boolean {
  return existsSync(`/sys/class/net/${name}`);
}

/** forward_delay is in hundredths of a second; it goes before stp_state, which bounds it once spanning tree is on. */
export function createBridge(definition: NetworkDefinition): void {
  const { bridge } = definition;
  if (interfaceExists(bridge.name)) throw new InputError(`network '${definition.name}': the interface ${bridge.name} exists already`);
  runHostCommand('ip', [
    'link', 'add', bridge.name, 'address', definition.mac, 'type', 'bridge',
    'forward_delay', String(bridge.delay * 100), 'stp_state', bridge.stp ? '1' : '0',
  ]);
  try {
    if (definition.ip) {
      const { address, prefix } = definition.ip;
      runHostCommand('ip', ['address', 'add', `${formatIpv4(address)}/${prefix}`, 'dev', bridge.name]);
    }
    runHostCommand('ip', ['link', 'set', 'dev', bridge.name, 'up']);
  } catch (e) {
    deleteBridge(bridge.name);
    throw e;
  }
}

/** Removes the bridge (its ports, the domains' TAPs, leave it); nothing when it is gone already. */
export function deleteBridge(name: string): void {
  if (interfaceExists(name)) runHostCommand('ip', ['link', 'delete', name, 'type', 'bridge']);
}

interface IpRoute {
  dst: string;
  dev?: string;
}

/** The IPv4 subnets the host reaches already (its routes but the default route), with the device of each. */
export function hostSubnets(): { subnet: Ipv4Interface; text: string; dev: string }[] {
  const routes = JSON.parse(runHostCommand('ip', ['-4', '-json', 'route', 'show']) || '[]') as IpRoute[];
  return routes.flatMap((route) => {
    const match = /^(\d+\.\d+\.\d+\.\d+)(?:\/(\d+))?$/.exec(route.dst);
    if (!match) return [];
    const [a, b, c, d] = match[1]!.split('.').map(Number) as [number, number, number, number];
    const subnet = { address: ((a << 24) | (b << 16) | (c << 8) | d) >>> 0, prefix: match[2] === undefined ? 32 : Number(match[2]) };
    return [{ subnet, text: route.dst, dev: route.dev ?? '?' }];
  });
}

/** Refuses a network whose subnet the host reaches already, as libvirt does ("network is already in use by interface ..."). */
export function checkSubnetFree(definition: NetworkDefinition): void {
  if (!definition.ip) return;
  const clash = hostSubnets().find((route) => overlaps(route.subnet, definition.ip!));
  if (clash) throw new InputError(`network '${definition.name}': ${subnetText(definition.ip)} is already in use by interface ${clash.dev} (route ${clash.text})`);
}
