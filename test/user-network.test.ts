// User networking's host side: `--net user` as QEMU spells it, and the passt
// command line it becomes (src/network/passt.ts). passt itself runs in
// test/passt.test.ts.
import { describe, expect, it } from 'vitest';
import { parseNet } from '../src/cli/virtio-options.ts';
import { passtArguments } from '../src/network/passt.ts';

describe('--net user', () => {
  it('takes QEMU\'s -nic user spelling: hostfwd (repeatable), mac, transport', () => {
    expect(parseNet('user')).toEqual({ kind: 'net', user: { hostForwards: [] } });
    expect(parseNet('user,hostfwd=tcp::2222-:22,hostfwd=udp:127.0.0.1:5353-:53,mac=52:54:00:aa:bb:cc,transport=pci')).toEqual({
      kind: 'net', transport: 'pci', mac: '52:54:00:aa:bb:cc',
      user: {
        hostForwards: [
          { protocol: 'tcp', hostPort: 2222, guestPort: 22 },
          { protocol: 'udp', address: '127.0.0.1', hostPort: 5353, guestPort: 53 },
        ],
      },
    });
  });

  it('refuses what it cannot do with one line', () => {
    const refusals: [string, string][] = [
      ['user=x', '--net user=x: user takes no name'],
      ['user,hostfwd=tcp::22', '--net user,hostfwd=tcp::22: hostfwd=tcp::22: expected hostfwd=tcp::HOSTPORT-:GUESTPORT (or udp, or tcp:ADDRESS:HOSTPORT-:GUESTPORT)'],
      ['user,hostfwd=sctp::1-:2', '--net user,hostfwd=sctp::1-:2: hostfwd=sctp::1-:2: expected hostfwd=tcp::HOSTPORT-:GUESTPORT (or udp, or tcp:ADDRESS:HOSTPORT-:GUESTPORT)'],
      ['user,hostfwd=tcp::2222-10.0.2.15:22', '--net user,hostfwd=tcp::2222-10.0.2.15:22: hostfwd=tcp::2222-10.0.2.15:22: expected hostfwd=tcp::HOSTPORT-:GUESTPORT (or udp, or tcp:ADDRESS:HOSTPORT-:GUESTPORT)'],
      ['user,hostfwd=tcp::0-:22', '--net user,hostfwd=tcp::0-:22: hostfwd=tcp::0-:22: port 0 is not 1 to 65535'],
      ['user,hostfwd=tcp::2222-:70000', '--net user,hostfwd=tcp::2222-:70000: hostfwd=tcp::2222-:70000: port 70000 is not 1 to 65535'],
      ['user,hostfwd=tcp:1.2.3:1-:2', '--net user,hostfwd=tcp:1.2.3:1-:2: hostfwd=tcp:1.2.3:1-:2: "1.2.3" is not an IPv4 address'],
      ['user,hostfwd=tcp::80-:80,hostfwd=tcp::80-:81', '--net user,hostfwd=tcp::80-:80,hostfwd=tcp::80-:81: host port tcp 80 is forwarded twice'],
      ['user,br=br0', '--net user,br=br0: unknown setting "br" (known: hostfwd, mac, transport)'],
      ['user,mac=1:2', '--net user,mac=1:2: mac must look like 52:54:00:12:34:56'],
    ];
    for (const [spec, message] of refusals) expect(() => parseNet(spec), spec).toThrow(message);
  });

  it('becomes passt on fd 3, in the foreground, with a 1500-byte MTU, and -t/-u for each forward', () => {
    expect(passtArguments({ hostForwards: [] })).toEqual(['--fd', '3', '--foreground', '--quiet', '--mtu', '1500']);
    expect(passtArguments({
      hostForwards: [{ protocol: 'tcp', hostPort: 2222, guestPort: 22 }, { protocol: 'udp', address: '127.0.0.1', hostPort: 5353, guestPort: 53 }],
    }).slice(6)).toEqual(['-t', '2222:22', '-u', '127.0.0.1/5353:53']);
  });
});
