// virsh's verbs under tsvmm: define, list, start, console, shutdown, destroy,
// save, snapshot-create-as, clone, autostart... with virsh's option names and
// output. There is no daemon: definitions are files in the state folder
// (src/domain/), and each running domain is a `tsvmm run` process that these
// commands reach through its QMP monitor (domain-runtime.ts). save, restore
// and snapshots are in domain-snapshots.ts, the console in domain-console.ts.
import type { Command } from 'commander';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, rmSync, writeSync } from 'node:fs';
import { dirname, extname, join } from 'node:path';
import { InputError } from '../errors.ts';
import {
  checkDefinition, domainToXml, formatKeyValues, formatTable, parseDomainXml, readDefinitionFile, type DomainDefinition,
} from '../domain/index.ts';
import { attachConsole } from './domain-console.ts';
import { migrate, migrateReceive, type MigrateOptions } from './domain-migrate.ts';
import { cpuSeconds, destroyDomain, lookup, requireRunning, runningDomain, startDomain, storeOf, withMonitor, type StateOption } from './domain-runtime.ts';
import { restore, save, snapshotCreateAs, snapshotDelete, snapshotDumpxml, snapshotList, snapshotRevert } from './domain-snapshots.ts';
import { EXIT_FAILURE, exitStatusOf } from './errors.ts';
import { startAutostartedNetworksIn } from './network-commands.ts';
import { imgConvert, imgCreate } from './img.ts';
import { startAutostartedPools } from './pool-commands.ts';

const say = (text: string) => writeSync(1, text);

// ---- define, undefine, and what is known of a domain -------------------------------------------

function define(file: string, options: StateOption): void {
  const definition = readDefinitionFile(file);
  checkDefinition(definition);
  storeOf(options).define(definition);
  say(`Domain '${definition.name}' defined from ${file}\n\n`);
}

async function undefine(key: string, options: StateOption & { removeAllStorage?: boolean }): Promise<void> {
  const store = storeOf(options);
  const definition = await lookup(store, key);
  if (await runningDomain(store, definition)) throw new InputError(`cannot undefine domain '${definition.name}': it is running (destroy it first)`);
  store.undefine(definition.name);
  say(`Domain '${definition.name}' has been undefined\n`);
  if (options.removeAllStorage) {
    // (A storage volume whose pool is not active has no path here: it stays.)
    for (const disk of definition.devices.disks.filter((d) => !d.readOnly && d.path)) {
      rmSync(disk.path, { force: true });
      say(`Volume '${disk.target}'(${disk.path}) removed.\n`);
    }
  }
  say('\n');
}

async function list(options: StateOption & { all?: boolean; inactive?: boolean }): Promise<void> {
  const store = storeOf(options);
  const domains = await Promise.all(store.all().map(async (definition) => ({ definition, running: await runningDomain(store, definition) })));
  const rows: string[][] = [];
  if (!options.inactive) {
    for (const { definition, running } of domains.filter((d) => d.running).sort((a, b) => a.running!.id - b.running!.id)) {
      rows.push([String(running!.id), definition.name, running!.state]);
    }
  }
  if (options.all || options.inactive) {
    for (const { definition } of domains.filter((d) => !d.running)) rows.push(['-', definition.name, 'shut off']);
  }
  say(formatTable(['Id', 'Name', 'State'], rows));
}

async function dominfo(key: string, options: StateOption): Promise<void> {
  const store = storeOf(options);
  const definition = await lookup(store, key);
  const running = await runningDomain(store, definition);
  const cpu = running?.pid ? cpuSeconds(running.pid) : null;
  const kib = String(definition.memoryBytes / 1024);
  say(formatKeyValues([
    ['Id', running ? String(running.id) : '-'],
    ['Name', definition.name],
    ['UUID', definition.uuid],
    ['OS Type', 'hvm'],
    ['State', running?.state ?? 'shut off'],
    ['CPU(s)', String(definition.vcpus)],
    ...(cpu !== null ? [['CPU time', `${cpu.toFixed(1)}s`] as [string, string]] : []),
    ['Max memory', `${kib} KiB`],
    ['Used memory', `${kib} KiB`],
    ['Persistent', 'yes'],
    ['Autostart', store.autostart(definition.name) ? 'enable' : 'disable'],
    ['Managed save', 'no'],
    ['Security model', 'none'],
    ['Security DOI', '0'],
  ]));
}

async function domstate(key: string, options: StateOption): Promise<void> {
  const store = storeOf(options);
  const running = await runningDomain(store, await lookup(store, key));
  say(`${running?.state ?? 'shut off'}\n\n`);
}

async function domid(key: string, options: StateOption): Promise<void> {
  const store = storeOf(options);
  const running = await runningDomain(store, await lookup(store, key));
  say(`${running ? running.id : '-'}\n\n`);
}

async function domuuid(key: string, options: StateOption): Promise<void> {
  say(`${(await lookup(storeOf(options), key)).uuid}\n\n`);
}

async function dumpxml(key: string, options: StateOption): Promise<void> {
  const store = storeOf(options);
  const definition = await lookup(store, key);
  say(domainToXml(definition, (await runningDomain(store, definition))?.id));
}

// ---- running domains ---------------------------------------------------------------------------

async function start(key: string, options: StateOption & { paused?: boolean; console?: boolean }): Promise<void> {
  const store = storeOf(options);
  const definition = await lookup(store, key);
  await startDomain(store, definition, { paused: options.paused ?? false });
  say(`Domain '${definition.name}' started\n\n`);
  if (options.console) await attachConsole(definition.name, store.runFiles(definition.name).console);
}

async function consoleVerb(key: string, options: StateOption): Promise<void> {
  const store = storeOf(options);
  const definition = await lookup(store, key);
  await requireRunning(store, definition);
  await attachConsole(definition.name, store.runFiles(definition.name).console);
}

/** A verb that is one QMP command to a running domain, then virsh's line. */
async function monitorVerb(key: string, options: StateOption, command: string, done: (name: string) => string): Promise<void> {
  const store = storeOf(options);
  const definition = await lookup(store, key);
  await requireRunning(store, definition);
  await withMonitor(definition.name, store.runFiles(definition.name), (client) => client.execute(command));
  say(`${done(definition.name)}\n\n`);
}

async function destroy(key: string, options: StateOption): Promise<void> {
  const store = storeOf(options);
  const definition = await lookup(store, key);
  await destroyDomain(store, definition);
  say(`Domain '${definition.name}' destroyed\n\n`);
}

/**
 * libvirt's reboot: by default (--mode acpi) it presses the power button and
 * boots the guest again once it has powered off, so the guest shuts down
 * cleanly first; the domain's own process does that second half
 * (`__org.tsvmm_system_reboot`). --mode reset resets the machine at once
 * (QMP system_reset). With on_reboot destroy, a reboot ends the domain, as
 * the guest's own would.
 */
async function reboot(key: string, options: StateOption & { mode?: string }): Promise<void> {
  const mode = options.mode ?? 'acpi';
  if (mode !== 'acpi' && mode !== 'reset') throw new InputError(`reboot --mode ${mode}: tsvmm reboots through ACPI (acpi, the default) or by a reset (reset)`);
  const store = storeOf(options);
  const definition = await lookup(store, key);
  if (definition.onReboot === 'destroy') await destroyDomain(store, definition);
  else {
    await requireRunning(store, definition);
    await withMonitor(definition.name, store.runFiles(definition.name), (client) => client.execute(mode === 'acpi' ? '__org.tsvmm_system_reboot' : 'system_reset'));
  }
  say(`Domain '${definition.name}' is being rebooted\n\n`);
}

// ---- clone and autostart -----------------------------------------------------------------------

/** A locally administered unicast MAC in QEMU's 52:54:00 range, as virt-clone makes them. */
function newMac(): string {
  return ['52', '54', '00', ...[...randomBytes(3)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}

/**
 * virt-clone: a new UUID and MAC addresses, and writable disks copied
 * (`tsvmm img convert`) or, with --linked, qcow2 overlays on the original's
 * disks, which must then stay unchanged. Read-only disks are shared.
 */
async function clone(options: StateOption & { original: string; name: string; linked?: boolean }): Promise<void> {
  const store = storeOf(options);
  const original = await lookup(store, options.original);
  if (await runningDomain(store, original)) throw new InputError(`cannot clone domain '${original.name}' while it is running`);
  if (store.all().some((d) => d.name === options.name)) throw new InputError(`domain '${options.name}' is already defined`);
  const copy: DomainDefinition = {
    ...parseDomainXml(domainToXml({ ...original, name: options.name }), 'the clone'),
    uuid: randomUUID(),
  };
  // New MACs, and no <target dev>: the original's TAP name would be taken while both run.
  copy.devices.interfaces = copy.devices.interfaces.map(({ target: _taken, ...card }) => ({ ...card, mac: newMac() }));
  const created: string[] = [];
  try {
    // The original's disks: their storage volumes, if any, were looked up where their pools are active.
    copy.devices.disks = await Promise.all(original.devices.disks.map(async (disk) => {
      if (disk.readOnly) return disk;
      if (!disk.path) throw new InputError(`cannot clone disk ${disk.target} of domain '${original.name}': its storage pool '${disk.volume?.pool}' is not active`);
      const format = options.linked ? 'qcow2' : disk.format;
      const path = join(dirname(disk.path), `${options.name}-${disk.target}.${format === 'qcow2' ? 'qcow2' : extname(disk.path).slice(1) || 'img'}`);
      if (existsSync(path)) throw new InputError(`${path}: already exists`);
      say(`Allocating '${path}'\n`);
      created.push(path);
      const output = options.linked
        ? imgCreate(path, undefined, { format: 'qcow2', backing: disk.path, backingFormat: disk.format })
        : await imgConvert(disk.path, path, { format: disk.format, outputFormat: disk.format });
      if (output.status !== 0) throw new InputError(`${path}: ${output.stderr.trim()}`);
      // A copy of a storage volume is a file beside it (in the pool's folder: a volume of the pool too).
      return { ...disk, path, format, volume: undefined };
    }));
    checkDefinition(copy);
    store.define(copy);
  } catch (e) {
    for (const path of created) rmSync(path, { force: true });
    throw e;
  }
  say(`\nClone '${copy.name}' created successfully.\n`);
}

async function autostart(key: string, options: StateOption & { disable?: boolean }): Promise<void> {
  const store = storeOf(options);
  const definition = await lookup(store, key);
  store.setAutostart(definition.name, !options.disable);
  say(`Domain '${definition.name}' ${options.disable ? 'unmarked' : 'marked'} as autostarted\n\n`);
}

/** Starts every network and pool, then every domain, marked for autostart that is not running; one line per failure, and status 4 if any failed. */
async function startAutostarted(options: StateOption): Promise<number> {
  const store = storeOf(options);
  // Networks and pools first: a domain's interfaces may be on the one, its disks volumes of the other.
  let failed = startAutostartedNetworksIn(store.folders);
  if (!startAutostartedPools(options)) failed = true;
  for (const definition of store.all().filter((d) => store.autostart(d.name))) {
    if (await runningDomain(store, definition)) continue;
    try {
      await startDomain(store, definition);
      say(`Domain '${definition.name}' started\n`);
    } catch (e) {
      if (exitStatusOf(e) === null) throw e;
      writeSync(2, `tsvmm: ${(e as Error).message}\n`);
      failed = true;
    }
  }
  return failed ? EXIT_FAILURE : 0;
}

// ---- the command line --------------------------------------------------------------------------

export function registerDomainCommands(cli: Command, setStatus: (status: number) => void): void {
  const verb = (name: string, description: string) => cli.command(name).description(description)
    .option('--state-dir <dir>', 'where definitions and running domains live (default: /var/lib/tsvmm and /run/tsvmm as root, the XDG folders otherwise; or $TSVMM_STATE_DIR)');
  const domainArgument = ['<domain>', 'domain name, UUID or id'] as const;

  verb('define', 'define a domain from libvirt domain XML').argument('<file>').action((file: string, o: StateOption) => define(file, o));
  verb('undefine', 'remove a domain\'s definition (and its snapshots)').argument(...domainArgument)
    .option('--remove-all-storage', 'also delete its writable disk images').action(undefine);
  verb('list', 'list domains').option('--all', 'include shut-off domains').option('--inactive', 'only shut-off domains').action(list);
  verb('dominfo', 'domain information').argument(...domainArgument).action(dominfo);
  verb('domstate', 'domain state').argument(...domainArgument).action(domstate);
  verb('domid', 'the id of a running domain').argument(...domainArgument).action(domid);
  verb('domuuid', 'the UUID of a domain').argument(...domainArgument).action(domuuid);
  verb('dumpxml', 'the domain\'s XML').argument(...domainArgument).action(dumpxml);

  verb('start', 'start a defined domain in the background').argument(...domainArgument)
    .option('--paused', 'leave its vCPUs stopped (resume starts them)').option('--console', 'attach to its console once started').action(start);
  verb('console', 'attach to a running domain\'s serial console (Ctrl-] detaches)').argument(...domainArgument).action(consoleVerb);
  verb('shutdown', 'ask the guest to power off (ACPI power button)').argument(...domainArgument)
    .action((key: string, o: StateOption) => monitorVerb(key, o, 'system_powerdown', (name) => `Domain '${name}' is being shutdown`));
  verb('reboot', 'reboot a domain: the ACPI power button, then a new boot once the guest powered off; --mode reset resets it at once')
    .argument(...domainArgument).option('--mode <mode>', 'acpi (default) or reset').action(reboot);
  verb('destroy', 'end a running domain at once').argument(...domainArgument).action(destroy);
  verb('suspend', 'stop a domain\'s vCPUs').argument(...domainArgument)
    .action((key: string, o: StateOption) => monitorVerb(key, o, 'stop', (name) => `Domain '${name}' suspended`));
  verb('resume', 'start a suspended domain\'s vCPUs again').argument(...domainArgument)
    .action((key: string, o: StateOption) => monitorVerb(key, o, 'cont', (name) => `Domain '${name}' resumed`));

  verb('save', 'save a running domain\'s state to FILE (and FILE.xml) and end it').argument(...domainArgument).argument('<file>').action(save);
  verb('restore', 'start a domain from a file that save wrote').argument('<file>').option('--paused', 'leave it paused').action(restore);
  verb('snapshot-create-as', 'take a snapshot of a domain').argument(...domainArgument).argument('<name>', 'the snapshot\'s name')
    .option('--description <text>', 'a description').action(snapshotCreateAs);
  verb('snapshot-list', 'list a domain\'s snapshots').argument(...domainArgument).action(snapshotList);
  verb('snapshot-dumpxml', 'a snapshot as libvirt\'s <domainsnapshot> XML').argument(...domainArgument).argument('<snapshotname>').action(snapshotDumpxml);
  verb('snapshot-revert', 'bring a domain back to a snapshot').argument(...domainArgument).argument('<snapshotname>').action(snapshotRevert);
  verb('snapshot-delete', 'delete a snapshot').argument(...domainArgument).argument('<snapshotname>').action(snapshotDelete);

  verb('clone', 'clone a shut-off domain (virt-clone): new UUID and MACs, disks copied or, with --linked, qcow2 overlays')
    .requiredOption('--original <domain>', 'the domain to clone').requiredOption('--name <name>', 'the new domain\'s name')
    .option('--linked', 'thin qcow2 overlays on the original\'s disks instead of copies').action(clone);
  verb('autostart', 'mark a domain to be started by start-autostarted').argument(...domainArgument)
    .option('--disable', 'unmark it').action(autostart);
  verb('start-autostarted', 'start every domain marked for autostart (for a boot-time unit)')
    .action(async (o: StateOption) => setStatus(await startAutostarted(o)));

  verb('migrate', 'move a running domain to another host (tsvmm+ssh://HOST/system), through the connection; disks on shared storage')
    .argument(...domainArgument).argument('<desturi>', 'where to: tsvmm+ssh://[user@]host[:port]/system (or tsvmm:///session|system here)')
    .option('--live', 'the guest runs during the copy (pre-copy); without it, it is paused first')
    .option('--persistent', 'keep the definition on the destination (tsvmm always does: it has no transient domains)')
    .option('--undefinesource', 'undefine the domain here once it runs there')
    .option('--copy-storage-all', 'copy the writable disks in the migration stream (created there when missing); without it, the disks must be on shared storage')
    .action((key: string, uri: string, o: MigrateOptions) => migrate(key, uri, o));
  // The destination's half of migrate, run there through the connection.
  cli.command('migrate-receive', { hidden: true }).argument(...domainArgument)
    .option('--state-dir <dir>', 'where definitions and running domains live').action(migrateReceive);
}
