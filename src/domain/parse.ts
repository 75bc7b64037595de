// libvirt domain XML → DomainDefinition. Each element tsvmm knows is read by
// one function below; ElementReader.finish() refuses whatever else a file has,
// naming it and its line, so a definition never loses a setting silently.
import { randomBytes, randomUUID } from 'node:crypto';
import { isAbsolute } from 'node:path';
import { MIN_MEMORY } from '../machine/config.ts';
import {
  DEFAULT_LIFECYCLE, RNG_BACKEND, type DiskDefinition, type DomainDefinition, type DomainDevices, type DomainOs, type InterfaceDefinition,
  type LifecycleAction, type PortForward, type VolumeLookup, type VolumeSource,
} from './definition.ts';
import { ElementReader } from './element-reader.ts';
import { domainToXml } from './serialize.ts';
import { memoryBytes } from './units.ts';
import { readXmlDocument } from './xml-document.ts';

/** A name tsvmm can use as a file name in its state folder and on a command line. */
const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.+:-]{0,99}$/;
export const NAME_RULE = 'up to 100 letters, digits and _ . + : -, not starting with . + : or -';

/** Whether `name` is one tsvmm can use as a file name and on a command line. */
export const isUsableName = (name: string): boolean => NAME.test(name);
const UUID_DIGITS = /^[0-9a-f]{32}$/i;
const MAC = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/i;
/** virtio-blk's GET_ID answer holds 20 bytes (virtio 1.2, 5.2.6). */
const DISK_SERIAL_BYTES = 20;
const PAGE_BYTES = 4096;
const LIFECYCLE_ACTIONS = ['destroy', 'restart'] as const;

/**
 * Reads a domain definition; `fileName` is what error messages name. With
 * `volumes`, each <disk type='volume'> gets its volume's path and format (a
 * missing pool or volume is an error at its <source>); without, they stay ''
 * and the <driver> format, as a definition is stored (virsh define does not
 * look for the pool either).
 */
export function parseDomainXml(text: string, fileName: string, volumes?: VolumeLookup): DomainDefinition {
  const domain = new ElementReader(readXmlDocument(text, fileName), fileName);
  if (domain.name !== 'domain') throw domain.error('the root element of a domain definition is <domain>');
  domain.requiredAttribute('type');
  domain.choice('type', ['kvm'], 'tsvmm runs guests with KVM only (type=\'kvm\')');
  // A running domain's number, which `dumpxml` prints: libvirt ignores it in a definition, and so does tsvmm.
  domain.attribute('id');
  const name = readName(domain);
  const uuidElement = domain.child('uuid');
  const title = domain.child('title');
  const description = domain.child('description');
  const definition: DomainDefinition = {
    name,
    uuid: uuidElement ? readUuid(uuidElement) : randomUUID(),
    ...(title ? { title: readTitle(title) } : {}),
    ...(description ? { description: finished(description, description.text()) } : {}),
    memoryBytes: readMemory(domain),
    vcpus: readVcpus(domain),
    os: readOs(domain),
    onPoweroff: readLifecycle(domain, 'on_poweroff', DEFAULT_LIFECYCLE.onPoweroff),
    onReboot: readLifecycle(domain, 'on_reboot', DEFAULT_LIFECYCLE.onReboot),
    onCrash: readLifecycle(domain, 'on_crash', DEFAULT_LIFECYCLE.onCrash),
    devices: readDevices(domain, volumes),
  };
  readClock(domain);
  domain.finish();
  return definition;
}

/** Checks that `element` has nothing unread and passes `value` through. */
function finished<T>(element: ElementReader, value: T): T {
  element.finish();
  return value;
}

/** The <name> child of a domain (or of a storage pool or volume: src/pool reads them alike). */
export function readName(domain: ElementReader): string {
  const element = domain.child('name');
  if (!element) throw domain.error('needs a <name>');
  const name = element.text().trim();
  if (!NAME.test(name)) {
    throw element.error(`"${name}" is not a name tsvmm can use: ${NAME_RULE}`);
  }
  return finished(element, name);
}

/** libvirt writes a UUID with dashes and also reads its 32 hex digits alone. */
export function readUuid(element: ElementReader): string {
  const text = element.text().trim();
  const digits = text.replace(/-/g, '');
  if (!UUID_DIGITS.test(digits) || (digits.length !== text.length && !/^[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}$/i.test(text))) {
    throw element.error(`"${text}" is not a UUID (like 5a1c2f3e-0b7d-4c4e-9f21-6a2b8d0c1e33)`);
  }
  const hex = digits.toLowerCase();
  return finished(element, `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`);
}

function readTitle(element: ElementReader): string {
  const title = element.text();
  if (title.includes('\n')) throw element.error('a title is one line');
  return finished(element, title);
}

function readSize(element: ElementReader): number {
  const bytes = memoryBytes(element.text().trim(), element.attribute('unit'));
  if (typeof bytes === 'string') throw element.error(bytes);
  return finished(element, bytes);
}

/** <memory> is the guest's RAM; <currentMemory>, a balloon's target, can only be the same (tsvmm has no balloon). */
function readMemory(domain: ElementReader): number {
  const element = domain.child('memory');
  if (!element) throw domain.error('needs a <memory> size');
  const bytes = readSize(element);
  if (bytes < MIN_MEMORY) throw element.error(`${bytes} bytes is too little: a guest needs at least ${MIN_MEMORY / 1024} KiB`);
  if (bytes % PAGE_BYTES !== 0) throw element.error(`${bytes} bytes is not a whole number of 4 KiB pages`);
  const current = domain.child('currentMemory');
  if (current && readSize(current) !== bytes) throw current.error('must equal <memory>: tsvmm has no memory balloon to hold a guest below it');
  return bytes;
}

function readVcpus(domain: ElementReader): number {
  const element = domain.child('vcpu');
  if (!element) return 1;
  // 'static' is libvirt's default and what tsvmm does: vCPU threads go wherever the host schedules them.
  element.choice('placement', ['static'], 'tsvmm does not place vCPUs (only placement=\'static\')');
  const text = element.text().trim();
  if (!/^\d+$/.test(text) || Number(text) < 1) throw element.error(`"${text}" is not a number of vCPUs (1 or more)`);
  return finished(element, Number(text));
}

function readOs(domain: ElementReader): DomainOs {
  const os = domain.child('os');
  if (!os) throw domain.error('needs an <os> with <type>hvm</type>');
  const type = os.child('type');
  if (!type) throw os.error('needs <type>hvm</type>');
  type.choice('arch', ['x86_64'], 'tsvmm runs x86_64 guests only');
  if (type.text().trim() !== 'hvm') throw type.error(`"${type.text().trim()}": tsvmm runs hvm guests only`);
  type.finish();
  const result: DomainOs = {};
  for (const key of ['kernel', 'initrd', 'cmdline'] as const) {
    const element = os.child(key);
    if (!element) continue;
    const value = key === 'cmdline' ? element.text() : readPath(element, element.text().trim());
    element.finish();
    if (key !== 'kernel' && result.kernel === undefined) throw element.error('needs a <kernel> (without one tsvmm boots its default guest, which has its own)');
    result[key] = value;
  }
  os.finish();
  return result;
}

function readPath(element: ElementReader, path: string): string {
  if (!isAbsolute(path)) throw element.error(`"${path}" is not an absolute path`);
  // `tsvmm run --disk PATH,format=...` separates settings with commas.
  if (path.includes(',')) throw element.error(`"${path}": tsvmm cannot use a path with a comma`);
  return path;
}

function readLifecycle(domain: ElementReader, name: string, fallback: LifecycleAction): LifecycleAction {
  const element = domain.child(name);
  if (!element) return fallback;
  const action = element.text().trim();
  if (!(LIFECYCLE_ACTIONS as readonly string[]).includes(action)) {
    throw element.error(`"${action}": tsvmm can destroy or restart the domain (not ${action})`);
  }
  return finished(element, action as LifecycleAction);
}

/** <clock offset='utc'/>: the RTC tsvmm gives every guest keeps UTC (src/devices/cmos-rtc.ts); nothing else to read. */
function readClock(domain: ElementReader): void {
  const clock = domain.child('clock');
  if (!clock) return;
  clock.requiredAttribute('offset');
  clock.choice('offset', ['utc'], 'the guest\'s clock is the host\'s in UTC (only offset=\'utc\')');
  clock.finish();
}

/** The definition with its storage volumes' paths and formats filled in; errors name the line of `fileName` (the stored definition). */
export function withVolumesResolved(definition: DomainDefinition, fileName: string, volumes: VolumeLookup): DomainDefinition {
  if (!definition.devices.disks.some((disk) => disk.volume)) return definition;
  return parseDomainXml(domainToXml(definition), fileName, volumes);
}

/**
 * The definition with the storage volumes that can be found now filled in;
 * the others keep '' (for the verbs that read a definition without starting
 * it: a pool that is not active is no reason to refuse `list`).
 */
export function withAvailableVolumes(definition: DomainDefinition, volumes: VolumeLookup): DomainDefinition {
  if (!definition.devices.disks.some((disk) => disk.volume)) return definition;
  const disks = definition.devices.disks.map((disk) => {
    if (!disk.volume) return disk;
    const found = volumes(disk.volume.pool, disk.volume.volume);
    const usable = typeof found !== 'string' && (!disk.volume.driverFormat || disk.volume.driverFormat === found.format);
    return usable ? { ...disk, path: found.path, format: found.format } : disk;
  });
  return { ...definition, devices: { ...definition.devices, disks } };
}

function readDevices(domain: ElementReader, volumes: VolumeLookup | undefined): DomainDevices {
  const devices = domain.child('devices');
  const result: DomainDevices = { disks: [], interfaces: [], serial: false, console: null, rng: false, panic: false };
  if (!devices) return result;
  const emulator = devices.child('emulator');
  if (emulator) {
    const path = emulator.text().trim();
    if (!path) throw emulator.error('is empty');
    result.emulator = finished(emulator, path);
  }
  const targets = new Map<string, number>();
  for (const element of devices.children('disk')) {
    const disk = readDisk(element, volumes);
    const first = targets.get(disk.target);
    if (first !== undefined) throw element.error(`target dev='${disk.target}' is the disk's at line ${first} too`);
    targets.set(disk.target, element.line);
    result.disks.push(disk);
  }
  result.interfaces = readInterfaces(devices.children('interface'));
  const serial = devices.child('serial');
  if (serial) result.serial = readSerial(serial);
  const console = devices.child('console');
  if (console) {
    result.console = readConsole(console);
    // libvirt's console of type serial is the first serial port itself, which it then adds when absent.
    if (result.console === 'serial') result.serial = true;
  }
  const rng = devices.child('rng');
  if (rng) result.rng = readRng(rng);
  const panic = devices.child('panic');
  if (panic) result.panic = readPanic(panic);
  const memballoon = devices.child('memballoon');
  if (memballoon) {
    memballoon.requiredAttribute('model');
    memballoon.choice('model', ['none'], 'tsvmm has no memory balloon (only model=\'none\')');
    memballoon.finish();
  }
  devices.finish();
  return result;
}

function readDisk(disk: ElementReader, volumes: VolumeLookup | undefined): DiskDefinition {
  const type = disk.choice('type', ['file', 'volume'], 'tsvmm reads disk images from files (type=\'file\') and storage volumes (type=\'volume\')') ?? 'file';
  disk.choice('device', ['disk'], 'tsvmm attaches disks only (device=\'disk\')');
  const driver = disk.child('driver');
  let driverFormat: DiskDefinition['format'] | undefined;
  if (driver) {
    driver.choice('name', ['qemu'], 'the driver is tsvmm\'s own, which reads QEMU\'s formats (name=\'qemu\')');
    driverFormat = driver.choice('type', ['raw', 'qcow2'], 'tsvmm reads raw and qcow2 images');
    driver.finish();
  }
  const source = disk.child('source');
  if (!source) throw disk.error(type === 'volume' ? 'needs a <source pool=\'...\' volume=\'...\'/>' : 'needs a <source file=\'...\'/>');
  let path: string;
  let format = driverFormat ?? 'raw';
  let volume: DiskDefinition['volume'];
  if (type === 'volume') {
    volume = { pool: source.requiredAttribute('pool'), volume: source.requiredAttribute('volume'), ...(driverFormat ? { driverFormat } : {}) };
    ({ path, format } = volumes ? readVolume(source, volume, volumes) : { path: '', format });
  } else {
    path = readPath(source, source.requiredAttribute('file'));
  }
  source.finish();
  const target = disk.child('target');
  if (!target) throw disk.error('needs a <target dev=\'vda\' bus=\'virtio\'/>');
  const dev = target.requiredAttribute('dev');
  if (!/^vd[a-z]{1,3}$/.test(dev)) throw target.error(`dev='${dev}': tsvmm disks are virtio disks, named vda, vdb, ...`);
  target.choice('bus', ['virtio'], 'tsvmm attaches disks to virtio (bus=\'virtio\')');
  target.finish();
  const readOnly = disk.child('readonly');
  readOnly?.finish();
  const serialElement = disk.child('serial');
  let serial: string | undefined;
  if (serialElement) {
    serial = serialElement.text();
    if (!/^[A-Za-z0-9_ .+-]+$/.test(serial)) throw serialElement.error(`"${serial}": a serial is letters, digits, spaces and _ . + - (as libvirt's schema says)`);
    if (Buffer.byteLength(serial) > DISK_SERIAL_BYTES) throw serialElement.error(`"${serial}": a virtio disk's serial holds ${DISK_SERIAL_BYTES} bytes`);
    serialElement.finish();
  }
  disk.finish();
  return { path, format, ...(volume ? { volume } : {}), target: dev, readOnly: readOnly !== undefined, ...(serial !== undefined ? { serial } : {}) };
}

/** The file and format of the volume a <source pool volume> names. */
function readVolume(source: ElementReader, volume: VolumeSource, volumes: VolumeLookup): { path: string; format: DiskDefinition['format'] } {
  const found = volumes(volume.pool, volume.volume);
  if (typeof found === 'string') throw source.error(found);
  if (volume.driverFormat && volume.driverFormat !== found.format) {
    throw source.error(`volume '${volume.volume}' of pool '${volume.pool}' is ${found.format}, not the ${volume.driverFormat} its <driver> says`);
  }
  return { path: readPath(source, found.path), format: found.format };
}

function readInterfaces(elements: ElementReader[]): InterfaceDefinition[] {
  const read = elements.map((element) => {
    const type = element.requiredAttribute('type');
    element.choice('type', ['network', 'bridge', 'user'], 'tsvmm connects interfaces of type network, bridge or user');
    const mac = element.child('mac');
    let address: string | null = null;
    if (mac) {
      address = mac.requiredAttribute('address').toLowerCase();
      if (!MAC.test(address)) throw mac.error(`address='${address}' is not a MAC address (like 52:54:00:12:34:56)`);
      if (parseInt(address.slice(0, 2), 16) & 1) throw mac.error(`address='${address}' is a multicast address`);
      mac.finish();
    }
    const source = element.child('source');
    const via = type === 'network' || type === 'bridge' ? readInterfaceSource(element, source, type) : null;
    const portForwards = readPortForwards(element, type);
    const target = element.child('target');
    if (target && type === 'user') throw target.error(`type='user' has no TAP device to name (passt carries its frames)`);
    const dev = target ? readTapName(target) : undefined;
    const model = element.child('model');
    if (model) {
      model.requiredAttribute('type');
      model.choice('type', ['virtio'], 'tsvmm\'s network card is virtio (type=\'virtio\')');
      model.finish();
    }
    element.finish();
    return { element, address, type, via, dev, portForwards };
  });
  const taken = new Map<string, number>();
  for (const { element, address } of read) {
    if (address === null) continue;
    if (taken.has(address)) throw element.error(`mac address='${address}' is the interface's at line ${taken.get(address)} too`);
    taken.set(address, element.line);
  }
  return read.map(({ address, type, via, dev, portForwards }) => {
    const mac = address ?? generateMac(taken);
    taken.set(mac, 0);
    const target = dev !== undefined ? { target: dev } : {};
    if (type === 'network') return { type, mac, network: via!, ...target };
    if (type === 'bridge') return { type, mac, bridge: via!, ...target };
    return { type: 'user', mac, portForwards, ...target };
  });
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;

/** A <range> port attribute: 1 to 65535. */
function readPort(range: ElementReader, name: string): number | undefined {
  const text = range.attribute(name);
  if (text === undefined) return undefined;
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) throw range.error(`${name}='${text}' is not a port (1 to 65535)`);
  return Number(text);
}

/**
 * A user interface's <backend type='passt'/> (tsvmm's user networking is
 * always passt) and its <portForward>s as libvirt 9 spells them, a port per
 * <range start=HOSTPORT to=GUESTPORT/>. Port ranges, excluded ports and dev=
 * are refused with their line.
 */
function readPortForwards(element: ElementReader, type: string): PortForward[] {
  const backend = element.child('backend');
  const forwards = element.children('portForward');
  if (type !== 'user') {
    const extra = backend ?? forwards[0];
    if (extra) throw extra.error(`only an interface of type='user' has one (passt's)`);
    return [];
  }
  if (backend) {
    backend.choice('type', ['passt'], 'tsvmm\'s user networking is passt');
    backend.finish();
  }
  const seen = new Map<string, number>();
  return forwards.flatMap((forward) => {
    const protocol = forward.requiredAttribute('proto');
    forward.choice('proto', ['tcp', 'udp'], 'passt forwards tcp and udp');
    const address = forward.attribute('address');
    if (address !== undefined && !IPV4.test(address)) throw forward.error(`address='${address}': tsvmm forwards IPv4 addresses`);
    const ranges = forward.children('range');
    if (ranges.length === 0) throw forward.error(`needs a <range start='HOSTPORT' to='GUESTPORT'/>`);
    const read = ranges.map((range) => {
      const hostPort = readPort(range, 'start');
      if (hostPort === undefined) throw range.error(`needs the attribute start='...'`);
      if (range.attribute('end') !== undefined) throw range.error(`end='${range.attribute('end')}': tsvmm forwards one port per <range>`);
      if (range.attribute('exclude') !== undefined) throw range.error(`exclude='${range.attribute('exclude')}': tsvmm forwards the ports it is given, and excludes none`);
      const guestPort = readPort(range, 'to') ?? hostPort;
      const key = `${protocol} ${hostPort}`;
      if (seen.has(key)) throw range.error(`${protocol} port ${hostPort} is forwarded at line ${seen.get(key)} too`);
      seen.set(key, range.line);
      range.finish();
      return { protocol: protocol as 'tcp' | 'udp', ...(address !== undefined ? { address } : {}), hostPort, guestPort };
    });
    forward.finish();
    return read;
  });
}

/** <target dev='vnet7'/>: the host TAP's name, which the kernel takes as 1 to 15 bytes without "/", "%" or spaces. */
function readTapName(target: ElementReader): string {
  const dev = target.requiredAttribute('dev');
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(dev)) throw target.error(`dev='${dev}' is not an interface name (up to 15 letters, digits and _ . -)`);
  target.finish();
  return dev;
}

/** <source network='default'/> or <source bridge='br0'/>: what the interface connects to. */
function readInterfaceSource(element: ElementReader, source: ElementReader | undefined, type: 'network' | 'bridge'): string {
  if (!source) throw element.error(`type='${type}' needs a <source ${type}='...'/>`);
  const name = source.requiredAttribute(type);
  if (!name.trim()) throw source.error(`${type}='' names nothing`);
  source.finish();
  return name;
}

/** 52:54:00:xx:xx:xx, QEMU's prefix, as libvirt generates them; never one already in the domain. */
function generateMac(taken: Map<string, number>): string {
  for (;;) {
    const tail = [...randomBytes(3)].map((byte) => byte.toString(16).padStart(2, '0'));
    const mac = ['52', '54', '00', ...tail].join(':');
    if (!taken.has(mac)) return mac;
  }
}

/** <serial type='pty'>: COM1. libvirt's dumpxml spells out its target (isa-serial, port 0); tsvmm reads that too. */
function readSerial(serial: ElementReader): boolean {
  serial.requiredAttribute('type');
  serial.choice('type', ['pty'], 'tsvmm gives the serial port a console of its own (only type=\'pty\')');
  const target = serial.child('target');
  if (target) {
    target.choice('type', ['isa-serial'], 'a tsvmm PC has one ISA serial port');
    target.choice('port', ['0'], 'a tsvmm PC has one serial port, port 0 (COM1)');
    const model = target.child('model');
    if (model) {
      model.choice('name', ['isa-serial'], 'a tsvmm PC has one ISA serial port');
      model.finish();
    }
    target.finish();
  }
  serial.finish();
  return true;
}

function readConsole(console: ElementReader): 'serial' | 'virtio' {
  console.requiredAttribute('type');
  console.choice('type', ['pty'], 'tsvmm gives the console one of its own (only type=\'pty\')');
  const target = console.child('target');
  let kind: 'serial' | 'virtio' = 'serial';
  if (target) {
    kind = target.choice('type', ['serial', 'virtio'], 'the console is the serial port or a virtio console') ?? 'serial';
    target.choice('port', ['0'], 'tsvmm has one console (port 0)');
    target.finish();
  }
  console.finish();
  return kind;
}

/** <panic model='isa'> (the x86 default model), at QEMU's port 0x505 if an address is given. */
function readPanic(panic: ElementReader): boolean {
  panic.choice('model', ['isa'], 'tsvmm\'s panic device is QEMU\'s ISA pvpanic (model=\'isa\')');
  const address = panic.child('address');
  if (address) {
    address.requiredAttribute('type');
    address.choice('type', ['isa'], 'the pvpanic device is on the ISA bus (type=\'isa\')');
    const iobase = address.requiredAttribute('iobase');
    if (!/^0x0*505$/i.test(iobase)) throw address.error(`iobase='${iobase}': tsvmm's pvpanic sits at 0x505`);
    address.finish();
  }
  panic.finish();
  return true;
}

function readRng(rng: ElementReader): boolean {
  rng.requiredAttribute('model');
  rng.choice('model', ['virtio'], 'tsvmm\'s random number generator is virtio-rng (model=\'virtio\')');
  const backend = rng.child('backend');
  if (!backend) throw rng.error(`needs <backend model='random'>${RNG_BACKEND}</backend>`);
  backend.requiredAttribute('model');
  backend.choice('model', ['random'], 'tsvmm draws random bytes from the host (model=\'random\')');
  const source = backend.text().trim();
  if (source !== '' && source !== RNG_BACKEND) throw backend.error(`"${source}": tsvmm draws from ${RNG_BACKEND} only`);
  backend.finish();
  rng.finish();
  return true;
}
