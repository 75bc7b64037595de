// The defined networks: one libvirt XML file each in DATA/networks, written
// atomically, with autostart marks beside them; and the files of an active
// network in RUN/networks/NAME (what it was started as, dnsmasq's
// configuration, pid and leases), as libvirt keeps /var/lib/libvirt/network
// and /run/libvirt/network.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { removeFileDurably, writeFileAtomic, type StateFolders } from '../domain/index.ts';
import type { NetworkDefinition } from './definition.ts';
import { parseNetworkXml } from './parse.ts';
import { networkToXml } from './serialize.ts';

/** The files of one active network. */
export interface NetworkRunFiles {
  folder: string;
  /** Held while the network is being started or destroyed (src/domain's RunLock). */
  lock: string;
  /** The definition the network was started with: net-destroy takes down exactly that, whatever was defined since. */
  status: string;
  dnsmasqConfig: string;
  dnsmasqPid: string;
  /** dnsmasq's lease database, which net-dhcp-leases reads. */
  leases: string;
}

/** Reads and parses a network XML file; one line naming the file when it cannot be read. */
export function readNetworkFile(file: string, bridgeFor?: () => string): NetworkDefinition {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new InputError(`${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  return parseNetworkXml(text, file, bridgeFor);
}

export class NetworkStore {
  constructor(readonly folders: StateFolders) {}

  private get definitionsFolder(): string {
    return join(this.folders.data, 'networks');
  }

  private definitionFile(name: string): string {
    return join(this.definitionsFolder, `${name}.xml`);
  }

  private autostartMark(name: string): string {
    return join(this.definitionsFolder, 'autostart', name);
  }

  runFiles(name: string): NetworkRunFiles {
    const folder = join(this.folders.run, 'networks', name);
    return {
      folder,
      lock: join(this.folders.run, 'networks', `${name}.lock`),
      status: join(folder, 'status.xml'),
      dnsmasqConfig: join(folder, 'dnsmasq.conf'),
      dnsmasqPid: join(folder, 'dnsmasq.pid'),
      leases: join(folder, 'dnsmasq.leases'),
    };
  }

  /** Every defined network, by name. */
  all(): NetworkDefinition[] {
    if (!existsSync(this.definitionsFolder)) return [];
    return readdirSync(this.definitionsFolder)
      .filter((file) => file.endsWith('.xml') && !file.startsWith('.'))
      .sort()
      .map((file) => readNetworkFile(join(this.definitionsFolder, file)));
  }

  /** The network with this name or UUID; virsh's error when there is none. */
  find(nameOrUuid: string): NetworkDefinition {
    const byName = this.definitionFile(nameOrUuid);
    if (!nameOrUuid.includes('/') && existsSync(byName)) return readNetworkFile(byName);
    const byUuid = this.all().find((n) => n.uuid === nameOrUuid.toLowerCase());
    if (!byUuid) throw new InputError(`failed to get network '${nameOrUuid}'`);
    return byUuid;
  }

  has(name: string): boolean {
    return existsSync(this.definitionFile(name));
  }

  /** A bridge name no defined network has: tsvbr0, tsvbr1, ... (libvirt's virbrN). */
  freeBridgeName(): string {
    const taken = new Set(this.all().map((n) => n.bridge.name));
    for (let n = 0; ; n++) if (!taken.has(`tsvbr${n}`)) return `tsvbr${n}`;
  }

  /**
   * Writes a definition. A new one may take neither the name, the UUID nor
   * the bridge of another network; one with the same name and UUID replaces
   * the old (virsh net-define).
   */
  define(definition: NetworkDefinition): void {
    for (const other of this.all()) {
      if (other.name === definition.name && other.uuid !== definition.uuid) {
        throw new InputError(`network '${definition.name}' is already defined with uuid ${other.uuid}`);
      }
      if (other.uuid === definition.uuid && other.name !== definition.name) {
        throw new InputError(`network '${other.name}' is already defined with uuid ${other.uuid}`);
      }
      if (other.name !== definition.name && other.bridge.name === definition.bridge.name) {
        throw new InputError(`bridge name '${definition.bridge.name}' is already in use by network '${other.name}'`);
      }
    }
    writeFileAtomic(this.definitionFile(definition.name), networkToXml(definition));
  }

  /** Removes a definition and its autostart mark. */
  undefine(name: string): void {
    removeFileDurably(this.definitionFile(name));
    rmSync(this.autostartMark(name), { force: true });
  }

  autostart(name: string): boolean {
    return existsSync(this.autostartMark(name));
  }

  setAutostart(name: string, enabled: boolean): void {
    if (enabled) {
      mkdirSync(join(this.definitionsFolder, 'autostart'), { recursive: true });
      writeFileAtomic(this.autostartMark(name), '');
    } else if (this.autostart(name)) {
      removeFileDurably(this.autostartMark(name));
    }
  }

  /** The definition an active network was started with, or null when it has no status file. */
  status(name: string): NetworkDefinition | null {
    const file = this.runFiles(name).status;
    return existsSync(file) ? readNetworkFile(file) : null;
  }
}
