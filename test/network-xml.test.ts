// libvirt network XML and what tsvmm makes of it, without touching the host:
// what it reads and refuses (one line naming the element and its line), what
// net-dumpxml writes (checked by libvirt's virt-xml-validate where
// installed), the default network, dnsmasq's configuration, the nftables
// table, the lease database, and the `--net` a domain's interface becomes.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { InputError } from '../src/errors.ts';
import { domainRunOptions, domainToXml, parseDomainXml, runArguments, stateFolders } from '../src/domain/index.ts';
import { parseNet } from '../src/cli/virtio-options.ts';
import { defaultNetworkDefinition, networkToXml, NetworkStore, parseNetworkXml, readLeases, type NetworkDefinition } from '../src/network/index.ts';
import { dnsmasqConfig } from '../src/network/dnsmasq.ts';
import { rulesetFor, tableName } from '../src/network/nftables.ts';
import { parseIpv4 } from '../src/network/ipv4.ts';
import { hasValidator, validateXml, warnIfNoValidator } from './helpers/libvirt-schema.ts';

warnIfNoValidator('network-xml tests');

const scratch = mkdtempSync(join(tmpdir(), 'tsvmm-network-xml-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

const ip = (text: string) => parseIpv4(text)!;

/** libvirt's default network as `virsh -c test:///default net-dumpxml default` prints it. */
const LIBVIRT_DEFAULT = `<network>
  <name>default</name>
  <uuid>dd8fe884-6c02-601e-7551-cca97df1c5df</uuid>
  <forward mode='nat'/>
  <bridge name='virbr0' stp='on' delay='0'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>
`;

/** Debian's /usr/share/libvirt/networks/default.xml: no UUID, no MAC, <forward/> without a mode. */
const DEBIAN_DEFAULT = `<network>
  <name>default</name>
  <bridge name='virbr0'/>
  <forward/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>
`;

function refusal(text: string): string {
  try {
    parseNetworkXml(text, 'net.xml');
  } catch (error) {
    expect(error).toBeInstanceOf(InputError);
    expect((error as Error).message).not.toContain('\n');
    return (error as Error).message;
  }
  throw new Error('parseNetworkXml accepted it');
}

const validate = (xml: string) => validateXml(xml, 'network');

describe('reading network XML', () => {
  it('reads libvirt\'s default network', () => {
    expect(parseNetworkXml(LIBVIRT_DEFAULT, 'default.xml')).toEqual({
      name: 'default',
      uuid: 'dd8fe884-6c02-601e-7551-cca97df1c5df',
      forward: 'nat',
      bridge: { name: 'virbr0', stp: true, delay: 0 },
      mac: expect.stringMatching(/^52:54:00(:[0-9a-f]{2}){3}$/),
      ip: { address: ip('192.168.122.1'), prefix: 24, dhcp: { ranges: [{ start: ip('192.168.122.2'), end: ip('192.168.122.254') }], hosts: [] } },
    });
  });

  it('fills in what Debian\'s default.xml leaves out: a UUID, a MAC, NAT for <forward/>, and a bridge name when none is given', () => {
    const debian = parseNetworkXml(DEBIAN_DEFAULT, 'default.xml');
    expect(debian).toMatchObject({ forward: 'nat', bridge: { name: 'virbr0', stp: true, delay: 0 } });
    expect(debian.uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    const unnamed = parseNetworkXml("<network><name>iso</name><bridge stp='off' delay='2'/></network>", 'iso.xml', () => 'tsvbr7');
    expect(unnamed).toMatchObject({ forward: 'isolated', bridge: { name: 'tsvbr7', stp: false, delay: 2 }, ip: null });
  });

  it('reads a prefix as well as a netmask, routed networks, fixed hosts, and a network with no DHCP', () => {
    const routed = parseNetworkXml(`<network><name>lab</name><forward mode='route'/><bridge name='labbr'/>
      <ip family='ipv4' address='10.20.0.1' prefix='16'><dhcp>
        <range start='10.20.1.0' end='10.20.1.255'/><host mac='52:54:00:AA:00:01' name='db' ip='10.20.0.5'/>
      </dhcp></ip></network>`, 'lab.xml');
    expect(routed).toMatchObject({
      forward: 'route',
      ip: { address: ip('10.20.0.1'), prefix: 16, dhcp: { ranges: [{ start: ip('10.20.1.0'), end: ip('10.20.1.255') }], hosts: [{ mac: '52:54:00:aa:00:01', name: 'db', ip: ip('10.20.0.5') }] } },
    });
    expect(parseNetworkXml("<network><name>n</name><ip address='10.0.0.1' netmask='255.0.0.0'/></network>", 'n.xml').ip).toEqual({ address: ip('10.0.0.1'), prefix: 8, dhcp: null });
  });

  it('refuses what it cannot build, naming the element and its line', () => {
    const network = (inner: string) => `<network>\n  <name>n</name>\n  ${inner}\n</network>`;
    expect(refusal('<domain/>')).toBe('net.xml:1: <domain>: the root element of a network definition is <network>');
    expect(refusal('<network/>')).toBe('net.xml:1: <network>: needs a <name>');
    expect(refusal("<network ipv6='yes'><name>n</name></network>")).toBe("net.xml:1: <network>: ipv6='yes': tsvmm does not support this attribute");
    expect(refusal('<network><name>../x</name></network>')).toMatch(/^net\.xml:1: <name> in <network>: "..\/x" is not a name tsvmm can use/);
    expect(refusal(network("<forward mode='bridge'/>"))).toBe("net.xml:3: <forward> in <network>: mode='bridge': tsvmm builds NAT and routed networks (mode='nat' or 'route'), or isolated ones (no <forward>)");
    expect(refusal(network('<forward/>'))).toBe("net.xml:1: <network>: <forward mode='nat'> needs an <ip address='...' netmask='...'> for the network");
    expect(refusal(network("<ip family='ipv6' address='fd00::1' prefix='64'/>"))).toBe("net.xml:3: <ip> in <network>: family='ipv6': tsvmm networks are IPv4");
    expect(refusal(network("<ip address='192.168.1.1' netmask='255.0.255.0'/>"))).toBe("net.xml:3: <ip> in <network>: netmask='255.0.255.0' is not a netmask");
    expect(refusal(network("<ip address='192.168.1.0' prefix='24'/>"))).toBe("net.xml:3: <ip> in <network>: address='192.168.1.0' is the subnet's network or broadcast address, not a host's");
    expect(refusal(network("<ip address='192.168.1.1' prefix='24'><dhcp><range start='192.168.2.2' end='192.168.2.9'/></dhcp></ip>")))
      .toBe("net.xml:3: <range> in <dhcp>: start='192.168.2.2' is not a host address of the network");
    expect(refusal(network("<ip address='192.168.1.1' prefix='24'><dhcp><range start='192.168.1.9' end='192.168.1.2'/></dhcp></ip>")))
      .toBe('net.xml:3: <range> in <dhcp>: the range ends (192.168.1.2) before it starts (192.168.1.9)');
    expect(refusal(network("<bridge name='a-name-far-too-long'/>"))).toBe("net.xml:3: <bridge> in <network>: name='a-name-far-too-long' is not an interface name (1 to 15 letters, digits and _ . -)");
    expect(refusal(network('<dns><host ip="1.2.3.4"/></dns>'))).toBe('net.xml:3: <dns> in <network>: tsvmm does not support it');
    expect(refusal(network("<ip address='1.2.3.4' prefix='24'/>\n  <ip address='1.2.4.4' prefix='24'/>"))).toBe('net.xml:4: <ip> in <network>: tsvmm gives a network one IPv4 address');
    expect(refusal('<network><name>n</name>')).toMatch(/^net\.xml:1: malformed XML: /);
  });
});

describe('writing network XML (net-dumpxml)', () => {
  it('writes libvirt\'s layout, and reading it back gives the same definition', () => {
    const definition = parseNetworkXml(LIBVIRT_DEFAULT, 'default.xml');
    const xml = networkToXml(definition);
    expect(xml).toBe(LIBVIRT_DEFAULT.replace("<bridge name='virbr0' stp='on' delay='0'/>\n", `<bridge name='virbr0' stp='on' delay='0'/>\n  <mac address='${definition.mac}'/>\n`));
    expect(parseNetworkXml(xml, 'dump.xml')).toEqual(definition);
  });

  it.skipIf(!hasValidator)('passes virt-xml-validate ... network, for every kind of network tsvmm builds', () => {
    const samples = [
      LIBVIRT_DEFAULT, DEBIAN_DEFAULT,
      "<network><name>iso</name><bridge name='isobr'/></network>",
      "<network><name>n</name><ip address='10.0.0.1' netmask='255.0.0.0'/></network>",
      `<network><name>lab</name><forward mode='route'/><ip address='10.20.0.1' prefix='16'><dhcp>
        <host mac='52:54:00:aa:00:01' name='db' ip='10.20.0.5'/><host mac='52:54:00:aa:00:02' ip='10.20.0.6'/></dhcp></ip></network>`,
    ];
    for (const sample of samples) {
      const result = validate(networkToXml(parseNetworkXml(sample, 'sample.xml')));
      expect(result.output).toMatch(/validates/);
      expect(result.status).toBe(0);
    }
    const netDefault = defaultNetworkDefinition([], 'tsvbr0');
    expect(validate(networkToXml(netDefault)).status).toBe(0);
  });

  it.skipIf(!hasValidator)('the validator does fail: a network without a name does not validate', () => {
    expect(validate(LIBVIRT_DEFAULT.replace('<name>default</name>', '')).status).not.toBe(0);
  });
});

describe('the default network', () => {
  it('is NAT on tsvbr0, 192.168.122.0/24 with DHCP from .2 to .254', () => {
    const definition = defaultNetworkDefinition([], 'tsvbr0');
    expect(definition).toMatchObject({
      name: 'default', forward: 'nat', bridge: { name: 'tsvbr0', stp: true, delay: 0 },
      ip: { address: ip('192.168.122.1'), prefix: 24, dhcp: { ranges: [{ start: ip('192.168.122.2'), end: ip('192.168.122.254') }], hosts: [] } },
    });
  });

  it('takes the next free 192.168.N.0/24 when the host has that subnet (or a wider one) already', () => {
    const taken = [{ address: ip('192.168.122.0'), prefix: 24 }, { address: ip('192.168.124.0'), prefix: 23 }];
    expect(defaultNetworkDefinition(taken, 'tsvbr0').ip).toMatchObject({ address: ip('192.168.123.1') });
    const wider = [{ address: ip('192.168.0.0'), prefix: 17 }];
    expect(defaultNetworkDefinition(wider, 'tsvbr0').ip).toMatchObject({ address: ip('192.168.128.1') });
  });

  it('is defined on first use with autostart on, once: an undefine is not undone', async () => {
    const { ensureDefaultNetwork } = await import('../src/network/index.ts');
    const dir = mkdtempSync(join(scratch, 'state-'));
    const store = new NetworkStore(stateFolders(dir));
    // The routes of the test's own namespace are read; this test only needs the definition.
    ensureDefaultNetwork(store);
    expect(store.all().map((n) => n.name)).toEqual(['default']);
    expect(store.autostart('default')).toBe(true);
    store.undefine('default');
    ensureDefaultNetwork(store);
    expect(store.all()).toEqual([]);
  });
});

describe('what net-start builds from a definition', () => {
  const definition: NetworkDefinition = parseNetworkXml(`<network><name>default</name><forward mode='nat'/><bridge name='tsvbr0'/>
    <ip address='192.168.122.1' netmask='255.255.255.0'><dhcp><range start='192.168.122.2' end='192.168.122.254'/>
    <host mac='52:54:00:00:00:07' name='seven' ip='192.168.122.7'/></dhcp></ip></network>`, 'default.xml');
  const files = new NetworkStore(stateFolders('/state')).runFiles('default');

  it('dnsmasq: bound to the bridge only, the ranges, fixed hosts, and pid and leases in the run folder', () => {
    expect(dnsmasqConfig(definition, files).split('\n')).toEqual([
      "# dnsmasq for tsvmm network 'default', written by net-start: edits are lost",
      'strict-order',
      'pid-file=/state/run/networks/default/dnsmasq.pid',
      'except-interface=lo',
      'bind-dynamic',
      'interface=tsvbr0',
      'user=nobody',
      'dhcp-range=192.168.122.2,192.168.122.254,255.255.255.0',
      'dhcp-host=52:54:00:00:00:07,192.168.122.7,seven',
      'dhcp-no-override',
      'dhcp-authoritative',
      'dhcp-lease-max=254',
      'dhcp-leasefile=/state/run/networks/default/dnsmasq.leases',
      '',
    ]);
  });

  it('dnsmasq: fixed hosts without a pool are served from a static range of the subnet; a network without <dhcp> gets DNS only', () => {
    const hostsOnly = parseNetworkXml(`<network><name>lab</name><ip address='10.20.0.1' prefix='16'><dhcp>
      <host mac='52:54:00:aa:00:01' ip='10.20.0.5'/></dhcp></ip></network>`, 'lab.xml');
    const config = dnsmasqConfig(hostsOnly, files);
    expect(config).toContain('\ndhcp-range=10.20.0.0,static,255.255.0.0\ndhcp-host=52:54:00:aa:00:01,10.20.0.5\n');
    expect(config).toContain('\ndhcp-lease-max=1\n');
    const dnsOnly = dnsmasqConfig(parseNetworkXml("<network><name>n</name><ip address='10.0.0.1' prefix='24'/></network>", 'n.xml'), files);
    expect(dnsOnly).toContain('\ninterface=');
    expect(dnsOnly).not.toContain('dhcp');
  });

  it('nftables: one table of the network\'s own; NAT masquerades what leaves the subnet, answers come back, the rest is refused', () => {
    expect(tableName('default')).toBe('tsvmm-default');
    const rules = rulesetFor(definition);
    expect(rules).toMatch(/^table ip tsvmm-default \{\n/);
    expect(rules).toContain('oifname "tsvbr0" ip daddr 192.168.122.0/24 ct state related,established accept');
    expect(rules).toContain('iifname "tsvbr0" ip saddr 192.168.122.0/24 accept');
    expect(rules).toContain('ip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 masquerade');
    expect(rules.indexOf('iifname "tsvbr0" oifname "tsvbr0" accept')).toBeLessThan(rules.indexOf('iifname "tsvbr0" reject'));
    const isolated = rulesetFor({ ...definition, forward: 'isolated' });
    expect(isolated).not.toContain('masquerade');
    expect(isolated).not.toContain('saddr');
    expect(rulesetFor({ ...definition, forward: 'route' })).not.toContain('masquerade');
  });

  it('net-dhcp-leases reads dnsmasq\'s lease database ("*" for an unknown host name or client id)', () => {
    const dir = mkdtempSync(join(scratch, 'leases-'));
    const store = new NetworkStore(stateFolders(dir));
    const leaseFiles = store.runFiles('default');
    rmSync(leaseFiles.folder, { recursive: true, force: true });
    spawnSync('mkdir', ['-p', leaseFiles.folder]);
    writeFileSync(leaseFiles.leases, [
      '1764600000 52:54:00:12:34:56 192.168.122.23 guest 01:52:54:00:12:34:56',
      '1764600100 52:54:00:12:34:57 192.168.122.24 * *',
      'duid 00:01:00:01:2c:aa:bb:cc:dd:ee:ff:00:11:22',
      '',
    ].join('\n'));
    expect(readLeases(leaseFiles)).toEqual([
      { expiry: 1764600000, mac: '52:54:00:12:34:56', ip: '192.168.122.23', hostname: 'guest', clientId: '01:52:54:00:12:34:56' },
      { expiry: 1764600100, mac: '52:54:00:12:34:57', ip: '192.168.122.24', hostname: null, clientId: null },
    ]);
    expect(readLeases(store.runFiles('other'))).toEqual([]);
  });
});

describe('a domain\'s interface on the host', () => {
  const withInterfaces = (interfaces: string) => parseDomainXml(`<domain type='kvm'><name>d</name><memory unit='MiB'>64</memory>
    <os><type>hvm</type></os><devices>${interfaces}</devices></domain>`, 'd.xml');

  it('type=bridge and type=network become QEMU\'s -nic bridge, a vnetN (or <target dev>) in the bridge, with the guest\'s MAC', () => {
    const definition = withInterfaces(`<interface type='bridge'><mac address='52:54:00:00:00:01'/><source bridge='br0'/></interface>
      <interface type='network'><mac address='52:54:00:00:00:02'/><source network='default'/><target dev='web0'/><model type='virtio'/></interface>`);
    const options = domainRunOptions(definition);
    expect(options.interfaces).toEqual([
      { mac: '52:54:00:00:00:01', tap: 'vnet%d', bridge: 'br0' },
      { mac: '52:54:00:00:00:02', tap: 'web0', network: 'default' },
    ]);
    const looked: string[] = [];
    const args = runArguments(options, (network) => (looked.push(network), 'tsvbr0'));
    expect(looked).toEqual(['default']);
    expect(args.filter((_, i) => args[i - 1] === '--net')).toEqual([
      'bridge,br=br0,ifname=vnet%d,mac=52:54:00:00:00:01',
      'bridge,br=tsvbr0,ifname=web0,mac=52:54:00:00:00:02',
    ]);
    // tsvmm run reads them back as the machine's virtio-net devices.
    expect(parseNet('bridge,br=tsvbr0,ifname=vnet%d,mac=52:54:00:00:00:02')).toEqual({ kind: 'net', bridge: 'tsvbr0', tap: 'vnet%d', mac: '52:54:00:00:00:02' });
  });

  it('tsvmm run --net bridge: br0 by default as in QEMU; bad names and settings are one line', () => {
    expect(parseNet('bridge')).toEqual({ kind: 'net', bridge: 'br0' });
    expect(() => parseNet('bridge=br0')).toThrow('--net bridge=br0: the bridge is named with br=br0');
    expect(() => parseNet('bridge,br=tsvbr%d')).toThrow('--net bridge,br=tsvbr%d: br names an existing bridge ("tsvbr%d" is a template)');
    expect(() => parseNet('bridge,ifname=a%db%d')).toThrow('--net bridge,ifname=a%db%d: "a%db%d" is not a valid interface name');
    expect(() => parseNet('tap,br=br0')).toThrow(/unknown setting "br"/);
    expect(() => parseNet('slirp')).toThrow('--net slirp: the backends are tap (tap or tap=NAME), bridge (bridge,br=BR) and user (user,hostfwd=tcp::HOSTPORT-:GUESTPORT)');
  });

  it('<target dev> round-trips through dumpxml, and a bad one is refused with its line', () => {
    const definition = withInterfaces("<interface type='bridge'><source bridge='br0'/><target dev='web0'/></interface>");
    expect(definition.devices.interfaces[0]).toMatchObject({ target: 'web0' });
    const xml = domainToXml(definition);
    expect(xml).toContain("<target dev='web0'/>");
    expect(parseDomainXml(xml, 'dump.xml')).toEqual(definition);
    if (hasValidator) {
      const result = validateXml(domainToXml(withInterfaces(`<interface type='bridge'><source bridge='br0'/><target dev='web0'/></interface>
        <interface type='network'><source network='default'/></interface>`)), 'domain');
      expect(result.status, result.output).toBe(0);
    }
    expect(() => withInterfaces("<interface type='bridge'><source bridge='br0'/><target dev='vnet%d'/></interface>"))
      .toThrow("d.xml:2: <target> in <interface>: dev='vnet%d' is not an interface name (up to 15 letters, digits and _ . -)");
  });
});
