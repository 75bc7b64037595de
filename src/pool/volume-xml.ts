// A storage volume as `virsh vol-dumpxml` prints one of a directory pool
// (libvirt's formatstorage, "Storage volume XML"), which libvirt's storagevol
// schema accepts.
import { XmlWriter } from '../domain/serialize.ts';
import type { Volume } from './pool-definition.ts';

export function volumeToXml(volume: Volume): string {
  const xml = new XmlWriter();
  xml.element('volume', { type: 'file' }, () => {
    xml.leaf('name', {}, volume.name);
    xml.leaf('key', {}, volume.path);
    xml.leaf('capacity', { unit: 'bytes' }, String(volume.capacity));
    xml.leaf('allocation', { unit: 'bytes' }, String(volume.allocation));
    xml.leaf('physical', { unit: 'bytes' }, String(volume.physical));
    xml.element('target', {}, () => {
      xml.leaf('path', {}, volume.path);
      xml.leaf('format', { type: volume.format });
    });
    const { backing } = volume;
    if (backing) {
      xml.element('backingStore', {}, () => {
        xml.leaf('path', {}, backing.path);
        if (backing.format !== undefined) xml.leaf('format', { type: backing.format });
      });
    }
  });
  return xml.toString();
}
