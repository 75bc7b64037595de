// ARP frames for the TAP tests (RFC 826 over Ethernet): a request to send
// through a TAP and the reader of the reply the namespace's kernel sends back.
// The namespace and its TAP come from netns.ts.
import type { Ipv4 } from './netns.ts';

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
