// `tsvmm run`'s options for the PC's own (non-virtio) devices, in QEMU's
// spelling so that a QEMU command line from a test suite carries over:
//   --device isa-debug-exit[,iobase=N][,iosize=N]
//   --device pc-testdev
//   --device pvpanic                                          (at 0x505, QEMU's ioport)
//   --device edu                                              (QEMU's educational PCI device)
//   --device intel-iommu[,intremap=on|off][,eim=off]          (a VT-d unit at q35's 0xFED90000)
//   --fw-cfg [name=]NAME,file=PATH | [name=]NAME,string=S   (QEMU's -fw_cfg)
import type { FwCfgFileConfig, MachineConfig } from '../machine/config.ts';
import { InputError } from '../errors.ts';
import { FIXED_PORT_RANGES, PortLayout } from '../layout.ts';
import { hex } from '../hex.ts';
import { splitSpec, stringSetting } from './virtio-options.ts';

/** The `--device` names this file parses; the others are virtio devices. */
export const PLATFORM_DEVICE_NAMES = ['isa-debug-exit', 'pc-testdev', 'pvpanic', 'edu', 'intel-iommu'];

export function isPlatformDevice(spec: string): boolean {
  return PLATFORM_DEVICE_NAMES.includes(spec.split(',', 1)[0]!);
}

/** A number as QEMU's qdev properties take it: decimal or 0x-hexadecimal. */
function parseNumber(flag: string, spec: string, key: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^(0x[0-9a-f]+|\d+)$/i.test(text)) throw new InputError(`${flag} ${spec}: ${key}=${text} is not a number (decimal or 0x...)`);
  return Number(text);
}

/**
 * `--device isa-debug-exit[,iobase=N][,iosize=N]`: QEMU's defaults when a
 * setting is left out (0x501, 2 ports). The device replaces the machine's
 * default one, so with iobase=0xf4 nothing answers at 0x501 any more.
 */
export function parseIsaDebugExit(spec: string): NonNullable<MachineConfig['debugExit']> {
  const flag = '--device';
  const { head, settings } = splitSpec(flag, spec);
  if (head !== 'isa-debug-exit') throw new Error(`not an isa-debug-exit: ${spec}`);
  for (const key of settings.keys()) {
    if (key !== 'iobase' && key !== 'iosize') throw new InputError(`${flag} ${spec}: unknown setting "${key}" (known: iobase, iosize)`);
  }
  const port = parseNumber(flag, spec, 'iobase', stringSetting(flag, spec, settings, 'iobase')) ?? PortLayout.DEBUG_EXIT;
  const size = parseNumber(flag, spec, 'iosize', stringSetting(flag, spec, settings, 'iosize')) ?? PortLayout.DEBUG_EXIT_COUNT;
  if (size < 1) throw new InputError(`${flag} ${spec}: iosize must be at least 1 port`);
  if (port + size > 0x1_0000) throw new InputError(`${flag} ${spec}: ports ${hex(port)}+${size} go past 0xffff, the last I/O port`);
  const taken = FIXED_PORT_RANGES.find((r) => port < r.base + r.count && r.base < port + size);
  if (taken) throw new InputError(`${flag} ${spec}: ports ${hex(port)}-${hex(port + size - 1)} overlap ${taken.name} at ${hex(taken.base)}`);
  return { port, size };
}

/** pc-testdev's port windows (src/devices/pc-testdev.ts). */
const PC_TESTDEV_PORT_RANGES = [
  { base: PortLayout.PC_TESTDEV_IOPORT, count: 12 },
  { base: PortLayout.PC_TESTDEV_IRQ, count: 24 },
];

/** An on/off setting in QEMU's spellings. */
function onOff(flag: string, spec: string, key: string, value: string | true | undefined): boolean | undefined {
  if (value === undefined) return undefined;
  if (value === true || ['on', 'true', 'yes'].includes(value)) return true;
  if (['off', 'false', 'no'].includes(value)) return false;
  throw new InputError(`${flag} ${spec}: ${key}=${value} is neither on nor off`);
}

/**
 * `--device intel-iommu[,intremap=on|off][,eim=off]`: QEMU's VT-d unit.
 * Interrupt remapping is off unless intremap=on, as in QEMU; extended
 * interrupt mode (x2APIC destinations, eim=on) is not implemented.
 */
export function parseIntelIommu(spec: string): NonNullable<MachineConfig['iommu']> {
  const flag = '--device';
  const { settings } = splitSpec(flag, spec);
  for (const key of settings.keys()) {
    if (key !== 'intremap' && key !== 'eim') throw new InputError(`${flag} ${spec}: unknown setting "${key}" (known: intremap, eim)`);
  }
  const interruptRemapping = onOff(flag, spec, 'intremap', settings.get('intremap')) ?? false;
  if (onOff(flag, spec, 'eim', settings.get('eim'))) throw new InputError(`${flag} ${spec}: eim=on (x2APIC interrupt remapping) is not implemented; use eim=off`);
  return { interruptRemapping };
}

/** A `--device` that takes no settings and may be given once. */
function singleDevice(devices: readonly string[], name: string, why: string): boolean {
  const found = devices.filter((spec) => spec.split(',', 1)[0] === name);
  for (const spec of found) if (spec !== name) throw new InputError(`--device ${spec}: ${name} has no settings`);
  if (found.length > 1) throw new InputError(`--device ${name}: given more than once (${why})`);
  return found.length > 0;
}

/** The machine settings of the platform devices among `--device` specs, and the `--fw-cfg` files. */
export function platformConfigFromOptions(
  devices: readonly string[], fwCfg: readonly string[] = [],
): Pick<MachineConfig, 'debugExit' | 'pcTestdev' | 'pvpanic' | 'fwCfgFiles' | 'edu' | 'iommu'> {
  const debugExits = devices.filter((spec) => spec.split(',', 1)[0] === 'isa-debug-exit');
  if (debugExits.length > 1) throw new InputError('--device isa-debug-exit: given more than once (tsvmm has one debug-exit device)');
  const testdevs = devices.filter((spec) => spec.split(',', 1)[0] === 'pc-testdev');
  for (const spec of testdevs) if (spec !== 'pc-testdev') throw new InputError(`--device ${spec}: pc-testdev has no settings`);
  if (testdevs.length > 1) throw new InputError('--device pc-testdev: given more than once (its ports are fixed)');
  const pvpanics = devices.filter((spec) => spec.split(',', 1)[0] === 'pvpanic');
  for (const spec of pvpanics) if (spec !== 'pvpanic') throw new InputError(`--device ${spec}: pvpanic has no settings (it sits at ${hex(PortLayout.PVPANIC)}, QEMU's ioport)`);
  if (pvpanics.length > 1) throw new InputError('--device pvpanic: given more than once (tsvmm has one pvpanic port)');
  const debugExit = debugExits.length ? parseIsaDebugExit(debugExits[0]!) : null;
  if (debugExit && pvpanics.length && debugExit.port <= PortLayout.PVPANIC && PortLayout.PVPANIC < debugExit.port + debugExit.size) {
    throw new InputError(`--device ${debugExits[0]}: overlaps pvpanic's port ${hex(PortLayout.PVPANIC)}`);
  }
  if (debugExit && testdevs.length) {
    const taken = PC_TESTDEV_PORT_RANGES.find((r) => debugExit.port < r.base + r.count && r.base < debugExit.port + debugExit.size);
    if (taken) throw new InputError(`--device ${debugExits[0]}: overlaps pc-testdev's ports ${hex(taken.base)}-${hex(taken.base + taken.count - 1)}`);
  }
  const edu = singleDevice(devices, 'edu', 'tsvmm has one edu device');
  const iommus = devices.filter((spec) => spec.split(',', 1)[0] === 'intel-iommu');
  if (iommus.length > 1) throw new InputError('--device intel-iommu: given more than once (tsvmm has one VT-d unit)');
  return {
    ...(edu ? { edu: true } : {}),
    ...(iommus.length ? { iommu: parseIntelIommu(iommus[0]!) } : {}),
    ...(debugExit ? { debugExit } : {}),
    ...(testdevs.length ? { pcTestdev: true } : {}),
    ...(pvpanics.length ? { pvpanic: true } : {}),
    ...(fwCfg.length ? { fwCfgFiles: fwCfg.map(parseFwCfg) } : {}),
  };
}

/**
 * Splits a QEMU option string at single commas; ",," is a literal comma
 * (how QEMU's option parser lets a value such as string=a,,b hold one).
 */
function splitQemuOptions(spec: string): string[] {
  const parts: string[] = [];
  let current = '';
  for (let i = 0; i < spec.length; i++) {
    if (spec[i] !== ',') current += spec[i];
    else if (spec[i + 1] === ',') {
      current += ',';
      i++;
    } else {
      parts.push(current);
      current = '';
    }
  }
  parts.push(current);
  return parts;
}

/** `--fw-cfg [name=]NAME,file=PATH` or `--fw-cfg [name=]NAME,string=S`: one file in fw_cfg's directory. */
export function parseFwCfg(spec: string): FwCfgFileConfig {
  const flag = '--fw-cfg';
  const settings = new Map<string, string>();
  splitQemuOptions(spec).forEach((part, i) => {
    const eq = part.indexOf('=');
    // The first item may be the bare name, as in QEMU's "-fw_cfg opt/x,file=y".
    const [key, value] = eq < 0 ? (i === 0 ? ['name', part] : [part, '']) : [part.slice(0, eq), part.slice(eq + 1)];
    if (!['name', 'file', 'string'].includes(key)) throw new InputError(`${flag} ${spec}: unknown setting "${key}" (known: name, file, string)`);
    if (settings.has(key)) throw new InputError(`${flag} ${spec}: "${key}" given twice`);
    if (value === '') throw new InputError(`${flag} ${spec}: ${key} needs a value (${key}=...)`);
    settings.set(key, value);
  });
  const name = settings.get('name');
  const file = settings.get('file');
  const string = settings.get('string');
  if (name === undefined) throw new InputError(`${flag} ${spec}: no name (name=opt/NAME)`);
  if ((file === undefined) === (string === undefined)) throw new InputError(`${flag} ${spec}: give either file=PATH or string=S`);
  return file !== undefined ? { name, file } : { name, string: string! };
}
