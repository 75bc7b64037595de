// The host side of TAP tests: whether this host lets us create a TAP
// interface, giving one an address so the host kernel answers ARP on it, and
// building and reading the ARP frames that make a real exchange through it.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { closeFd, openTap, TapError, type Tap } from '../../src/kvm/index.ts';

/** Why TAP tests cannot run here, or null when they can. */
export const tapUnavailable: string | null = (() => {
  try {
    closeFd(openTap().fd);
    return null;
  } catch (e) {
    if (e instanceof TapError && ['EPERM', 'EACCES', 'ENOENT', 'ENODEV'].includes(e.code)) return e.message;
    throw e;
  }
})();
if (tapUnavailable) console.warn(`tsvmm tests: cannot create a TAP interface, skipping the TAP tests: ${tapUnavailable}`);

/** iproute2 sets the address and brings the interface up (Debian: apt-get install iproute2). */
export const ipUnavailable: string | null = spawnSync('ip', ['-V']).error ? '`ip` (iproute2) is not installed' : null;
if (!tapUnavailable && ipUnavailable) console.warn(`tsvmm tests: skipping the TAP exchanges: ${ipUnavailable}`);

export type Ipv4 = [number, number, number, number];

export interface AddressedTap extends Tap {
  /** The host's address on the interface: the host kernel answers ARP for it. */
  hostIp: Ipv4;
  /** An address in the same /24 for the guest's side. */
  guestIp: Ipv4;
}

/**
 * Opens a TAP interface, gives the host an address on it (a random
 * 10.x.y.1/24, unlikely to clash with the host's own networks) and brings
 * it up. IPv6 is off on it, so the host does not chatter (router and
 * multicast listener messages) into the exchange.
 */
export function openAddressedTap(): AddressedTap {
  const tap = openTap();
  try {
    const subnet: [number, number] = [200 + Math.floor(Math.random() * 50), Math.floor(Math.random() * 256)];
    const hostIp: Ipv4 = [10, ...subnet, 1];
    const ipv6 = `/proc/sys/net/ipv6/conf/${tap.name}/disable_ipv6`;
    if (existsSync(ipv6)) writeFileSync(ipv6, '1');
    execFileSync('ip', ['addr', 'add', `${hostIp.join('.')}/24`, 'dev', tap.name]);
    execFileSync('ip', ['link', 'set', 'dev', tap.name, 'up']);
    return { ...tap, hostIp, guestIp: [10, ...subnet, 2] };
  } catch (e) {
    closeFd(tap.fd);
    throw e;
  }
}

export const ETHERTYPE_ARP = 0x0806;
export const ARP_REQUEST = 1;
export const ARP_REPLY = 2;
/** Ethernet header (14) + ARP for IPv4 over Ethernet (28). */
export const ARP_FRAME_SIZE = 42;

/** A broadcast "who has `targetIp`? tell `senderIp`" from `senderMac` (RFC 826). */
export function arpRequest(senderMac: Uint8Array, senderIp: Ipv4, targetIp: Ipv4): Uint8Array {
  const frame = new Uint8Array(ARP_FRAME_SIZE);
  const view = new DataView(frame.buffer);
  frame.fill(0xff, 0, 6);
  frame.set(senderMac, 6);
  view.setUint16(12, ETHERTYPE_ARP);
  view.setUint16(14, 1); // hardware: Ethernet
  view.setUint16(16, 0x0800); // protocol: IPv4
  frame[18] = 6;
  frame[19] = 4;
  view.setUint16(20, ARP_REQUEST);
  frame.set(senderMac, 22);
  frame.set(senderIp, 28);
  frame.set(targetIp, 38); // target hardware address (32..37) stays 0
  return frame;
}

export interface ArpMessage {
  destination: number[];
  operation: number;
  senderMac: number[];
  senderIp: number[];
  targetMac: number[];
  targetIp: number[];
}

/** The ARP message in an Ethernet frame, or null when the frame is something else. */
export function parseArp(frame: Uint8Array): ArpMessage | null {
  if (frame.length < ARP_FRAME_SIZE) return null;
  const view = new DataView(frame.buffer, frame.byteOffset, frame.length);
  if (view.getUint16(12) !== ETHERTYPE_ARP) return null;
  return {
    destination: [...frame.subarray(0, 6)],
    operation: view.getUint16(20),
    senderMac: [...frame.subarray(22, 28)],
    senderIp: [...frame.subarray(28, 32)],
    targetMac: [...frame.subarray(32, 38)],
    targetIp: [...frame.subarray(38, 42)],
  };
}
