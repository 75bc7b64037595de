// User networking's configuration: `--net user` as QEMU spells it, the
// passt command line it becomes (src/network/passt.ts), and libvirt's
// <interface type='user'> with <backend type='passt'/> and <portForward>,
// which a domain turns into `--net user,...`. passt itself runs in
// test/passt.test.ts.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseNet } from '../src/cli/virtio-options.ts';
import { domainRunOptions, domainToXml, parseDomainXml, runArguments } from '../src/domain/index.ts';
import { InputError } from '../src/errors.ts';
import { passtArguments } from '../src/network/passt.ts';

const hasValidator = ['virt-xml-validate', 'xmllint'].every((tool) => spawnSync(tool, ['--version'], { encoding: 'utf8' }).error === undefined);
const scratch = mkdtempSync(join(tmpdir(), 'tsvmm-usernet-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function domainWith(interfaces: string): string {
  return `<domain type='kvm'>
  <name>u</name>
  <memory unit='MiB'>64</memory>
  <os>
    <type>hvm</type>
  </os>
  <devices>${interfaces}
  </devices>
</domain>
`;
}

/** The one-line InputError parseDomainXml throws for `interfaces`. */
function refusal(interfaces: string): string {
  try {
    parseDomainXml(domainWith(interfaces), 'user.xml');
  } catch (e) {
    expect(e).toBeInstanceOf(InputError);
    return (e as Error).message;
  }
  throw new Error('accepted');
}

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

describe("<interface type='user'>", () => {
  const withForwards = `
    <interface type='user'>
      <mac address='52:54:00:00:00:07'/>
      <backend type='passt'/>
      <portForward proto='tcp' address='127.0.0.1'>
        <range start='2222' to='22'/>
        <range start='8080' to='80'/>
      </portForward>
      <portForward proto='udp'>
        <range start='5353'/>
      </portForward>
    </interface>`;

  it('reads libvirt 9\'s <backend type=\'passt\'/> and <portForward>s, a port per <range> (to: the guest\'s port, start when absent)', () => {
    const definition = parseDomainXml(domainWith(withForwards), 'user.xml');
    expect(definition.devices.interfaces).toEqual([{
      type: 'user', mac: '52:54:00:00:00:07',
      portForwards: [
        { protocol: 'tcp', address: '127.0.0.1', hostPort: 2222, guestPort: 22 },
        { protocol: 'tcp', address: '127.0.0.1', hostPort: 8080, guestPort: 80 },
        { protocol: 'udp', hostPort: 5353, guestPort: 5353 },
      ],
    }]);
  });

  it('becomes --net user with a hostfwd per forward, which tsvmm run reads back', () => {
    const args = runArguments(domainRunOptions(parseDomainXml(domainWith(withForwards), 'user.xml')));
    const net = args.filter((_, i) => args[i - 1] === '--net');
    expect(net).toEqual(['user,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp::5353-:5353,mac=52:54:00:00:00:07']);
    expect(parseNet(net[0]!)).toEqual({
      kind: 'net', mac: '52:54:00:00:00:07',
      user: {
        hostForwards: [
          { protocol: 'tcp', address: '127.0.0.1', hostPort: 2222, guestPort: 22 },
          { protocol: 'tcp', address: '127.0.0.1', hostPort: 8080, guestPort: 80 },
          { protocol: 'udp', hostPort: 5353, guestPort: 5353 },
        ],
      },
    });
    // Without forwards or a backend element it is the same user network.
    const bare = runArguments(domainRunOptions(parseDomainXml(domainWith("<interface type='user'><mac address='52:54:00:00:00:08'/></interface>"), 'u.xml')));
    expect(bare.filter((_, i) => bare[i - 1] === '--net')).toEqual(['user,mac=52:54:00:00:00:08']);
  });

  it('round-trips through dumpxml, and libvirt\'s schema takes what dumpxml writes', () => {
    const definition = parseDomainXml(domainWith(withForwards), 'user.xml');
    const xml = domainToXml(definition);
    expect(xml).toContain("<backend type='passt'/>");
    expect(xml).toContain("<portForward proto='tcp' address='127.0.0.1'>");
    expect(xml).toContain("<range start='2222' to='22'/>");
    expect(parseDomainXml(xml, 'dump.xml')).toEqual(definition);
    if (hasValidator) {
      const file = join(scratch, 'user.xml');
      writeFileSync(file, xml);
      const result = spawnSync('virt-xml-validate', [file, 'domain'], { encoding: 'utf8', timeout: 30_000 });
      expect(result.status, result.stdout + result.stderr).toBe(0);
    }
  });

  it('refuses what it cannot honour with the line that says it', () => {
    const cases: [string, string][] = [
      ["<interface type='user'><backend type='slirp'/></interface>", "user.xml:7: <backend> in <interface>: type='slirp': tsvmm's user networking is passt"],
      ["<interface type='user'><portForward proto='sctp'><range start='1'/></portForward></interface>", "user.xml:7: <portForward> in <interface>: proto='sctp': passt forwards tcp and udp"],
      ["<interface type='user'><portForward proto='tcp'/></interface>", "user.xml:7: <portForward> in <interface>: needs a <range start='HOSTPORT' to='GUESTPORT'/>"],
      ["<interface type='user'><portForward proto='tcp' address='::1'><range start='1'/></portForward></interface>", "user.xml:7: <portForward> in <interface>: address='::1': tsvmm forwards IPv4 addresses"],
      ["<interface type='user'><portForward proto='tcp'><range start='2000' end='2010'/></portForward></interface>", "user.xml:7: <range> in <portForward>: end='2010': tsvmm forwards one port per <range>"],
      ["<interface type='user'><portForward proto='tcp'><range start='22' exclude='yes'/></portForward></interface>", "user.xml:7: <range> in <portForward>: exclude='yes': tsvmm forwards the ports it is given, and excludes none"],
      ["<interface type='user'><portForward proto='tcp'><range start='0'/></portForward></interface>", "user.xml:7: <range> in <portForward>: start='0' is not a port (1 to 65535)"],
      ["<interface type='user'><portForward proto='tcp'><range start='22' to='99999'/></portForward></interface>", "user.xml:7: <range> in <portForward>: to='99999' is not a port (1 to 65535)"],
      ["<interface type='user'><portForward proto='tcp'><range start='22'/><range start='22' to='23'/></portForward></interface>", 'user.xml:7: <range> in <portForward>: tcp port 22 is forwarded at line 7 too'],
      ["<interface type='user'><portForward proto='tcp' dev='eth0'><range start='22'/></portForward></interface>", "user.xml:7: <portForward> in <interface>: dev='eth0': tsvmm does not support this attribute"],
      ["<interface type='user'><target dev='tap9'/></interface>", "user.xml:7: <target> in <interface>: type='user' has no TAP device to name (passt carries its frames)"],
      ["<interface type='bridge'><source bridge='br0'/><portForward proto='tcp'><range start='1'/></portForward></interface>", "user.xml:7: <portForward> in <interface>: only an interface of type='user' has one (passt's)"],
    ];
    for (const [xml, message] of cases) expect(refusal(xml), xml).toBe(message);
  });
});
