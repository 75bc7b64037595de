// The `default` network, defined on first use as Debian's libvirt package
// defines and autostarts its own: NAT on bridge tsvbr0, 192.168.122.0/24
// (or the first free 192.168.N.0/24 when the host has that one already),
// DHCP for .2 to .254. A marker remembers that it was defined, so that a
// user's net-undefine of it is not undone by the next command.
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../domain/index.ts';
import { hostSubnets } from './bridge.ts';
import { DEFAULT_NETWORK, type NetworkDefinition } from './definition.ts';
import { overlaps, type Ipv4Interface } from './ipv4.ts';
import type { NetworkStore } from './network-store.ts';

/** 192.168.N.0/24 as an interface address: .1, the host's. */
const hostAddress = (third: number): Ipv4Interface => ({ address: ((192 << 24) | (168 << 16) | (third << 8) | 1) >>> 0, prefix: 24 });

/** The default network's definition, on a subnet that none of `taken` overlaps. */
export function defaultNetworkDefinition(taken: Ipv4Interface[], bridge: string): NetworkDefinition {
  const { first, last } = DEFAULT_NETWORK.thirdOctets;
  let third = first;
  while (third < last && taken.some((subnet) => overlaps(subnet, hostAddress(third)))) third++;
  const ip = hostAddress(third);
  return {
    name: DEFAULT_NETWORK.name,
    uuid: randomUUID(),
    forward: 'nat',
    bridge: { name: bridge, stp: true, delay: 0 },
    mac: ['52', '54', '00', ...[...randomBytes(3)].map((b) => b.toString(16).padStart(2, '0'))].join(':'),
    ip: { ...ip, dhcp: { ranges: [{ start: ip.address + 1, end: ip.address + 253 }], hosts: [] } },
  };
}

/** Defines (and marks for autostart) the default network the first time a network is used in this state folder. */
export function ensureDefaultNetwork(store: NetworkStore): void {
  const marker = join(store.folders.data, 'networks', '.default-defined');
  if (existsSync(marker)) return;
  if (!store.has(DEFAULT_NETWORK.name)) {
    const others = store.all();
    const taken = [...hostSubnets().map((route) => route.subnet), ...others.flatMap((n) => (n.ip ? [n.ip] : []))];
    const bridge = others.some((n) => n.bridge.name === DEFAULT_NETWORK.bridge) ? store.freeBridgeName() : DEFAULT_NETWORK.bridge;
    store.define(defaultNetworkDefinition(taken, bridge));
    store.setAutostart(DEFAULT_NETWORK.name, true);
  }
  writeFileAtomic(marker, '');
}
