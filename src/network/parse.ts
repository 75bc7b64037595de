// libvirt network XML → NetworkDefinition, read as strictly as domain XML
// (src/domain's ElementReader): each element tsvmm knows is read by one
// function below, and whatever else a file has is refused with its line.
import { randomBytes, randomUUID } from 'node:crypto';
import { ElementReader } from '../domain/element-reader.ts';
import { readXmlDocument } from '../domain/xml-document.ts';
import type { DhcpDefinition, ForwardMode, NetworkDefinition } from './definition.ts';
import { formatIpv4, isHostOf, maskPrefix, parseIpv4, type Ipv4Interface } from './ipv4.ts';

/** A name tsvmm can use as a file name, in nftables' table name and on a command line. */
const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;
/** A bridge name the kernel takes (IFNAMSIZ - 1 bytes) and that needs no quoting anywhere. */
const BRIDGE = /^[A-Za-z0-9_.-]{1,15}$/;
const UUID = /^[0-9a-f]{8}(?:-?[0-9a-f]{4}){3}-?[0-9a-f]{12}$/i;
const MAC = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/i;
/** dnsmasq's host names: letters, digits and dashes, dot-separated. */
const HOST_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))*$/;

/**
 * Reads a network definition; `fileName` is what error messages name.
 * `bridgeFor` gives a bridge name when the XML has none (tsvbr0, tsvbr1, ...:
 * the caller knows which the other networks have).
 */
export function parseNetworkXml(text: string, fileName: string, bridgeFor: () => string = () => 'tsvbr0'): NetworkDefinition {
  const network = new ElementReader(readXmlDocument(text, fileName), fileName);
  if (network.name !== 'network') throw network.error('the root element of a network definition is <network>');
  // The number of interfaces connected, which libvirt writes into a running network's XML: it describes, it does not define.
  network.attribute('connections');
  const name = readName(network);
  const uuidElement = network.child('uuid');
  const definition: NetworkDefinition = {
    name,
    uuid: uuidElement ? readUuid(uuidElement) : randomUUID(),
    forward: readForward(network),
    bridge: readBridge(network, bridgeFor),
    mac: readMac(network),
    ip: readIp(network),
  };
  if (definition.forward !== 'isolated' && !definition.ip) {
    throw network.error(`<forward mode='${definition.forward}'> needs an <ip address='...' netmask='...'> for the network`);
  }
  network.finish();
  return definition;
}

function readName(network: ElementReader): string {
  const element = network.child('name');
  if (!element) throw network.error('needs a <name>');
  const name = element.text().trim();
  if (!NAME.test(name)) throw element.error(`"${name}" is not a name tsvmm can use: up to 64 letters, digits and _ . -, not starting with . or -`);
  element.finish();
  return name;
}

function readUuid(element: ElementReader): string {
  const text = element.text().trim();
  if (!UUID.test(text)) throw element.error(`"${text}" is not a UUID (like 5a1c2f3e-0b7d-4c4e-9f21-6a2b8d0c1e33)`);
  element.finish();
  const hex = text.replace(/-/g, '').toLowerCase();
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** <forward mode='nat'/> (also <forward/>: nat is libvirt's default mode) or mode='route'; none: isolated. */
function readForward(network: ElementReader): ForwardMode {
  const forward = network.child('forward');
  if (!forward) return 'isolated';
  const mode = forward.choice('mode', ['nat', 'route'], 'tsvmm builds NAT and routed networks (mode=\'nat\' or \'route\'), or isolated ones (no <forward>)') ?? 'nat';
  forward.finish();
  return mode;
}

function readBridge(network: ElementReader, bridgeFor: () => string): NetworkDefinition['bridge'] {
  const element = network.child('bridge');
  if (!element) return { name: bridgeFor(), stp: true, delay: 0 };
  const name = element.attribute('name') ?? bridgeFor();
  if (!BRIDGE.test(name)) throw element.error(`name='${name}' is not an interface name (1 to 15 letters, digits and _ . -)`);
  const stp = element.choice('stp', ['on', 'off'], 'spanning tree is on or off') ?? 'on';
  const delayText = element.attribute('delay') ?? '0';
  if (!/^\d{1,2}$/.test(delayText) || Number(delayText) > 30) throw element.error(`delay='${delayText}' is not a forwarding delay in seconds (0 to 30)`);
  element.finish();
  return { name, stp: stp === 'on', delay: Number(delayText) };
}

/** <mac address='52:54:00:...'/>, or one generated in QEMU's range as libvirt does. */
function readMac(network: ElementReader): string {
  const element = network.child('mac');
  if (!element) return ['52', '54', '00', ...[...randomBytes(3)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
  const address = element.requiredAttribute('address').toLowerCase();
  if (!MAC.test(address) || parseInt(address.slice(0, 2), 16) & 1) throw element.error(`address='${address}' is not a unicast MAC address (like 52:54:00:12:34:56)`);
  element.finish();
  return address;
}

function readAddress(element: ElementReader, attribute: string): number {
  const text = element.requiredAttribute(attribute);
  const address = parseIpv4(text);
  if (address === null) throw element.error(`${attribute}='${text}' is not an IPv4 address`);
  return address;
}

/** <ip address='192.168.122.1' netmask='255.255.255.0'> (or prefix='24'), with its <dhcp>. IPv4 only. */
function readIp(network: ElementReader): NetworkDefinition['ip'] {
  const [element, second] = network.children('ip');
  if (!element) return null;
  if (second) throw second.error('tsvmm gives a network one IPv4 address');
  element.choice('family', ['ipv4'], 'tsvmm networks are IPv4');
  const address = readAddress(element, 'address');
  const netmask = element.attribute('netmask');
  const prefixText = element.attribute('prefix');
  if ((netmask === undefined) === (prefixText === undefined)) throw element.error('needs a netmask=\'255.255.255.0\' or a prefix=\'24\' (one of them)');
  let prefix: number | null;
  if (netmask !== undefined) {
    const mask = parseIpv4(netmask);
    prefix = mask === null ? null : maskPrefix(mask);
    if (prefix === null) throw element.error(`netmask='${netmask}' is not a netmask`);
  } else {
    prefix = /^\d{1,2}$/.test(prefixText!) ? Number(prefixText) : null;
    if (prefix === null || prefix > 32) throw element.error(`prefix='${prefixText}' is not a prefix length (0 to 32)`);
  }
  if (prefix < 8 || prefix > 30) throw element.error(`a /${prefix} network: tsvmm builds networks from /8 to /30`);
  const ip: Ipv4Interface = { address, prefix };
  if (!isHostOf(ip, address)) throw element.error(`address='${formatIpv4(address)}' is the subnet's network or broadcast address, not a host's`);
  const dhcpElement = element.child('dhcp');
  const dhcp = dhcpElement ? readDhcp(dhcpElement, ip) : null;
  element.finish();
  return { ...ip, dhcp };
}

function readDhcp(dhcp: ElementReader, ip: Ipv4Interface): DhcpDefinition {
  const inSubnet = (element: ElementReader, attribute: string): number => {
    const address = readAddress(element, attribute);
    if (!isHostOf(ip, address)) throw element.error(`${attribute}='${formatIpv4(address)}' is not a host address of the network`);
    if (address === ip.address) throw element.error(`${attribute}='${formatIpv4(address)}' is the host's own address on the network`);
    return address;
  };
  const ranges = dhcp.children('range').map((range) => {
    const start = inSubnet(range, 'start');
    const end = inSubnet(range, 'end');
    if (end < start) throw range.error(`the range ends (${formatIpv4(end)}) before it starts (${formatIpv4(start)})`);
    range.finish();
    return { start, end };
  });
  const macs = new Set<string>();
  const hosts = dhcp.children('host').map((host) => {
    const mac = host.requiredAttribute('mac').toLowerCase();
    if (!MAC.test(mac)) throw host.error(`mac='${mac}' is not a MAC address`);
    if (macs.has(mac)) throw host.error(`mac='${mac}' has a <host> already`);
    macs.add(mac);
    const address = inSubnet(host, 'ip');
    const name = host.attribute('name');
    if (name !== undefined && !HOST_NAME.test(name)) throw host.error(`name='${name}' is not a host name`);
    host.finish();
    return { mac, ip: address, ...(name !== undefined ? { name } : {}) };
  });
  if (ranges.length === 0 && hosts.length === 0) throw dhcp.error('needs a <range start=\'...\' end=\'...\'/> or a <host .../>');
  dhcp.finish();
  return { ranges, hosts };
}
