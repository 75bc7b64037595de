// NetworkDefinition → network XML, as `virsh net-dumpxml` prints it:
// libvirt's element order and spelling (the netmask, not a prefix; stp and
// delay on <bridge>), with src/domain's XML writer.
import { XmlWriter } from '../domain/index.ts';
import type { NetworkDefinition } from './definition.ts';
import { formatIpv4, prefixMask } from './ipv4.ts';

export function networkToXml(definition: NetworkDefinition): string {
  const xml = new XmlWriter();
  xml.element('network', {}, () => {
    xml.leaf('name', {}, definition.name);
    xml.leaf('uuid', {}, definition.uuid);
    if (definition.forward !== 'isolated') xml.leaf('forward', { mode: definition.forward });
    const { bridge } = definition;
    xml.leaf('bridge', { name: bridge.name, stp: bridge.stp ? 'on' : 'off', delay: String(bridge.delay) });
    xml.leaf('mac', { address: definition.mac });
    const { ip } = definition;
    if (!ip) return;
    const address = { address: formatIpv4(ip.address), netmask: formatIpv4(prefixMask(ip.prefix)) };
    const { dhcp } = ip;
    if (!dhcp) {
      xml.leaf('ip', address);
      return;
    }
    xml.element('ip', address, () => {
      xml.element('dhcp', {}, () => {
        for (const range of dhcp.ranges) xml.leaf('range', { start: formatIpv4(range.start), end: formatIpv4(range.end) });
        for (const host of dhcp.hosts) xml.leaf('host', { mac: host.mac, ...(host.name !== undefined ? { name: host.name } : {}), ip: formatIpv4(host.ip) });
      });
    });
  });
  return xml.toString();
}
