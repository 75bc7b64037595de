// `tsvmm run`'s virtio options, QEMU-style comma lists:
//   --disk PATH[,format=raw|qcow2][,readonly][,serial=S][,transport=mmio|pci]
//   --net tap[=NAME][,mac=52:54:00:12:34:56][,transport=...]
//   --net bridge[,br=BR][,ifname=NAME][,mac=...][,transport=...]
//   --net user[,hostfwd=tcp|udp:[ADDRESS]:HOSTPORT-:GUESTPORT]...[,mac=...][,transport=...]
//   --device virtio-rng|virtio-console[,transport=...]
import type { HostForward, VirtioDeviceConfig, VirtioTransportKind } from '../machine/config.ts';
import { parseMac } from '../machine/virtio-devices.ts';
import { InputError } from '../errors.ts';

export interface VirtioOptions {
  disk?: string[];
  net?: string[];
  device?: string[];
  virtioTransport?: string;
  console?: string;
}

/** Splits "a,b=c,d" into the first item and key=value settings (a bare word is `true`). */
export function splitSpec(flag: string, spec: string): { head: string; settings: Map<string, string | true> } {
  const [head = '', ...rest] = spec.split(',');
  const settings = new Map<string, string | true>();
  for (const item of rest) {
    if (!item) throw new InputError(`${flag} ${spec}: empty setting`);
    const eq = item.indexOf('=');
    const key = eq < 0 ? item : item.slice(0, eq);
    if (settings.has(key)) throw new InputError(`${flag} ${spec}: "${key}" given twice`);
    settings.set(key, eq < 0 ? true : item.slice(eq + 1));
  }
  return { head, settings };
}

function takeTransport(flag: string, spec: string, settings: Map<string, string | true>): { transport?: VirtioTransportKind } {
  const value = settings.get('transport');
  settings.delete('transport');
  if (value === undefined) return {};
  if (value !== 'mmio' && value !== 'pci') throw new InputError(`${flag} ${spec}: transport must be mmio or pci`);
  return { transport: value };
}

function rejectUnknown(flag: string, spec: string, settings: Map<string, string | true>, known: string[]): void {
  for (const key of settings.keys()) {
    if (!known.includes(key)) throw new InputError(`${flag} ${spec}: unknown setting "${key}" (known: ${[...known, 'transport'].join(', ')})`);
  }
}

export function stringSetting(flag: string, spec: string, settings: Map<string, string | true>, key: string): string | undefined {
  const value = settings.get(key);
  if (value === true) throw new InputError(`${flag} ${spec}: ${key} needs a value (${key}=...)`);
  return value;
}

export function parseDisk(spec: string): VirtioDeviceConfig {
  const { head: path, settings } = splitSpec('--disk', spec);
  if (!path) throw new InputError(`--disk ${spec}: no image path`);
  const transport = takeTransport('--disk', spec, settings);
  rejectUnknown('--disk', spec, settings, ['format', 'readonly', 'serial']);
  const format = stringSetting('--disk', spec, settings, 'format');
  if (format !== undefined && format !== 'raw' && format !== 'qcow2') throw new InputError(`--disk ${spec}: format must be raw or qcow2`);
  const readOnly = settings.get('readonly');
  if (readOnly !== undefined && readOnly !== true && readOnly !== 'on' && readOnly !== 'off') {
    throw new InputError(`--disk ${spec}: readonly takes no value (or on/off)`);
  }
  const serial = stringSetting('--disk', spec, settings, 'serial');
  return {
    kind: 'blk', path, ...transport,
    ...(format ? { format } : {}),
    ...(readOnly === true || readOnly === 'on' ? { readOnly: true } : {}),
    ...(serial !== undefined ? { serial } : {}),
  };
}

/** An interface name the kernel takes: up to 15 bytes, and at most one "%d" for it to number. */
const INTERFACE_NAME = /^(?=.{1,15}$)[A-Za-z0-9_.-]*(?:%d[A-Za-z0-9_.-]*)?$/;

/** hostfwd=tcp|udp:[ADDRESS]:HOSTPORT-[:]GUESTPORT, QEMU's spelling; the guest address is passt's to choose. */
const HOST_FORWARD = /^(tcp|udp):([0-9.]*):(\d+)-:?(\d+)$/;

function parseHostForward(spec: string, text: string): HostForward {
  const match = HOST_FORWARD.exec(text);
  if (!match) throw new InputError(`--net ${spec}: hostfwd=${text}: expected hostfwd=tcp::HOSTPORT-:GUESTPORT (or udp, or tcp:ADDRESS:HOSTPORT-:GUESTPORT)`);
  const [, protocol, address, hostPort, guestPort] = match as unknown as [string, 'tcp' | 'udp', string, string, string];
  for (const port of [hostPort, guestPort]) {
    if (Number(port) < 1 || Number(port) > 65535) throw new InputError(`--net ${spec}: hostfwd=${text}: port ${port} is not 1 to 65535`);
  }
  if (address && !/^(\d{1,3})(\.\d{1,3}){3}$/.test(address)) throw new InputError(`--net ${spec}: hostfwd=${text}: "${address}" is not an IPv4 address`);
  return { protocol, ...(address ? { address } : {}), hostPort: Number(hostPort), guestPort: Number(guestPort) };
}

/** `user[,hostfwd=...]...[,mac=...]`: QEMU's -nic user, through passt (src/network/passt.ts). hostfwd may repeat. */
function parseUserNet(spec: string): VirtioDeviceConfig {
  const items = spec.split(',');
  const forwards = items.filter((item) => item.startsWith('hostfwd=')).map((item) => parseHostForward(spec, item.slice('hostfwd='.length)));
  const { head, settings } = splitSpec('--net', items.filter((item) => !item.startsWith('hostfwd=')).join(','));
  if (head !== 'user') throw new InputError(`--net ${spec}: user takes no name`);
  const transport = takeTransport('--net', spec, settings);
  rejectUnknown('--net', spec, settings, ['hostfwd', 'mac']);
  const mac = stringSetting('--net', spec, settings, 'mac');
  if (mac !== undefined && !parseMac(mac)) throw new InputError(`--net ${spec}: mac must look like 52:54:00:12:34:56`);
  const seen = new Set<string>();
  for (const forward of forwards) {
    const key = `${forward.protocol} ${forward.hostPort}`;
    if (seen.has(key)) throw new InputError(`--net ${spec}: host port ${forward.protocol} ${forward.hostPort} is forwarded twice`);
    seen.add(key);
  }
  return { kind: 'net', ...transport, user: { hostForwards: forwards }, ...(mac ? { mac } : {}) };
}

/**
 * `tap[=NAME]`: a TAP the host sets up itself. `bridge[,br=BR][,ifname=NAME]`
 * (QEMU's -nic bridge, br0 by default): a TAP that tsvmm puts into the host
 * bridge BR and brings up, as libvirt does for a domain; it goes away with tsvmm.
 */
export function parseNet(spec: string): VirtioDeviceConfig {
  if (spec.split(',')[0]?.split('=')[0] === 'user') return parseUserNet(spec);
  const { head, settings } = splitSpec('--net', spec);
  const [backend, tapName] = head.split('=', 2) as [string, string | undefined];
  if (backend !== 'tap' && backend !== 'bridge') {
    throw new InputError(`--net ${spec}: the backends are tap (tap or tap=NAME), bridge (bridge,br=BR) and user (user,hostfwd=tcp::HOSTPORT-:GUESTPORT)`);
  }
  if (backend === 'bridge' && tapName !== undefined) throw new InputError(`--net ${spec}: the bridge is named with br=${tapName}`);
  const transport = takeTransport('--net', spec, settings);
  rejectUnknown('--net', spec, settings, backend === 'bridge' ? ['br', 'ifname', 'mac'] : ['mac']);
  const name = backend === 'tap' ? tapName : stringSetting('--net', spec, settings, 'ifname');
  const bridge = backend === 'bridge' ? stringSetting('--net', spec, settings, 'br') ?? 'br0' : undefined;
  for (const interfaceName of [name, bridge]) {
    if (interfaceName !== undefined && !INTERFACE_NAME.test(interfaceName)) throw new InputError(`--net ${spec}: "${interfaceName}" is not a valid interface name`);
  }
  if (bridge?.includes('%')) throw new InputError(`--net ${spec}: br names an existing bridge ("${bridge}" is a template)`);
  const mac = stringSetting('--net', spec, settings, 'mac');
  if (mac !== undefined && !parseMac(mac)) throw new InputError(`--net ${spec}: mac must look like 52:54:00:12:34:56`);
  return { kind: 'net', ...transport, ...(name ? { tap: name } : {}), ...(bridge ? { bridge } : {}), ...(mac ? { mac } : {}) };
}

export function parseDevice(spec: string): VirtioDeviceConfig {
  const { head, settings } = splitSpec('--device', spec);
  const transport = takeTransport('--device', spec, settings);
  rejectUnknown('--device', spec, settings, []);
  if (head === 'virtio-rng') return { kind: 'rng', ...transport };
  if (head === 'virtio-console') return { kind: 'console', ...transport };
  throw new InputError(`--device ${spec}: unknown device (known: virtio-rng, virtio-console, isa-debug-exit, pc-testdev; disks and networks have --disk and --net)`);
}

/** The machine's virtio settings from the command line. */
export function virtioConfigFromOptions(options: VirtioOptions): {
  virtio?: VirtioDeviceConfig[]; virtioTransport?: VirtioTransportKind; console?: 'serial' | 'virtio';
} {
  const devices = [
    ...(options.disk ?? []).map(parseDisk),
    ...(options.net ?? []).map(parseNet),
    ...(options.device ?? []).map(parseDevice),
  ];
  const transport = options.virtioTransport;
  if (transport !== undefined && transport !== 'mmio' && transport !== 'pci') {
    throw new InputError(`--virtio-transport ${transport}: expected mmio or pci`);
  }
  const console = options.console;
  if (console !== undefined && console !== 'serial' && console !== 'virtio') {
    throw new InputError(`--console ${console}: expected serial or virtio`);
  }
  return {
    ...(devices.length ? { virtio: devices } : {}),
    ...(transport ? { virtioTransport: transport } : {}),
    ...(console ? { console } : {}),
  };
}
