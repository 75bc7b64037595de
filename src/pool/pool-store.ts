// The defined storage pools: one pool XML file each in DATA/storage/pools,
// written atomically; an autostart mark in DATA/storage/autostart; and an
// active mark in RUN/storage, which a host reboot clears as it clears
// libvirt's /run/libvirt/storage (autostart starts the pool again).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { removeFileDurably, writeFileAtomic } from '../domain/atomic-file.ts';
import type { StateFolders } from '../domain/state-folders.ts';
import type { PoolDefinition } from './pool-definition.ts';
import { parsePoolXml, poolToXml } from './pool-xml.ts';

export class PoolStore {
  constructor(readonly folders: StateFolders) {}

  private get definitionsFolder(): string {
    return join(this.folders.data, 'storage', 'pools');
  }

  definitionFile(name: string): string {
    return join(this.definitionsFolder, `${name}.xml`);
  }

  private autostartMark(name: string): string {
    return join(this.folders.data, 'storage', 'autostart', name);
  }

  private activeMark(name: string): string {
    return join(this.folders.run, 'storage', name);
  }

  /** Every defined pool, by name. */
  all(): PoolDefinition[] {
    if (!existsSync(this.definitionsFolder)) return [];
    return readdirSync(this.definitionsFolder)
      .filter((file) => file.endsWith('.xml') && !file.startsWith('.'))
      .sort()
      .map((file) => this.read(join(this.definitionsFolder, file)));
  }

  private read(file: string): PoolDefinition {
    return parsePoolXml(readFileSync(file, 'utf8'), file);
  }

  /** The pool with this name or UUID, or null. */
  lookup(nameOrUuid: string): PoolDefinition | null {
    const byName = this.definitionFile(nameOrUuid);
    if (!nameOrUuid.includes('/') && existsSync(byName)) return this.read(byName);
    return this.all().find((p) => p.uuid === nameOrUuid.toLowerCase()) ?? null;
  }

  /** The pool with this name or UUID; libvirt's error when there is none. */
  find(nameOrUuid: string): PoolDefinition {
    const pool = this.lookup(nameOrUuid);
    if (!pool) throw new InputError(`failed to get pool '${nameOrUuid}': no storage pool with matching name or uuid`);
    return pool;
  }

  /**
   * Writes a definition. A new one may take neither the name nor the UUID of
   * another pool, nor its folder (libvirt's "storage source conflict"); one
   * with the same name and UUID replaces the old.
   */
  define(pool: PoolDefinition): void {
    for (const other of this.all()) {
      if (other.name === pool.name && other.uuid !== pool.uuid) throw new InputError(`pool '${pool.name}' is already defined with uuid ${other.uuid}`);
      if (other.uuid === pool.uuid && other.name !== pool.name) throw new InputError(`pool '${other.name}' is already defined with uuid ${other.uuid}`);
      if (other.name !== pool.name && other.path === pool.path) throw new InputError(`storage source conflict with pool '${other.name}': both are ${pool.path}`);
    }
    writeFileAtomic(this.definitionFile(pool.name), poolToXml(pool, null));
  }

  undefine(name: string): void {
    removeFileDurably(this.definitionFile(name));
    if (this.autostart(name)) removeFileDurably(this.autostartMark(name));
  }

  isActive(name: string): boolean {
    return existsSync(this.activeMark(name));
  }

  setActive(name: string, active: boolean): void {
    if (active) writeFileAtomic(this.activeMark(name), '');
    else if (this.isActive(name)) removeFileDurably(this.activeMark(name));
  }

  autostart(name: string): boolean {
    return existsSync(this.autostartMark(name));
  }

  setAutostart(name: string, enabled: boolean): void {
    if (enabled) writeFileAtomic(this.autostartMark(name), '');
    else if (this.autostart(name)) removeFileDurably(this.autostartMark(name));
  }
}
