// A virtual network as plain data: the part of libvirt's network XML
// (docs: libvirt's formatnetwork) that tsvmm honours. parse.ts reads it,
// serialize.ts writes it back as `virsh net-dumpxml` prints it, and
// host-network.ts builds it on the host with iproute2, nftables and dnsmasq.
//
// As with domains, every field is filled in: what the XML left out holds
// libvirt's default (or a generated UUID, MAC or bridge name), so a definition
// says exactly what net-start builds.
import type { Ipv4Interface } from './ipv4.ts';

/**
 * How traffic leaves the network: NAT (masqueraded behind the host's
 * address), routed (forwarded, not rewritten), or not at all (isolated: no
 * <forward>).
 */
export type ForwardMode = 'nat' | 'route' | 'isolated';

export interface NetworkDefinition {
  name: string;
  /** Lower-case, with dashes. */
  uuid: string;
  forward: ForwardMode;
  bridge: {
    /** The host bridge net-start creates. */
    name: string;
    /** Spanning tree on the bridge (libvirt's default: on, with no forwarding delay). */
    stp: boolean;
    /** Seconds a new port waits before it forwards (the bridge's forward_delay). */
    delay: number;
  };
  /** The bridge's own MAC: fixed, so the bridge never takes a port's (libvirt writes one into every network). */
  mac: string;
  /** The host's address on the bridge and the network's prefix; none for a bridge without IP (no DHCP, no NAT). */
  ip: (Ipv4Interface & { dhcp: DhcpDefinition | null }) | null;
}

export interface DhcpDefinition {
  /** Pools, inclusive, in XML order. */
  ranges: { start: number; end: number }[];
  /** Fixed addresses by MAC (libvirt's <host>). */
  hosts: { mac: string; ip: number; name?: string }[];
}

/** What the `default` network is when it is defined on first use (libvirt's, on tsvmm's own bridge). */
export const DEFAULT_NETWORK = {
  name: 'default',
  bridge: 'tsvbr0',
  /** libvirt's subnet; when the host already has it, the next free 192.168.N.0/24 is taken. */
  thirdOctets: { first: 122, last: 254 },
} as const;
