// DHCP (RFC 2131) in raw Ethernet frames, for tests that play a guest's DHCP
// client without a guest: on a TAP in a bridge (network-host.test.ts) or on
// passt's socket (passt.test.ts).

const DHCP_SERVER_PORT = 67;
const DHCP_CLIENT_PORT = 68;
const DHCP_MAGIC = 0x63825363;
export const DhcpMessage = { DISCOVER: 1, OFFER: 2, REQUEST: 3, ACK: 5 } as const;

/** An IPv4 header checksum (RFC 791): the ones' complement of the ones' complement sum of its 16-bit words. */
function ipChecksum(header: Uint8Array): number {
  const view = new DataView(header.buffer, header.byteOffset, header.byteLength);
  let sum = 0;
  for (let i = 0; i < header.length; i += 2) sum += view.getUint16(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * A DHCP client message (RFC 2131) from 0.0.0.0:68 to 255.255.255.255:67 in
 * an Ethernet broadcast, with the broadcast flag set so the server answers
 * by broadcast too (the client has no address yet). `options` are
 * type-length-value triples; the message type goes first, END last.
 */
export function dhcpFrame(mac: Uint8Array, xid: number, options: [number, number[]][]): Uint8Array {
  const optionBytes = [...options.flatMap(([code, value]) => [code, value.length, ...value]), 255];
  const bootpLength = Math.max(300, 240 + optionBytes.length);
  const frame = new Uint8Array(14 + 20 + 8 + bootpLength);
  const view = new DataView(frame.buffer);
  frame.fill(0xff, 0, 6);
  frame.set(mac, 6);
  view.setUint16(12, 0x0800);
  const ip = 14;
  frame[ip] = 0x45;
  view.setUint16(ip + 2, 20 + 8 + bootpLength);
  frame[ip + 8] = 64; // TTL
  frame[ip + 9] = 17; // UDP
  frame.fill(0xff, ip + 16, ip + 20); // destination 255.255.255.255; source 0.0.0.0
  view.setUint16(ip + 10, ipChecksum(frame.subarray(ip, ip + 20)));
  const udp = ip + 20;
  view.setUint16(udp, DHCP_CLIENT_PORT);
  view.setUint16(udp + 2, DHCP_SERVER_PORT);
  view.setUint16(udp + 4, 8 + bootpLength); // checksum 0: none, as IPv4 allows
  const bootp = udp + 8;
  frame[bootp] = 1; // BOOTREQUEST
  frame[bootp + 1] = 1; // Ethernet
  frame[bootp + 2] = 6;
  view.setUint32(bootp + 4, xid);
  view.setUint16(bootp + 10, 0x8000); // broadcast
  frame.set(mac, bootp + 28);
  view.setUint32(bootp + 236, DHCP_MAGIC);
  frame.set(optionBytes, bootp + 240);
  return frame;
}

export interface DhcpReply {
  type: number;
  yourIp: string;
  server: string;
  options: Map<number, Uint8Array>;
}

/** The DHCP server message to `xid` in an Ethernet frame, or null when the frame is anything else. */
export function parseDhcpReply(frame: Uint8Array, xid: number): DhcpReply | null {
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  if (frame.length < 14 + 20 + 8 + 240 || view.getUint16(12) !== 0x0800 || frame[14 + 9] !== 17) return null;
  const udp = 14 + (frame[14]! & 0x0f) * 4;
  if (view.getUint16(udp + 2) !== DHCP_CLIENT_PORT) return null;
  const bootp = udp + 8;
  if (frame[bootp] !== 2 || view.getUint32(bootp + 4) !== xid || view.getUint32(bootp + 236) !== DHCP_MAGIC) return null;
  const options = new Map<number, Uint8Array>();
  for (let at = bootp + 240; at < frame.length && frame[at] !== 255;) {
    if (frame[at] === 0) {
      at++;
      continue;
    }
    options.set(frame[at]!, frame.subarray(at + 2, at + 2 + frame[at + 1]!));
    at += 2 + frame[at + 1]!;
  }
  const dotted = (bytes: Uint8Array) => [...bytes].join('.');
  return { type: options.get(53)?.[0] ?? 0, yourIp: dotted(frame.subarray(bootp + 16, bootp + 20)), server: dotted(options.get(54) ?? new Uint8Array(4)), options };
}
