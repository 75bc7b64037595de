// Storage pool XML (libvirt's formatstorage): read it into a PoolDefinition,
// strictly, as the domain reader does (an element tsvmm does not honour is an
// error naming it and its line); write it back as `virsh pool-dumpxml` prints
// it, which libvirt's storagepool schema accepts.
import { randomUUID } from 'node:crypto';
import { isAbsolute } from 'node:path';
import { ElementReader } from '../domain/element-reader.ts';
import { readName, readUuid } from '../domain/parse.ts';
import { XmlWriter } from '../domain/serialize.ts';
import { readXmlDocument } from '../domain/xml-document.ts';
import type { FolderPermissions, PoolDefinition, PoolUsage } from './pool-definition.ts';

/**
 * Reads a pool definition; `fileName` is what error messages name. Without a
 * <uuid>, a pool keeps the one `knownUuid` has for its name (redefining it, as
 * libvirt does), or gets a new one.
 */
export function parsePoolXml(text: string, fileName: string, knownUuid: (name: string) => string | undefined = () => undefined): PoolDefinition {
  const pool = new ElementReader(readXmlDocument(text, fileName), fileName);
  if (pool.name !== 'pool') throw pool.error('the root element of a storage pool definition is <pool>');
  pool.requiredAttribute('type');
  pool.choice('type', ['dir'], 'tsvmm has directory pools only (type=\'dir\')');
  const name = readName(pool);
  const uuid = pool.child('uuid');
  // What `pool-dumpxml` reports of a running pool: libvirt ignores it in a definition, and so does tsvmm.
  for (const reported of ['capacity', 'allocation', 'available']) {
    const element = pool.child(reported);
    element?.attribute('unit');
    element?.text();
    element?.finish();
  }
  // A directory pool has nothing in its <source>.
  pool.child('source')?.finish();
  const target = pool.child('target');
  if (!target) throw pool.error('needs a <target><path>/folder</path></target>');
  const pathElement = target.child('path');
  if (!pathElement) throw target.error('needs a <path>');
  const path = pathElement.text().trim();
  if (!isAbsolute(path)) throw pathElement.error(`"${path}" is not an absolute path`);
  pathElement.finish();
  const permissionsElement = target.child('permissions');
  const permissions = permissionsElement ? readPermissions(permissionsElement) : undefined;
  target.finish();
  pool.finish();
  return { name, uuid: uuid ? readUuid(uuid) : knownUuid(name) ?? randomUUID(), type: 'dir', path: trimSlashes(path), ...(permissions ? { permissions } : {}) };
}

/** <mode> (octal), <owner> and <group> (numeric ids), as libvirt writes them; an SELinux <label> tsvmm cannot apply. */
function readPermissions(element: ElementReader): FolderPermissions {
  const permissions: FolderPermissions = {};
  const number = (name: 'mode' | 'owner' | 'group', pattern: RegExp, radix: number, what: string) => {
    const child = element.child(name);
    if (!child) return;
    const text = child.text().trim();
    if (!pattern.test(text)) throw child.error(`"${text}" is not ${what}`);
    // libvirt writes -1 for "whoever creates it".
    if (text !== '-1') permissions[name] = parseInt(text, radix);
    child.finish();
  };
  number('mode', /^0?[0-7]{3,4}$/, 8, 'an octal mode (0755)');
  number('owner', /^(?:\d+|-1)$/, 10, 'a numeric user id');
  number('group', /^(?:\d+|-1)$/, 10, 'a numeric group id');
  element.finish();
  return permissions;
}

/** "/srv/images/" and "/srv/images" are one folder; libvirt prints it without the slash. */
export function trimSlashes(path: string): string {
  return path.length > 1 ? path.replace(/\/+$/, '') || '/' : path;
}

/** The pool as `virsh pool-dumpxml` prints it; an inactive pool reports no usage (zeros, as libvirt does). */
export function poolToXml(pool: PoolDefinition, usage: PoolUsage | null): string {
  const xml = new XmlWriter();
  const bytes = (value: number | undefined) => String(value ?? 0);
  xml.element('pool', { type: pool.type }, () => {
    xml.leaf('name', {}, pool.name);
    xml.leaf('uuid', {}, pool.uuid);
    xml.leaf('capacity', { unit: 'bytes' }, bytes(usage?.capacity));
    xml.leaf('allocation', { unit: 'bytes' }, bytes(usage?.allocation));
    xml.leaf('available', { unit: 'bytes' }, bytes(usage?.available));
    xml.leaf('source');
    xml.element('target', {}, () => {
      xml.leaf('path', {}, pool.path);
      const { permissions } = pool;
      if (permissions) {
        xml.element('permissions', {}, () => {
          if (permissions.mode !== undefined) xml.leaf('mode', {}, `0${permissions.mode.toString(8)}`);
          if (permissions.owner !== undefined) xml.leaf('owner', {}, String(permissions.owner));
          if (permissions.group !== undefined) xml.leaf('group', {}, String(permissions.group));
        });
      }
    });
  });
  return xml.toString();
}
