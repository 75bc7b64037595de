// IPv4 addresses as numbers: what a network's <ip> element needs (its
// subnet, whether a DHCP range lies in it, whether two subnets overlap).
import { InputError } from '../errors.ts';

const DOTTED = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** "192.168.122.1" → 0xc0a87a01, or null when it is not a dotted quad. */
export function parseIpv4(text: string): number | null {
  const parts = DOTTED.exec(text);
  if (!parts) return null;
  const bytes = parts.slice(1).map(Number);
  if (bytes.some((byte) => byte > 255)) return null;
  return ((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!) >>> 0;
}

export function formatIpv4(address: number): string {
  return [24, 16, 8, 0].map((shift) => (address >>> shift) & 0xff).join('.');
}

/** The netmask of a prefix length: 24 → 0xffffff00. */
export function prefixMask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** The prefix length of a netmask, or null when its ones are not contiguous (255.0.255.0). */
export function maskPrefix(mask: number): number | null {
  for (let prefix = 0; prefix <= 32; prefix++) if (prefixMask(prefix) === mask) return prefix;
  return null;
}

/** An address with its prefix: 192.168.122.1/24. */
export interface Ipv4Interface {
  address: number;
  prefix: number;
}

export function networkOf({ address, prefix }: Ipv4Interface): number {
  return (address & prefixMask(prefix)) >>> 0;
}

export function broadcastOf({ address, prefix }: Ipv4Interface): number {
  return (address | ~prefixMask(prefix)) >>> 0;
}

/** "192.168.122.0/24": the subnet of an interface address. */
export function subnetText(ip: Ipv4Interface): string {
  return `${formatIpv4(networkOf(ip))}/${ip.prefix}`;
}

/** True when `address` is a host address of the subnet (neither its network nor its broadcast address). */
export function isHostOf(ip: Ipv4Interface, address: number): boolean {
  return networkOf({ address, prefix: ip.prefix }) === networkOf(ip) && address !== networkOf(ip) && address !== broadcastOf(ip);
}

/** Whether two subnets share an address. */
export function overlaps(a: Ipv4Interface, b: Ipv4Interface): boolean {
  const prefix = Math.min(a.prefix, b.prefix);
  return networkOf({ address: a.address, prefix }) === networkOf({ address: b.address, prefix });
}

/** Parses an address from a command or file that must be one; `what` names it in the error. */
export function requireIpv4(text: string, what: string): number {
  const address = parseIpv4(text);
  if (address === null) throw new InputError(`${what}: "${text}" is not an IPv4 address`);
  return address;
}
