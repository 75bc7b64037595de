// virsh's network verbs under tsvmm: net-define, net-start, net-destroy,
// net-list, net-dumpxml, net-autostart, net-dhcp-leases... with virsh's
// option names and output. Definitions and the state of active networks
// live in the state folder (src/network); the `default` network is defined
// on first use.
import type { Command } from 'commander';
import { writeSync } from 'node:fs';
import { InputError } from '../errors.ts';
import { formatKeyValues, formatTable, stateFolders } from '../domain/index.ts';
import {
  activeNetwork, destroyNetwork, ensureDefaultNetwork, networkToXml, NetworkStore, readLeases, readNetworkFile, startAutostartedNetworks, startNetwork,
  type NetworkDefinition,
} from '../network/index.ts';
import type { StateFolders } from '../domain/index.ts';
import type { StateOption } from './domain-runtime.ts';

const say = (text: string) => writeSync(1, text);

/** The state folder's networks, with the default one defined if this is the first use. */
function storeOf(options: StateOption): NetworkStore {
  const store = new NetworkStore(stateFolders(options.stateDir));
  ensureDefaultNetwork(store);
  return store;
}

function netDefine(file: string, options: StateOption): void {
  const store = storeOf(options);
  let bridgeNamed = true;
  const definition = readNetworkFile(file, () => {
    bridgeNamed = false;
    return store.freeBridgeName();
  });
  // A redefinition that names no bridge keeps the one the network has.
  const previous = !bridgeNamed && store.has(definition.name) ? store.find(definition.name) : null;
  store.define(previous ? { ...definition, bridge: { ...definition.bridge, name: previous.bridge.name } } : definition);
  say(`Network ${definition.name} defined from ${file}\n\n`);
}

function netUndefine(key: string, options: StateOption): void {
  const store = storeOf(options);
  const definition = store.find(key);
  if (activeNetwork(store, definition.name)) throw new InputError(`cannot undefine network '${definition.name}': it is active (net-destroy it first)`);
  store.undefine(definition.name);
  say(`Network ${definition.name} has been undefined\n\n`);
}

function netStart(key: string, options: StateOption): void {
  const store = storeOf(options);
  const definition = store.find(key);
  startNetwork(store, definition);
  say(`Network ${definition.name} started\n\n`);
}

function netDestroy(key: string, options: StateOption): void {
  const store = storeOf(options);
  const definition = store.find(key);
  destroyNetwork(store, definition.name);
  say(`Network ${definition.name} destroyed\n\n`);
}

function netList(options: StateOption & { all?: boolean; inactive?: boolean }): void {
  const store = storeOf(options);
  const rows = store.all()
    .map((definition) => ({ definition, active: activeNetwork(store, definition.name) !== null }))
    .filter(({ active }) => (options.inactive ? !active : active || options.all))
    .map(({ definition, active }) => [definition.name, active ? 'active' : 'inactive', store.autostart(definition.name) ? 'yes' : 'no', 'yes']);
  say(formatTable(['Name', 'State', 'Autostart', 'Persistent'], rows));
}

function netInfo(key: string, options: StateOption): void {
  const store = storeOf(options);
  const definition = store.find(key);
  const running = activeNetwork(store, definition.name);
  say(formatKeyValues([
    ['Name', definition.name],
    ['UUID', definition.uuid],
    ['Active', running ? 'yes' : 'no'],
    ['Persistent', 'yes'],
    ['Autostart', store.autostart(definition.name) ? 'yes' : 'no'],
    ['Bridge', (running ?? definition).bridge.name],
  ]));
}

/** The network as it runs when it is active (as virsh shows it), its definition otherwise or with --inactive. */
function netDumpxml(key: string, options: StateOption & { inactive?: boolean }): void {
  const store = storeOf(options);
  const definition = store.find(key);
  const shown: NetworkDefinition = (!options.inactive && activeNetwork(store, definition.name)) || definition;
  say(networkToXml(shown));
}

function netAutostart(key: string, options: StateOption & { disable?: boolean }): void {
  const store = storeOf(options);
  const definition = store.find(key);
  store.setAutostart(definition.name, !options.disable);
  say(`Network ${definition.name} ${options.disable ? 'unmarked' : 'marked'} as autostarted\n\n`);
}

const pad2 = (n: number) => String(n).padStart(2, '0');

/** virsh's "%Y-%m-%d %H:%M:%S", in local time. */
function localTime(seconds: number): string {
  const t = new Date(seconds * 1000);
  return `${t.getFullYear()}-${pad2(t.getMonth() + 1)}-${pad2(t.getDate())} ${pad2(t.getHours())}:${pad2(t.getMinutes())}:${pad2(t.getSeconds())}`;
}

/** The leases dnsmasq handed out on an active network, in virsh's table. */
function netDhcpLeases(key: string, options: StateOption & { mac?: string }): void {
  const store = storeOf(options);
  const definition = store.find(key);
  const running = activeNetwork(store, definition.name);
  if (!running) throw new InputError(`network '${definition.name}' is not active`);
  const mac = options.mac?.toLowerCase();
  const rows = readLeases(store.runFiles(definition.name))
    .filter((lease) => mac === undefined || lease.mac.toLowerCase() === mac)
    .map((lease) => [
      localTime(lease.expiry), lease.mac, 'ipv4', `${lease.ip}/${running.ip?.prefix ?? 32}`, lease.hostname ?? '-', lease.clientId ?? '-',
    ]);
  say(formatTable(['Expiry Time', 'MAC address', 'Protocol', 'IP address', 'Hostname', 'Client ID or DUID'], rows));
}

/** start-autostarted's first half: the autostart networks, before the domains that use them. True when one failed (each said in one line). */
export function startAutostartedNetworksIn(folders: StateFolders): boolean {
  const { started, failed } = startAutostartedNetworks(new NetworkStore(folders));
  for (const name of started) say(`Network ${name} started\n`);
  for (const error of failed) writeSync(2, `tsvmm: ${error.message}\n`);
  return failed.length > 0;
}

export function registerNetworkCommands(cli: Command): void {
  const verb = (name: string, description: string) => cli.command(name).description(description)
    .option('--state-dir <dir>', 'where definitions and active networks live (default: /var/lib/tsvmm and /run/tsvmm as root, the XDG folders otherwise; or $TSVMM_STATE_DIR)');
  const networkArgument = ['<network>', 'network name or UUID'] as const;

  verb('net-define', 'define a network from libvirt network XML').argument('<file>').action((file: string, o: StateOption) => netDefine(file, o));
  verb('net-undefine', 'remove an inactive network\'s definition').argument(...networkArgument).action(netUndefine);
  verb('net-start', 'start a network: its bridge, firewall table and dnsmasq').argument(...networkArgument).action(netStart);
  verb('net-destroy', 'stop an active network, removing what net-start added').argument(...networkArgument).action(netDestroy);
  verb('net-list', 'list networks').option('--all', 'include inactive networks').option('--inactive', 'only inactive networks').action(netList);
  verb('net-info', 'network information').argument(...networkArgument).action(netInfo);
  verb('net-dumpxml', 'the network\'s XML').argument(...networkArgument).option('--inactive', 'the definition, not what runs').action(netDumpxml);
  verb('net-autostart', 'mark a network to be started by start-autostarted (and by the domains that use it)').argument(...networkArgument)
    .option('--disable', 'unmark it').action(netAutostart);
  verb('net-dhcp-leases', 'the DHCP leases of an active network').argument(...networkArgument)
    .option('--mac <mac>', 'only the leases of this MAC address').action(netDhcpLeases);
}
