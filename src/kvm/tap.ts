// A TAP network interface for virtio-net: the host end of the guest's
// Ethernet. Frames cross the fd with a 12-byte virtio-net header in front
// (IFF_VNET_HDR, TUNSETVNETHDRSZ 12): exactly the header a virtio 1.x driver
// puts before each frame, so the device moves frames between the queues and
// the TAP without rewriting anything.
//
// A TAP can also join a host bridge (bridgeTap), as libvirt connects a
// domain's vnetN to its network's bridge: through the socket ioctls brctl
// and ip use (SIOCBRADDIF, SIOCSIFFLAGS), not by running a program.
import { KvmError } from './errors.ts';
import { Ioctl } from './ioctls.ts';
import { Errno, errnoMessage, errnoName, lastErrno, libcCalls } from './libc.ts';

const O_RDWR = 0o2;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;

const IFF_UP = 0x0001;
const IFF_TAP = 0x0002;
const IFF_NO_PI = 0x1000;
const IFF_VNET_HDR = 0x4000;

/** struct ifreq: char ifr_name[IFNAMSIZ], then a union whose first member is `short ifr_flags`. */
const IFREQ_SIZE = 40;
const IFNAMSIZ = 16;
/** The union after the name: ifr_flags (short), ifr_ifindex (int) or ifr_hwaddr (struct sockaddr). */
const IFR_FLAGS = 16;
const IFR_IFINDEX = 16;
const IFR_HWADDR = 16;
const ARPHRD_ETHER = 1;

/** The virtio 1.x net header (struct virtio_net_hdr_v1), num_buffers included. */
export const VNET_HEADER_SIZE = 12;

const TUN_PATH = '/dev/net/tun';
const CAPABILITY_HINT = 'needs CAP_NET_ADMIN (run as root or give tsvmm the capability)';

/** A failed TAP set-up step; a KvmError, so the CLI reports it as one line. */
export class TapError extends KvmError {
  constructor(call: string, errno: number, detail: string, hint: string) {
    super(call, errno, detail);
    this.name = 'TapError';
    this.message = `${call}: ${this.code} — ${detail}: ${hint}`;
  }
}

function tapError(call: string, errno: number, detail: string, name: string | undefined): TapError {
  const hints: Record<string, string> = {
    ENOENT: `${TUN_PATH} does not exist: load the tun module (modprobe tun)`,
    ENODEV: `${TUN_PATH} has no driver behind it: load the tun module (modprobe tun)`,
    EPERM: CAPABILITY_HINT,
    EACCES: `no permission to open ${TUN_PATH}: run as root, or make it mode 0666 (its usual mode) and give tsvmm CAP_NET_ADMIN`,
    EBUSY: `the interface ${name ?? ''} is in use (another program holds it open); pick another name or leave it out`,
    EINVAL: `${name ?? 'the name'} exists and is not a TAP interface`,
  };
  return new TapError(call, errno, detail, hints[errnoName(errno)] ?? errnoMessage(errno));
}

export interface Tap {
  /** Non-blocking, close-on-exec; the interface disappears when it is closed (it is not persistent). */
  fd: number;
  /** The interface name the kernel gave it ("tap0" when none was asked for). */
  name: string;
}

/**
 * Creates (or attaches to) the TAP interface `name`, or a new "tapN" when no
 * name is given; a name with "%d" is a template the kernel fills with the
 * first free number ("vnet%d" → "vnet0"). The interface starts down; the
 * host brings it up and addresses or bridges it (bridgeTap).
 */
export function openTap(name?: string): Tap {
  const nameBytes = new TextEncoder().encode(name ?? '');
  if (nameBytes.length >= IFNAMSIZ || nameBytes.includes(0) || name?.includes('/')) {
    throw new TapError('TUNSETIFF', Errno.EINVAL!, `interface name "${name}"`, `a name has 1 to ${IFNAMSIZ - 1} bytes and no "/"`);
  }

  const fd = libcCalls.open(TUN_PATH, O_RDWR | O_NONBLOCK | O_CLOEXEC, 0);
  if (fd < 0) throw tapError('open', lastErrno(), TUN_PATH, name);
  try {
    const ifreq = new Uint8Array(IFREQ_SIZE);
    ifreq.set(nameBytes);
    new DataView(ifreq.buffer).setInt16(IFR_FLAGS, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, true);
    if (libcCalls.ioctlWithBuffer(fd, Ioctl.TUNSETIFF, ifreq) < 0) {
      throw tapError('TUNSETIFF', lastErrno(), name ? `TAP interface ${name}` : 'a new TAP interface', name);
    }
    // The kernel writes the chosen name back into ifr_name.
    const end = ifreq.indexOf(0);
    const actual = new TextDecoder().decode(ifreq.subarray(0, end < 0 || end > IFNAMSIZ ? IFNAMSIZ : end));

    const headerSize = new Uint8Array(4);
    new DataView(headerSize.buffer).setInt32(0, VNET_HEADER_SIZE, true);
    if (libcCalls.ioctlWithBuffer(fd, Ioctl.TUNSETVNETHDRSZ, headerSize) < 0) {
      throw tapError('TUNSETVNETHDRSZ', lastErrno(), `${actual}: a ${VNET_HEADER_SIZE}-byte header`, actual);
    }
    return { fd, name: actual };
  } catch (e) {
    libcCalls.close(fd);
    throw e;
  }
}

function ifreqFor(name: string): { ifreq: Uint8Array; view: DataView } {
  const ifreq = new Uint8Array(IFREQ_SIZE);
  ifreq.set(new TextEncoder().encode(name));
  return { ifreq, view: new DataView(ifreq.buffer) };
}

function bridgeError(call: string, errno: number, detail: string, tap: string, bridge: string): TapError {
  const hints: Record<string, string> = {
    ENODEV: `there is no interface ${bridge}: create the bridge first (ip link add ${bridge} type bridge), or start its network`,
    EOPNOTSUPP: `${bridge} is not a bridge`,
    EINVAL: `${bridge} is not a bridge`,
    EBUSY: `${tap} is in another bridge already`,
    ELOOP: `${tap} cannot join ${bridge}`,
    EPERM: CAPABILITY_HINT,
  };
  return new TapError(call, errno, detail, hints[errnoName(errno)] ?? errnoMessage(errno));
}

/**
 * Connects the TAP `tap` to the host bridge `bridge` and brings it up, as
 * libvirt connects a domain's vnetN. `hostMac` becomes the TAP's own
 * address: libvirt gives it the guest's MAC with 0xfe as its first byte, so
 * that the bridge, which takes the lowest MAC of its ports unless it was
 * given one, never takes a guest's, and the host side never answers as the guest.
 */
export function bridgeTap(tap: string, bridge: string, hostMac: Uint8Array): void {
  const socket = libcCalls.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (socket < 0) throw bridgeError('socket', lastErrno(), 'a socket for interface ioctls', tap, bridge);
  try {
    const address = ifreqFor(tap);
    address.view.setUint16(IFR_HWADDR, ARPHRD_ETHER, true);
    address.ifreq.set(hostMac.subarray(0, 6), IFR_HWADDR + 2);
    if (libcCalls.ioctlWithBuffer(socket, Ioctl.SIOCSIFHWADDR, address.ifreq) < 0) {
      throw bridgeError('SIOCSIFHWADDR', lastErrno(), `the MAC address of ${tap}`, tap, bridge);
    }

    const index = ifreqFor(tap);
    if (libcCalls.ioctlWithBuffer(socket, Ioctl.SIOCGIFINDEX, index.ifreq) < 0) {
      throw bridgeError('SIOCGIFINDEX', lastErrno(), `interface ${tap}`, tap, bridge);
    }
    const join = ifreqFor(bridge);
    join.view.setInt32(IFR_IFINDEX, index.view.getInt32(IFR_IFINDEX, true), true);
    if (libcCalls.ioctlWithBuffer(socket, Ioctl.SIOCBRADDIF, join.ifreq) < 0) {
      throw bridgeError('SIOCBRADDIF', lastErrno(), `adding ${tap} to bridge ${bridge}`, tap, bridge);
    }

    const flags = ifreqFor(tap);
    if (libcCalls.ioctlWithBuffer(socket, Ioctl.SIOCGIFFLAGS, flags.ifreq) < 0) {
      throw bridgeError('SIOCGIFFLAGS', lastErrno(), `interface ${tap}`, tap, bridge);
    }
    flags.view.setInt16(IFR_FLAGS, flags.view.getInt16(IFR_FLAGS, true) | IFF_UP, true);
    if (libcCalls.ioctlWithBuffer(socket, Ioctl.SIOCSIFFLAGS, flags.ifreq) < 0) {
      throw bridgeError('SIOCSIFFLAGS', lastErrno(), `bringing ${tap} up`, tap, bridge);
    }
  } finally {
    libcCalls.close(socket);
  }
}
