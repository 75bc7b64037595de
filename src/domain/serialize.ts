// DomainDefinition → domain XML, as `virsh dumpxml` prints it: libvirt's
// element order, two-space indent, single-quoted attributes, memory in KiB,
// and the defaults written out (lifecycle actions, clock, no balloon).
import { RNG_BACKEND, type DiskDefinition, type DomainDefinition, type InterfaceDefinition } from './definition.ts';

type Attributes = Record<string, string>;

export function escapeText(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function escapeAttribute(value: string): string {
  return escapeText(value).replace(/'/g, '&apos;').replace(/"/g, '&quot;');
}

/** Builds the lines of the document, one element or closing tag each (libvirt's layout; src/network and src/pool write their XML with it too). */
export class XmlWriter {
  private readonly lines: string[] = [];
  private depth = 0;

  private open(name: string, attributes: Attributes): string {
    const pairs = Object.entries(attributes).map(([key, value]) => ` ${key}='${escapeAttribute(value)}'`).join('');
    return `${'  '.repeat(this.depth)}<${name}${pairs}`;
  }

  /** <name a='1'/>, or <name a='1'>text</name>. */
  leaf(name: string, attributes: Attributes = {}, text?: string): void {
    this.lines.push(text === undefined ? `${this.open(name, attributes)}/>` : `${this.open(name, attributes)}>${escapeText(text)}</${name}>`);
  }

  /** <name a='1'> ... </name> around what `body` writes. */
  element(name: string, attributes: Attributes, body: () => void): void {
    this.lines.push(`${this.open(name, attributes)}>`);
    this.depth++;
    body();
    this.depth--;
    this.lines.push(`${'  '.repeat(this.depth)}</${name}>`);
  }

  toString(): string {
    return `${this.lines.join('\n')}\n`;
  }
}

/** The definition as XML; `id`, for a running domain, goes on <domain> as libvirt puts it there. */
export function domainToXml(definition: DomainDefinition, id?: number): string {
  const xml = new XmlWriter();
  const kib = String(definition.memoryBytes / 1024);
  xml.element('domain', { type: 'kvm', ...(id !== undefined ? { id: String(id) } : {}) }, () => {
    xml.leaf('name', {}, definition.name);
    xml.leaf('uuid', {}, definition.uuid);
    if (definition.title !== undefined) xml.leaf('title', {}, definition.title);
    if (definition.description !== undefined) xml.leaf('description', {}, definition.description);
    xml.leaf('memory', { unit: 'KiB' }, kib);
    xml.leaf('currentMemory', { unit: 'KiB' }, kib);
    xml.leaf('vcpu', { placement: 'static' }, String(definition.vcpus));
    xml.element('os', {}, () => {
      xml.leaf('type', { arch: 'x86_64' }, 'hvm');
      const { kernel, initrd, cmdline } = definition.os;
      if (kernel !== undefined) xml.leaf('kernel', {}, kernel);
      if (initrd !== undefined) xml.leaf('initrd', {}, initrd);
      if (cmdline !== undefined) xml.leaf('cmdline', {}, cmdline);
    });
    xml.leaf('clock', { offset: 'utc' });
    xml.leaf('on_poweroff', {}, definition.onPoweroff);
    xml.leaf('on_reboot', {}, definition.onReboot);
    xml.leaf('on_crash', {}, definition.onCrash);
    xml.element('devices', {}, () => {
      const { devices } = definition;
      if (devices.emulator !== undefined) xml.leaf('emulator', {}, devices.emulator);
      for (const disk of devices.disks) writeDisk(xml, disk);
      for (const network of devices.interfaces) writeInterface(xml, network);
      if (devices.serial) xml.element('serial', { type: 'pty' }, () => xml.leaf('target', { port: '0' }));
      if (devices.console) xml.element('console', { type: 'pty' }, () => xml.leaf('target', { type: devices.console!, port: '0' }));
      xml.leaf('memballoon', { model: 'none' });
      if (devices.rng) xml.element('rng', { model: 'virtio' }, () => xml.leaf('backend', { model: 'random' }, RNG_BACKEND));
      if (devices.panic) xml.element('panic', { model: 'isa' }, () => xml.leaf('address', { type: 'isa', iobase: '0x505' }));
    });
  });
  return xml.toString();
}

function writeDisk(xml: XmlWriter, disk: DiskDefinition): void {
  const { volume } = disk;
  xml.element('disk', { type: volume ? 'volume' : 'file', device: 'disk' }, () => {
    // A volume's format is the pool's to say; a <driver type> given with it is kept as a check.
    if (!volume) xml.leaf('driver', { name: 'qemu', type: disk.format });
    else if (volume.driverFormat) xml.leaf('driver', { name: 'qemu', type: volume.driverFormat });
    xml.leaf('source', volume ? { pool: volume.pool, volume: volume.volume } : { file: disk.path });
    xml.leaf('target', { dev: disk.target, bus: 'virtio' });
    if (disk.readOnly) xml.leaf('readonly');
    if (disk.serial !== undefined) xml.leaf('serial', {}, disk.serial);
  });
}

function writeInterface(xml: XmlWriter, network: InterfaceDefinition): void {
  xml.element('interface', { type: network.type }, () => {
    xml.leaf('mac', { address: network.mac });
    if (network.type === 'network') xml.leaf('source', { network: network.network });
    if (network.type === 'bridge') xml.leaf('source', { bridge: network.bridge });
    if (network.target !== undefined) xml.leaf('target', { dev: network.target });
    xml.leaf('model', { type: 'virtio' });
    if (network.type === 'user') {
      xml.leaf('backend', { type: 'passt' });
      for (const forward of network.portForwards) {
        xml.element('portForward', { proto: forward.protocol, ...(forward.address !== undefined ? { address: forward.address } : {}) }, () => {
          xml.leaf('range', { start: String(forward.hostPort), to: String(forward.guestPort) });
        });
      }
    }
  });
}
