// Two domains of the default guest on the default network, as a libvirt user
// sees them on a fresh machine: the network is defined on first use and
// started by the first domain that needs it (it is marked autostart); each
// guest leases an address from dnsmasq and pings the gateway and the other.
// Everything runs in a network namespace the test creates and removes.
// Outside the default suite (two Linux boots): `npm run test:boots`.
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defaultLinuxGuest } from '../../src/cli/guest.ts';
import { GuestConsole } from '../helpers/guest-console.ts';
import { hasKvm, TSVMM, type CliResult } from '../helpers/kvm.ts';
import { netnsUnavailable, TestNetns } from '../helpers/netns.ts';

const tools = ['nft', 'dnsmasq'].filter((tool) => spawnSync(tool, ['--version']).error !== undefined);
const unavailable = !hasKvm ? 'no /dev/kvm' : netnsUnavailable ?? (tools.length ? `${tools.join(' and ')} not installed (Debian packages nftables, dnsmasq-base)` : null);
if (unavailable) console.warn(`network-default boot test: skipped: ${unavailable}`);

const GUESTS = [
  { name: 'net-a', mac: '52:54:00:7e:00:0a' },
  { name: 'net-b', mac: '52:54:00:7e:00:0b' },
];

describe.skipIf(unavailable !== null)('two domains on the default network', () => {
  let ns: TestNetns;
  const stateDir = mkdtempSync(join(tmpdir(), 'tsvmm-netboot-'));
  const consoles = new Map<string, GuestConsole>();
  const addresses = new Map<string, string>();

  function virsh(...args: string[]): CliResult {
    const [file, wrapped] = ns.wrap([process.execPath, TSVMM, ...args, '--state-dir', stateDir]);
    const result = spawnSync(file, wrapped, { encoding: 'utf8', timeout: 180_000, env: { ...process.env, NODE_NO_WARNINGS: '1' } });
    return { status: result.status, stdout: result.stdout, stderr: result.stderr };
  }

  function ok(...args: string[]): string {
    const result = virsh(...args);
    expect(result.status, `tsvmm ${args.join(' ')}: ${result.stderr}`).toBe(0);
    return result.stdout;
  }

  beforeAll(async () => {
    await defaultLinuxGuest({ quiet: true });
    ns = TestNetns.create();
    for (const { name, mac } of GUESTS) {
      const file = join(stateDir, `${name}.xml`);
      writeFileSync(file, `<domain type='kvm'>
  <name>${name}</name>
  <memory unit='MiB'>256</memory>
  <os>
    <type arch='x86_64'>hvm</type>
  </os>
  <devices>
    <interface type='network'>
      <mac address='${mac}'/>
      <source network='default'/>
      <model type='virtio'/>
    </interface>
    <serial type='pty'><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
  </devices>
</domain>
`);
      ok('define', file);
    }
  }, 30 * 60_000);

  afterAll(() => {
    for (const console of consoles.values()) console.child.kill('SIGKILL');
    if (ns) {
      for (const { name } of GUESTS) virsh('destroy', name);
      virsh('net-destroy', 'default');
      // Anything still in the namespace was started here.
      ns.killProcesses();
      ns.remove();
    }
    rmSync(stateDir, { recursive: true, force: true });
  });

  it('starting the first domain starts the default network (autostart); both boot to a shell', async () => {
    expect(ok('net-list', '--all')).toContain(' default   inactive   yes         yes');
    for (const { name } of GUESTS) ok('start', name);
    expect(ok('net-list')).toContain(' default   active   yes         yes');
    for (const { name } of GUESTS) {
      const child = spawn(process.execPath, [TSVMM, 'console', name, '--state-dir', stateDir], { stdio: ['pipe', 'pipe', 'pipe'] }) as ChildProcessWithoutNullStreams;
      consoles.set(name, new GuestConsole(child));
    }
    for (const { name } of GUESTS) {
      const console = consoles.get(name)!;
      // The console attaches mid-boot: a newline brings a prompt once the shell is there.
      const prompt = setInterval(() => console.type('\n'), 5000);
      try {
        await console.waitFor(/tsvmm:\/# /, 1_200_000);
      } finally {
        clearInterval(prompt);
      }
    }
  }, 1_300_000);

  it('each guest leases an address in 192.168.122.0/24 from the network\'s dnsmasq', async () => {
    for (const { name } of GUESTS) consoles.get(name)!.type('udhcpc -i eth0 -q -n -t 20 -T 2 -s /usr/share/udhcpc/default.script && echo "LEASED $(ip -4 -o addr show dev eth0)"\n');
    for (const { name } of GUESTS) {
      const m = await consoles.get(name)!.waitFor(/LEASED \d+: eth0\s+inet (192\.168\.122\.\d+)\/24/, 300_000);
      addresses.set(name, m[1]!);
    }
    expect(new Set(addresses.values()).size).toBe(2);
    const leases = ok('net-dhcp-leases', 'default');
    for (const { name, mac } of GUESTS) expect(leases).toMatch(new RegExp(`${mac}   ipv4       ${addresses.get(name)!.replace(/\./g, '\\.')}/24`));
  }, 320_000);

  it('each pings the gateway and the other guest', async () => {
    const [a, b] = GUESTS as [typeof GUESTS[0], typeof GUESTS[0]];
    const pings: [string, string, string][] = [
      [a.name, '192.168.122.1', 'GW-A'], [b.name, '192.168.122.1', 'GW-B'],
      [a.name, addresses.get(b.name)!, 'PEER-A'], [b.name, addresses.get(a.name)!, 'PEER-B'],
    ];
    for (const [name, target, tag] of pings) {
      const console = consoles.get(name)!;
      console.type(`ping -c 2 -W 10 ${target} >/dev/null && echo "${tag}-$((6 * 7))" || echo "${tag}-failed"\n`);
      const m = await console.waitFor(new RegExp(`${tag}-(42|failed)\\r?\\n`), 120_000);
      expect(m[1], `${name} pinging ${target}`).toBe('42');
    }
  }, 600_000);
});
