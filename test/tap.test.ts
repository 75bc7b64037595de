// openTap: a real TAP interface from /dev/net/tun, the fd flags virtio-net
// relies on, the errors a user can act on, and one ARP exchange with the
// host kernel through the fd, 12-byte virtio-net header included.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readvSync, writevSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { closeFd, openTap, ReadableWaiter, TapError, type Tap } from '../src/kvm/index.ts';
import { ROOT } from '../bench/lib/artifacts.ts';
import { ARP_FRAME_SIZE, ARP_REPLY, arpRequest, ipUnavailable, openAddressedTap, parseArp, tapUnavailable } from './helpers/tap-host.ts';

const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const O_ACCMODE = 0o3;
const O_RDWR = 0o2;
const IFF_TAP = 0x0002;
const IFF_NO_PI = 0x1000;
const IFF_VNET_HDR = 0x4000;

describe.skipIf(tapUnavailable !== null)('openTap', () => {
  const opened: Tap[] = [];
  const open = (name?: string): Tap => {
    const tap = openTap(name);
    opened.push(tap);
    return tap;
  };
  afterEach(() => {
    for (const tap of opened.splice(0)) closeFd(tap.fd);
  });

  it('creates a TAP interface (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR) named by the kernel', () => {
    const tap = open();
    expect(tap.name).toMatch(/^tap\d+$/);
    const flags = Number(readFileSync(`/sys/class/net/${tap.name}/tun_flags`, 'utf8').trim());
    expect(flags & (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)).toBe(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR);
  });

  it('gives a read/write fd that is non-blocking and close-on-exec', () => {
    const tap = open();
    const fdFlags = parseInt(/flags:\s*(\d+)/.exec(readFileSync(`/proc/self/fdinfo/${tap.fd}`, 'utf8'))![1]!, 8);
    expect(fdFlags & O_ACCMODE).toBe(O_RDWR);
    expect(fdFlags & O_NONBLOCK).toBe(O_NONBLOCK);
    expect(fdFlags & O_CLOEXEC).toBe(O_CLOEXEC);
    // Nothing to read on an interface that is down: EAGAIN at once, never a wait.
    expect(() => readvSync(tap.fd, [new Uint8Array(2048)])).toThrow(expect.objectContaining({ code: 'EAGAIN' }));
  });

  it('takes the name it is given, and the interface goes away with its fd', () => {
    const name = `tsvmmt${process.pid % 100000}`;
    const tap = openTap(name);
    expect(tap.name).toBe(name);
    expect(existsSync(`/sys/class/net/${name}`)).toBe(true);
    closeFd(tap.fd);
    expect(existsSync(`/sys/class/net/${name}`)).toBe(false);
  });

  it('says a name is in use (EBUSY) when another fd holds that TAP', () => {
    const tap = open();
    expect(() => open(tap.name)).toThrow(TapError);
    expect(() => open(tap.name)).toThrow(new RegExp(`TUNSETIFF: EBUSY — TAP interface ${tap.name}: the interface ${tap.name} is in use`));
  });

  it('says a name that belongs to another kind of interface is not a TAP (EINVAL)', () => {
    expect(() => open('lo')).toThrow(/TUNSETIFF: EINVAL — TAP interface lo: lo exists and is not a TAP interface/);
  });

  it('refuses a name longer than 15 bytes before asking the kernel', () => {
    expect(() => open('a-very-long-name0')).toThrow(/interface name "a-very-long-name0": a name has 1 to 15 bytes/);
  });

  it.skipIf(process.getuid?.() !== 0)('tells an unprivileged user what it needs (run as nobody)', () => {
    const script = `import { openTap } from ${JSON.stringify(`${ROOT}/src/kvm/index.ts`)};
      try { openTap(); console.log('opened'); } catch (e) { console.log(e.name + ': ' + e.message); }`;
    const result = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      uid: 65534, gid: 65534, cwd: ROOT, encoding: 'utf8', timeout: 30_000,
    });
    expect(result.stdout).toMatch(/TapError: (open: EACCES .*mode 0666|TUNSETIFF: EPERM .*CAP_NET_ADMIN)/);
  });

  it.skipIf(ipUnavailable !== null)('carries frames with a 12-byte virtio-net header: the host answers an ARP request', () => {
    const tap = openAddressedTap();
    opened.push(tap);
    const mac = Uint8Array.of(0x52, 0x54, 0x00, 0xab, 0xcd, 0xef);
    const header = new Uint8Array(12);
    expect(writevSync(tap.fd, [header, arpRequest(mac, tap.guestIp, tap.hostIp)])).toBe(12 + ARP_FRAME_SIZE);

    const waiter = new ReadableWaiter();
    const deadline = Date.now() + 5000;
    let reply = null;
    while (!reply && Date.now() < deadline) {
      if (waiter.wait([tap.fd], 100).length === 0) continue;
      const buffer = new Uint8Array(2048).fill(0xcc);
      const length = readvSync(tap.fd, [buffer]);
      const arp = parseArp(buffer.subarray(12, length));
      if (arp?.operation === ARP_REPLY) {
        // The header: no offloads (flags, gso_type 0) and the num_buffers field in place (12 bytes, not 10).
        expect([...buffer.subarray(0, 2)]).toEqual([0, 0]);
        expect(length).toBe(12 + ARP_FRAME_SIZE);
        reply = arp;
      }
    }
    expect(reply).toEqual({
      destination: [...mac], operation: ARP_REPLY, senderMac: expect.any(Array), senderIp: tap.hostIp, targetMac: [...mac], targetIp: tap.guestIp,
    });
  });
});
