// Storage volume XML (libvirt's formatstorage, "Storage volume XML"): read
// strictly for vol-create (what tsvmm does not honour is an error naming the
// element and its line), and written as `virsh vol-dumpxml` prints a
// directory pool's volume, which libvirt's storagevol schema accepts.
import { isAbsolute } from 'node:path';
import { ElementReader } from '../domain/element-reader.ts';
import { readName } from '../domain/parse.ts';
import { XmlWriter } from '../domain/serialize.ts';
import { memoryBytes } from '../domain/units.ts';
import { readXmlDocument } from '../domain/xml-document.ts';
import type { NewVolume } from './dir-pool.ts';
import type { Volume } from './pool-definition.ts';

/** A size element (<capacity unit='G'>10</capacity>): libvirt's units, bytes when none is given. */
function readBytes(element: ElementReader): number {
  const bytes = memoryBytes(element.text().trim(), element.attribute('unit') ?? 'bytes');
  if (typeof bytes === 'string') throw element.error(bytes);
  element.finish();
  return bytes;
}

/** <format type='raw|qcow2'/> */
function readFormat(parent: ElementReader): NewVolume['format'] | undefined {
  const element = parent.child('format');
  if (!element) return undefined;
  const format = element.choice('type', ['raw', 'qcow2'], 'tsvmm\'s volumes are raw or qcow2');
  element.finish();
  return format;
}

/**
 * The volume a vol-create file asks for. What `vol-dumpxml` reports of an
 * existing volume (key, allocation, physical, target path) is read and
 * ignored, as libvirt ignores it: the pool decides where the volume goes.
 */
export function parseVolumeXml(text: string, fileName: string): NewVolume {
  const volume = new ElementReader(readXmlDocument(text, fileName), fileName);
  if (volume.name !== 'volume') throw volume.error('the root element of a storage volume definition is <volume>');
  volume.choice('type', ['file'], 'a directory pool\'s volumes are files (type=\'file\')');
  const name = readName(volume);
  const capacityElement = volume.child('capacity');
  if (!capacityElement) throw volume.error('needs a <capacity>');
  const capacity = readBytes(capacityElement);
  for (const reported of ['key', 'allocation', 'physical']) {
    const element = volume.child(reported);
    element?.attribute('unit');
    element?.text();
    element?.finish();
  }
  const target = volume.child('target');
  const format = target ? readFormat(target) : undefined;
  target?.child('path')?.text();
  target?.finish();
  const backingStore = volume.child('backingStore');
  let backing: NewVolume['backing'];
  if (backingStore) {
    const pathElement = backingStore.child('path');
    if (!pathElement) throw backingStore.error('needs a <path>');
    const path = pathElement.text().trim();
    if (!isAbsolute(path)) throw pathElement.error(`"${path}" is not an absolute path`);
    pathElement.finish();
    const backingFormat = readFormat(backingStore);
    backingStore.finish();
    backing = { path, ...(backingFormat ? { format: backingFormat } : {}) };
  }
  volume.finish();
  return { name, capacity, format: format ?? 'raw', ...(backing ? { backing } : {}) };
}

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
