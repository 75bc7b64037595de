// DHCP and DNS for a network, by Debian's dnsmasq as libvirt runs it: one
// daemon per network, bound to its bridge only, with a configuration file,
// pid file and lease database in the network's run folder.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { InputError } from '../errors.ts';
import type { NetworkDefinition } from './definition.ts';
import { runHostCommand } from './host-command.ts';
import { formatIpv4, networkOf, prefixMask } from './ipv4.ts';
import type { NetworkRunFiles } from './network-store.ts';

const STOP_TIMEOUT_MS = 5000;
const POLL_MS = 20;

/** The configuration file, as libvirt writes one for its networks. */
export function dnsmasqConfig(definition: NetworkDefinition, files: NetworkRunFiles): string {
  const lines = [
    `# dnsmasq for tsvmm network '${definition.name}', written by net-start: edits are lost`,
    'strict-order',
    `pid-file=${files.dnsmasqPid}`,
    // Only the network's bridge, and still when it comes back: never the host's other interfaces.
    'except-interface=lo',
    'bind-dynamic',
    `interface=${definition.bridge.name}`,
    // It drops root once its sockets are open (it keeps the lease file it opened).
    'user=nobody',
  ];
  const dhcp = definition.ip?.dhcp;
  if (dhcp) {
    const netmask = formatIpv4(prefixMask(definition.ip!.prefix));
    const size = dhcp.ranges.reduce((sum, range) => sum + range.end - range.start + 1, 0) + dhcp.hosts.length;
    lines.push(
      ...dhcp.ranges.map((range) => `dhcp-range=${formatIpv4(range.start)},${formatIpv4(range.end)},${netmask}`),
      // Fixed addresses need a range in their subnet to be served: a static one when the network has no pool.
      ...(dhcp.ranges.length === 0 ? [`dhcp-range=${formatIpv4(networkOf(definition.ip!))},static,${netmask}`] : []),
      ...dhcp.hosts.map((host) => `dhcp-host=${host.mac},${formatIpv4(host.ip)}${host.name !== undefined ? `,${host.name}` : ''}`),
      'dhcp-no-override',
      'dhcp-authoritative',
      `dhcp-lease-max=${size}`,
      `dhcp-leasefile=${files.leases}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

/** Starts dnsmasq; it returns once the daemon has its sockets (dnsmasq's own parent waits for that), or says why it could not. */
export function startDnsmasq(definition: NetworkDefinition, files: NetworkRunFiles): number {
  writeFileSync(files.dnsmasqConfig, dnsmasqConfig(definition, files), { mode: 0o644 });
  runHostCommand('dnsmasq', [`--conf-file=${files.dnsmasqConfig}`]);
  const pid = dnsmasqPid(files);
  if (pid === null) throw new InputError(`network '${definition.name}': dnsmasq started but left no pid file (${files.dnsmasqPid})`);
  return pid;
}

/** The pid in the pid file, if that process is still this network's dnsmasq (pids are reused). */
export function dnsmasqPid(files: NetworkRunFiles): number | null {
  let pid: number;
  try {
    pid = Number(readFileSync(files.dnsmasqPid, 'utf8').trim());
  } catch {
    return null;
  }
  if (!Number.isSafeInteger(pid) || pid <= 0) return null;
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return argv.includes(`--conf-file=${files.dnsmasqConfig}`) ? pid : null;
  } catch {
    return null;
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Sends a signal to a process that may have ended meanwhile (ESRCH: nothing to do). */
function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw new InputError(`dnsmasq (pid ${pid}): cannot send ${name}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
}

/** Ends the network's dnsmasq (SIGTERM, then SIGKILL) and removes its pid file; its leases go with the run folder. */
export function stopDnsmasq(files: NetworkRunFiles): void {
  const pid = dnsmasqPid(files);
  if (pid !== null) {
    signal(pid, 'SIGTERM');
    const deadline = Date.now() + STOP_TIMEOUT_MS;
    while (dnsmasqPid(files) === pid && Date.now() < deadline) sleepSync(POLL_MS);
    if (dnsmasqPid(files) === pid) signal(pid, 'SIGKILL');
  }
  rmSync(files.dnsmasqPid, { force: true });
}

/** One line of dnsmasq's lease database: "EXPIRY MAC IP HOSTNAME CLIENT-ID" ("*" for an unknown field). */
export interface DhcpLease {
  /** Seconds since the epoch; 0 for a lease that never expires. */
  expiry: number;
  mac: string;
  ip: string;
  hostname: string | null;
  clientId: string | null;
}

export function readLeases(files: NetworkRunFiles): DhcpLease[] {
  let text: string;
  try {
    text = readFileSync(files.leases, 'utf8');
  } catch {
    return [];
  }
  return text.split('\n').flatMap((line) => {
    const [expiry, mac, ip, hostname, clientId] = line.trim().split(/\s+/);
    // IPv6 leases and the "duid" line have other shapes; a tsvmm network is IPv4.
    if (!expiry || !mac || !ip || !/^\d+$/.test(expiry) || !/^\d+\.\d+\.\d+\.\d+$/.test(ip)) return [];
    return [{ expiry: Number(expiry), mac, ip, hostname: hostname && hostname !== '*' ? hostname : null, clientId: clientId && clientId !== '*' ? clientId : null }];
  });
}
