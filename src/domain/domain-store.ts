// The defined domains: one libvirt XML file each in DATA/domains, written
// atomically, plus the files a running domain has in RUN/NAME. A domain is
// found by name or UUID, as virsh finds it (by id: see the caller, which
// knows which domains run).
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { removeFileDurably, writeFileAtomic } from './atomic-file.ts';
import type { DomainDefinition, VolumeLookup } from './definition.ts';
import { parseDomainXml, withAvailableVolumes } from './parse.ts';
import { domainToXml } from './serialize.ts';
import { checkSocketPath, type StateFolders } from './state-folders.ts';

/** The files of one running domain. */
export interface DomainRunFiles {
  folder: string;
  /** Its run lock (run-lock.ts): held while the domain's process lives. */
  lock: string;
  pid: string;
  /** The domain's id, as `list` shows it. */
  id: string;
  qmp: string;
  console: string;
  /** Where a migration's stream comes in (migrate-receive). */
  incoming: string;
  consoleLog: string;
  /** The `tsvmm run` process's own stdout and stderr. */
  log: string;
}

/** Reads and parses a domain XML file; one line naming the file when it cannot be read. */
export function readDefinitionFile(file: string): DomainDefinition {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new InputError(`${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return parseDomainXml(text, file);
}

export class DomainStore {
  /** `volumes` fills in the paths of the storage volumes a definition's disks name, where their pools are active. */
  constructor(readonly folders: StateFolders, private readonly volumes?: VolumeLookup) {}

  private get definitionsFolder(): string {
    return join(this.folders.data, 'domains');
  }

  definitionFile(name: string): string {
    return join(this.definitionsFolder, `${name}.xml`);
  }

  runFiles(name: string): DomainRunFiles {
    const folder = join(this.folders.run, name);
    return {
      folder,
      lock: join(folder, 'lock'),
      pid: join(folder, 'pid'),
      id: join(folder, 'id'),
      qmp: checkSocketPath(join(folder, 'qmp.sock')),
      console: checkSocketPath(join(folder, 'console.sock')),
      incoming: checkSocketPath(join(folder, 'incoming.sock')),
      consoleLog: join(folder, 'console.log'),
      log: join(folder, 'tsvmm.log'),
    };
  }

  /** The folder of a domain's snapshots (snapshot metadata and memory state files). */
  snapshotFolder(name: string): string {
    return join(this.folders.data, 'snapshots', name);
  }

  private autostartMark(name: string): string {
    return join(this.folders.data, 'autostart', name);
  }

  /** Every defined domain, by name. */
  all(): DomainDefinition[] {
    if (!existsSync(this.definitionsFolder)) return [];
    return readdirSync(this.definitionsFolder)
      .filter((file) => file.endsWith('.xml') && !file.startsWith('.'))
      .sort()
      .map((file) => this.read(join(this.definitionsFolder, file)));
  }

  private read(file: string): DomainDefinition {
    const definition = parseDomainXml(readFileSync(file, 'utf8'), file);
    return this.volumes ? withAvailableVolumes(definition, this.volumes) : definition;
  }

  /** The domain with this name or UUID; virsh's error when there is none. */
  find(nameOrUuid: string): DomainDefinition {
    const byName = this.definitionFile(nameOrUuid);
    if (!nameOrUuid.includes('/') && existsSync(byName)) return this.read(byName);
    const byUuid = this.all().find((d) => d.uuid === nameOrUuid.toLowerCase());
    if (!byUuid) throw new InputError(`failed to get domain '${nameOrUuid}'`);
    return byUuid;
  }

  /**
   * Writes a definition. A new one may take neither the name nor the UUID of
   * another domain; one with both the same replaces the old (virsh define).
   */
  define(definition: DomainDefinition): void {
    for (const other of this.all()) {
      if (other.name === definition.name && other.uuid !== definition.uuid) {
        throw new InputError(`domain '${definition.name}' is already defined with uuid ${other.uuid}`);
      }
      if (other.uuid === definition.uuid && other.name !== definition.name) {
        throw new InputError(`domain '${other.name}' is already defined with uuid ${other.uuid}`);
      }
    }
    writeFileAtomic(this.definitionFile(definition.name), domainToXml(definition));
  }

  /** Removes a definition, its autostart mark, its snapshots and its (stopped) run folder. */
  undefine(name: string): void {
    removeFileDurably(this.definitionFile(name));
    rmSync(this.autostartMark(name), { force: true });
    rmSync(this.snapshotFolder(name), { recursive: true, force: true });
    rmSync(this.runFiles(name).folder, { recursive: true, force: true });
  }

  autostart(name: string): boolean {
    return existsSync(this.autostartMark(name));
  }

  setAutostart(name: string, enabled: boolean): void {
    if (enabled) {
      mkdirSync(join(this.folders.data, 'autostart'), { recursive: true });
      writeFileAtomic(this.autostartMark(name), '');
    } else if (this.autostart(name)) {
      removeFileDurably(this.autostartMark(name));
    }
  }
}
