// Networks built on a host: every check runs in a network namespace the test
// creates (tsvmm, nft and dnsmasq through `ip netns exec`) and removes at the
// end, so nothing touches the host's own interfaces, rules or addresses.
// net-start builds the bridge, the nftables table and dnsmasq; a DHCP client
// made of raw frames on a TAP in the bridge gets a lease that net-dhcp-leases
// lists; net-destroy leaves none of it behind; a domain's interface is a
// vnetN in the bridge for as long as the domain runs.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readvSync, rmSync, writeFileSync, writevSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeFd, ReadableWaiter } from '../src/kvm/index.ts';
import { counterKernel } from '../bench/lib/counter-guest.ts';
import { hasKvm, TSVMM, type CliResult } from './helpers/kvm.ts';
import { netnsUnavailable, TestNetns } from './helpers/netns.ts';
import { DhcpMessage, dhcpFrame, parseDhcpReply, type DhcpReply } from './helpers/dhcp-frames.ts';

const tools = ['nft', 'dnsmasq'].filter((tool) => spawnSync(tool, ['--version']).error !== undefined);
const unavailable = netnsUnavailable ?? (tools.length ? `${tools.join(' and ')} not installed (Debian packages nftables, dnsmasq-base)` : null);
if (unavailable) console.warn(`network-host tests: skipped: ${unavailable}`);

const VNET_HEADER = 12;
/** Sends `frame` through the TAP every second until a reply `accept`s, for at most `timeoutMs`. */
function exchange(tapFd: number, frame: Uint8Array, accept: (frame: Uint8Array) => DhcpReply | null, timeoutMs = 30_000): DhcpReply {
  const waiter = new ReadableWaiter();
  const deadline = Date.now() + timeoutMs;
  const header = new Uint8Array(VNET_HEADER);
  let resendAt = 0;
  while (Date.now() < deadline) {
    if (Date.now() >= resendAt) {
      writevSync(tapFd, [header, frame]);
      resendAt = Date.now() + 1000;
    }
    if (waiter.wait([tapFd], 100).length === 0) continue;
    const buffer = new Uint8Array(2048);
    let length: number;
    try {
      length = readvSync(tapFd, [buffer]);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EAGAIN') continue;
      throw e;
    }
    const reply = accept(buffer.subarray(VNET_HEADER, length));
    if (reply) return reply;
  }
  throw new Error(`no DHCP answer within ${timeoutMs / 1000} s`);
}

describe.skipIf(unavailable !== null)('networks in a namespace of the test\'s own', () => {
  let ns: TestNetns;
  const stateDir = mkdtempSync(join(tmpdir(), 'tsvmm-nethost-'));

  /** A tsvmm verb inside the namespace, against a state folder (the test's, unless it says). */
  function virshIn(dir: string, ...args: string[]): CliResult {
    const [file, wrapped] = ns.wrap([process.execPath, TSVMM, ...args, '--state-dir', dir]);
    const result = spawnSync(file, wrapped, { encoding: 'utf8', timeout: 120_000, env: { ...process.env, NODE_NO_WARNINGS: '1' } });
    return { status: result.status, stdout: result.stdout, stderr: result.stderr };
  }

  const virsh = (...args: string[]) => virshIn(stateDir, ...args);

  function ok(...args: string[]): string {
    const result = virsh(...args);
    expect(result.status, `tsvmm ${args.join(' ')}: ${result.stderr}`).toBe(0);
    return result.stdout;
  }

  const linkExists = (name: string) => spawnSync('ip', ['-n', ns.name, 'link', 'show', 'dev', name]).status === 0;
  const tables = () => ns.exec(['nft', 'list', 'tables']);
  /** Live (not zombie) processes in the namespace whose command line has `text`. */
  const processesWith = (text: string) => ns.exec(['ip', 'netns', 'pids', ns.name]).split('\n').filter(Boolean).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(text);
    } catch {
      return false;
    }
  });
  const dnsmasqs = () => processesWith('dnsmasq');

  beforeAll(() => {
    ns = TestNetns.create();
  });

  afterAll(() => {
    // Whatever still runs in the namespace was started by these tests (dnsmasq, domains): end it, then remove the namespace.
    if (ns) {
      ns.killProcesses();
      ns.remove();
    }
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('start-autostarted where no network was ever used defines none and builds nothing', () => {
    const fresh = mkdtempSync(join(stateDir, 'fresh-'));
    const result = virshIn(fresh, 'start-autostarted');
    expect(result).toMatchObject({ status: 0, stdout: '', stderr: '' });
    expect(existsSync(join(fresh, 'networks'))).toBe(false);
    expect(linkExists('tsvbr0')).toBe(false);
    expect(tables()).toBe('');
  });

  it('the default network is defined on first use: NAT on tsvbr0, 192.168.122.0/24, autostart, inactive', () => {
    expect(ok('net-list', '--all')).toBe([
      ' Name      State      Autostart   Persistent',
      '----------------------------------------------',
      ' default   inactive   yes         yes',
      '', '',
    ].join('\n'));
    expect(ok('net-dumpxml', 'default')).toMatch(/<forward mode='nat'\/>\n  <bridge name='tsvbr0' stp='on' delay='0'\/>\n[^]*<ip address='192\.168\.122\.1' netmask='255\.255\.255\.0'>\n    <dhcp>\n      <range start='192\.168\.122\.2' end='192\.168\.122\.254'\/>/);
  });

  it('net-start builds the bridge with its address and MAC, the network\'s nftables table and its dnsmasq', () => {
    expect(ok('net-start', 'default')).toBe('Network default started\n\n');
    const mac = /<mac address='([^']+)'/.exec(ok('net-dumpxml', 'default'))![1];
    const [link] = JSON.parse(ns.ip('-j', 'address', 'show', 'dev', 'tsvbr0')) as { address: string; addr_info: { local: string; prefixlen: number }[] }[];
    expect(link!.address).toBe(mac);
    expect(link!.addr_info).toContainEqual(expect.objectContaining({ local: '192.168.122.1', prefixlen: 24 }));
    expect(ns.exec(['cat', '/sys/class/net/tsvbr0/bridge/stp_state']).trim()).toBe('1');
    expect(ns.exec(['cat', '/proc/sys/net/ipv4/ip_forward']).trim()).toBe('1');
    expect(tables()).toContain('table ip tsvmm-default');
    expect(ns.exec(['nft', 'list', 'table', 'ip', 'tsvmm-default'])).toContain('ip saddr 192.168.122.0/24 ip daddr != 192.168.122.0/24 masquerade');
    expect(dnsmasqs()).toHaveLength(1);
    expect(ns.exec(['ss', '-ulnp'])).toMatch(/192\.168\.122\.1%?\w*:53 .*dnsmasq/);
    expect(ok('net-list')).toContain(' default   active   yes         yes');
    expect(ok('net-info', 'default')).toContain('Active:         yes\n');
    const second = virsh('net-start', 'default');
    expect(second.status).toBe(2);
    expect(second.stderr).toBe("tsvmm: network 'default' is already active\n");
  });

  it('a DHCP client on a TAP in the bridge gets an address from .2-.254, and net-dhcp-leases lists it', () => {
    const tap = ns.openTap();
    try {
      ns.ip('link', 'set', 'dev', tap.name, 'master', 'tsvbr0', 'up');
      const mac = Uint8Array.of(0x52, 0x54, 0x00, 0x5e, 0x11, 0x01);
      const xid = 0x7453766d;
      const hostname = [...Buffer.from('leasetest')];
      const offer = exchange(tap.fd, dhcpFrame(mac, xid, [[53, [DhcpMessage.DISCOVER]], [12, hostname], [55, [1, 3, 6]]]),
        (frame) => {
          const reply = parseDhcpReply(frame, xid);
          return reply?.type === DhcpMessage.OFFER ? reply : null;
        });
      expect(offer.server).toBe('192.168.122.1');
      const last = Number(offer.yourIp.split('.')[3]);
      expect(offer.yourIp).toMatch(/^192\.168\.122\.\d+$/);
      expect(last).toBeGreaterThanOrEqual(2);
      expect(last).toBeLessThanOrEqual(254);
      // Router and DNS server: the host's end of the bridge.
      expect([...offer.options.get(3)!]).toEqual([192, 168, 122, 1]);
      expect([...offer.options.get(6)!]).toEqual([192, 168, 122, 1]);

      const requested = offer.yourIp.split('.').map(Number);
      const ack = exchange(tap.fd, dhcpFrame(mac, xid, [[53, [DhcpMessage.REQUEST]], [50, requested], [54, [192, 168, 122, 1]], [12, hostname]]),
        (frame) => {
          const reply = parseDhcpReply(frame, xid);
          return reply?.type === DhcpMessage.ACK ? reply : null;
        });
      expect(ack.yourIp).toBe(offer.yourIp);

      const table = ok('net-dhcp-leases', 'default').split('\n');
      // virsh's columns: each as wide as its widest cell, three spaces apart.
      expect(table[0]).toMatch(/^ Expiry Time {11}MAC address {9}Protocol {3}IP address +Hostname {4}Client ID or DUID$/);
      const row = table.find((line) => line.includes('52:54:00:5e:11:01'));
      expect(row).toMatch(new RegExp(`^ \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d   52:54:00:5e:11:01   ipv4       ${offer.yourIp.replace(/\./g, '\\.')}/24 +leasetest +-$`));
      expect(ok('net-dhcp-leases', 'default', '--mac', '52:54:00:00:00:99').split('\n')).toHaveLength(4);
    } finally {
      closeFd(tap.fd);
    }
  });

  it.skipIf(!hasKvm)('a domain on the network runs with a vnetN in the bridge (the guest\'s MAC with fe:), gone when the domain ends', () => {
    const file = join(stateDir, 'guest.xml');
    writeFileSync(file, `<domain type='kvm'>
  <name>guest</name>
  <memory unit='MiB'>32</memory>
  <os>
    <type arch='x86_64'>hvm</type>
    <kernel>${counterKernel()}</kernel>
    <cmdline>pages=16 every=4096</cmdline>
  </os>
  <devices>
    <interface type='network'>
      <mac address='52:54:00:0d:0e:0f'/>
      <source network='default'/>
      <model type='virtio'/>
    </interface>
    <serial type='pty'><target port='0'/></serial>
  </devices>
</domain>
`);
    ok('define', file);
    ok('start', 'guest');
    try {
      const ports = JSON.parse(ns.ip('-j', 'link', 'show', 'master', 'tsvbr0')) as { ifname: string; address: string; flags: string[] }[];
      const vnet = ports.find((port) => /^vnet\d+$/.test(port.ifname));
      expect(vnet, JSON.stringify(ports)).toBeDefined();
      expect(vnet!.address).toBe('fe:54:00:0d:0e:0f');
      expect(vnet!.flags).toContain('UP');
      expect(ok('dumpxml', 'guest')).toContain("<interface type='network'>\n      <mac address='52:54:00:0d:0e:0f'/>\n      <source network='default'/>");
      ok('destroy', 'guest');
      expect(linkExists(vnet!.ifname)).toBe(false);
    } finally {
      virsh('destroy', 'guest');
    }
  });

  it.skipIf(!hasKvm)('type=\'bridge\' joins a bridge of the host\'s with its <target dev> name; a missing bridge is one line', () => {
    ns.ip('link', 'add', 'hostbr0', 'type', 'bridge');
    const file = join(stateDir, 'bridged.xml');
    const domainXml = (bridge: string) => `<domain type='kvm'><name>bridged</name><uuid>0b0b0b0b-0b0b-4b0b-8b0b-0b0b0b0b0b0b</uuid><memory unit='MiB'>32</memory>
      <os><type arch='x86_64'>hvm</type><kernel>${counterKernel()}</kernel><cmdline>pages=16 every=4096</cmdline></os>
      <devices><interface type='bridge'><mac address='52:54:00:0b:0b:0b'/><source bridge='${bridge}'/><target dev='web0'/></interface></devices></domain>`;
    try {
      writeFileSync(file, domainXml('hostbr0'));
      ok('define', file);
      ok('start', 'bridged');
      const [port] = JSON.parse(ns.ip('-j', 'link', 'show', 'master', 'hostbr0')) as { ifname: string; address: string }[];
      expect(port).toMatchObject({ ifname: 'web0', address: 'fe:54:00:0b:0b:0b' });
      ok('destroy', 'bridged');
      expect(linkExists('web0')).toBe(false);

      writeFileSync(file, domainXml('nosuchbr0'));
      ok('define', file);
      const refused = virsh('start', 'bridged');
      expect(refused.status).toBe(2);
      expect(refused.stderr).toMatch(/^tsvmm: domain 'bridged' did not start: SIOCBRADDIF: ENODEV — adding web0 to bridge nosuchbr0: there is no interface nosuchbr0: create the bridge first/);
      expect(refused.stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(linkExists('web0')).toBe(false);
    } finally {
      virsh('destroy', 'bridged');
      virsh('undefine', 'bridged');
      ns.ip('link', 'delete', 'hostbr0');
    }
  });

  it('net-destroy removes the bridge, the table and dnsmasq, and nothing else', () => {
    expect(ok('net-destroy', 'default')).toBe('Network default destroyed\n\n');
    expect(linkExists('tsvbr0')).toBe(false);
    expect(tables()).not.toContain('tsvmm-default');
    expect(dnsmasqs()).toEqual([]);
    expect(existsSync(join(stateDir, 'run', 'networks', 'default'))).toBe(false);
    expect(ok('net-list', '--all')).toContain(' default   inactive   yes         yes');
    expect(virsh('net-destroy', 'default').stderr).toBe("tsvmm: network 'default' is not active\n");
  });

  it('net-start refuses a subnet the host has already, and leaves nothing behind', () => {
    ns.ip('link', 'add', 'taken0', 'type', 'bridge');
    ns.ip('address', 'add', '192.168.122.77/24', 'dev', 'taken0');
    ns.ip('link', 'set', 'dev', 'taken0', 'up');
    try {
      const result = virsh('net-start', 'default');
      expect(result.status).toBe(2);
      expect(result.stderr).toBe("tsvmm: network 'default': 192.168.122.0/24 is already in use by interface taken0 (route 192.168.122.0/24)\n");
      expect(linkExists('tsvbr0')).toBe(false);
      expect(tables()).not.toContain('tsvmm-default');
      expect(dnsmasqs()).toEqual([]);
    } finally {
      ns.ip('link', 'delete', 'taken0');
    }
  });

  it('net-define, net-autostart and start-autostarted: an isolated network of the user\'s is started with the default one; net-undefine', () => {
    const file = join(stateDir, 'iso.xml');
    writeFileSync(file, "<network>\n  <name>iso</name>\n  <ip address='10.99.0.1' prefix='24'/>\n</network>\n");
    expect(ok('net-define', file)).toBe(`Network iso defined from ${file}\n\n`);
    expect(ok('net-dumpxml', 'iso')).toContain("<bridge name='tsvbr1' stp='on' delay='0'/>");
    expect(ok('net-autostart', 'iso')).toBe('Network iso marked as autostarted\n\n');
    const started = ok('start-autostarted');
    expect(started).toContain('Network default started\n');
    expect(started).toContain('Network iso started\n');
    expect(ok('net-list')).toBe([
      ' Name      State    Autostart   Persistent',
      '--------------------------------------------',
      ' default   active   yes         yes',
      ' iso       active   yes         yes',
      '', '',
    ].join('\n'));
    // No DHCP on it, but DNS, as libvirt gives every network with an address: a dnsmasq each.
    expect(dnsmasqs()).toHaveLength(2);
    expect(ns.exec(['ss', '-ulnp'])).toMatch(/10\.99\.0\.1%?\w*:53 .*dnsmasq/);
    expect(ns.exec(['nft', 'list', 'table', 'ip', 'tsvmm-iso'])).not.toContain('masquerade');
    expect(virsh('net-undefine', 'iso').stderr).toBe("tsvmm: cannot undefine network 'iso': it is active (net-destroy it first)\n");
    ok('net-destroy', 'iso');
    ok('net-destroy', 'default');
    // A domain on an inactive network that is not marked autostart does not start, as libvirt refuses it.
    expect(ok('net-autostart', 'iso', '--disable')).toBe('Network iso unmarked as autostarted\n\n');
    const domainFile = join(stateDir, 'on-iso.xml');
    writeFileSync(domainFile, `<domain type='kvm'><name>on-iso</name><memory unit='MiB'>32</memory>
      <os><type arch='x86_64'>hvm</type><kernel>${counterKernel()}</kernel></os>
      <devices><interface type='network'><source network='iso'/></interface></devices></domain>`);
    ok('define', domainFile);
    const refused = virsh('start', 'on-iso');
    expect(refused.status).toBe(2);
    expect(refused.stderr).toBe("tsvmm: network 'iso' is not active (start it with net-start iso)\n");
    expect(linkExists('tsvbr1')).toBe(false);
    ok('undefine', 'on-iso');
    expect(ok('net-undefine', 'iso')).toBe('Network iso has been undefined\n\n');
    expect(linkExists('tsvbr1')).toBe(false);
    expect(tables()).not.toMatch(/tsvmm-/);
    expect(dnsmasqs()).toEqual([]);
    expect(readdirSync(join(stateDir, 'run', 'networks')).filter((f) => !f.endsWith('.lock'))).toEqual([]);
  });
});
