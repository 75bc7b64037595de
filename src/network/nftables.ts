// A network's firewall: one nftables table of its own (`ip tsvmm-NAME`), so
// that net-destroy removes exactly what net-start added and leaves every
// other rule on the host alone. The rules are libvirt's: guests may go out
// (and, behind NAT, be masqueraded), answers may come back in, guests reach
// each other over the bridge, and everything else to or from the bridge is
// refused.
import { writeFileSync } from 'node:fs';
import { InputError } from '../errors.ts';
import type { NetworkDefinition } from './definition.ts';
import { runHostCommand } from './host-command.ts';
import { subnetText } from './ipv4.ts';

export function tableName(network: string): string {
  return `tsvmm-${network}`;
}

/** The table as an `nft -f` script. */
export function rulesetFor(definition: NetworkDefinition): string {
  const bridge = `"${definition.bridge.name}"`;
  const subnet = definition.ip ? subnetText(definition.ip) : null;
  const forward = [
    ...(subnet && definition.forward === 'nat' ? [`oifname ${bridge} ip daddr ${subnet} ct state related,established accept`] : []),
    ...(subnet && definition.forward === 'route' ? [`oifname ${bridge} ip daddr ${subnet} accept`] : []),
    ...(subnet && definition.forward !== 'isolated' ? [`iifname ${bridge} ip saddr ${subnet} accept`] : []),
    `iifname ${bridge} oifname ${bridge} accept`,
    `iifname ${bridge} reject`,
    `oifname ${bridge} reject`,
  ];
  const postrouting = subnet && definition.forward === 'nat'
    ? [
      // Multicast and broadcast stay on the network, unrewritten.
      `ip saddr ${subnet} ip daddr 224.0.0.0/24 return`,
      `ip saddr ${subnet} ip daddr 255.255.255.255 return`,
      `ip saddr ${subnet} ip daddr != ${subnet} masquerade`,
    ]
    : [];
  const chain = (name: string, hook: string, rules: string[]) => [
    `  chain ${name} {`,
    `    ${hook}`,
    ...rules.map((rule) => `    ${rule}`),
    '  }',
  ];
  return [
    `table ip ${tableName(definition.name)} {`,
    ...chain('forward', 'type filter hook forward priority filter; policy accept;', forward),
    ...(postrouting.length ? chain('postrouting', 'type nat hook postrouting priority srcnat; policy accept;', postrouting) : []),
    '}',
    '',
  ].join('\n');
}

/** Adds the network's table (replacing one a crashed start left) and lets the host forward for it. */
export function addTable(definition: NetworkDefinition): void {
  deleteTable(definition.name);
  runHostCommand('nft', ['-f', '-'], rulesetFor(definition));
  // As libvirt does: a NAT or routed network needs the host to forward IPv4 (per network namespace).
  if (definition.forward === 'isolated') return;
  try {
    writeFileSync('/proc/sys/net/ipv4/ip_forward', '1\n');
  } catch (e) {
    throw new InputError(`network '${definition.name}': cannot turn on IPv4 forwarding (/proc/sys/net/ipv4/ip_forward: ${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
}

export function tableExists(network: string): boolean {
  return runHostCommand('nft', ['list', 'tables', 'ip']).split('\n').some((line) => line.trim() === `table ip ${tableName(network)}`);
}

/** Deletes the network's table and nothing else; nothing when it is gone. */
export function deleteTable(network: string): void {
  if (tableExists(network)) runHostCommand('nft', ['delete', 'table', 'ip', tableName(network)]);
}
