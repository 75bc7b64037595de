// A domain as plain data: the part of libvirt's domain XML that tsvmm honours
// (docs: libvirt's formatdomain). parse.ts reads it from XML, serialize.ts
// writes it back in libvirt's layout, run-options.ts turns it into `tsvmm run`.
//
// Every field is filled in: what the XML left out holds libvirt's default (or
// a generated UUID or MAC address), so a definition says exactly what runs and
// parse(serialize(d)) gives d back.

/** What the guest's power-off, reboot or crash does (libvirt's on_poweroff, on_reboot, on_crash). */
export type LifecycleAction = 'destroy' | 'restart';

export interface DomainDefinition {
  name: string;
  /** Lower-case, with dashes: 5a1c2f3e-0b7d-4c4e-9f21-6a2b8d0c1e33. */
  uuid: string;
  /** A short one-line description (libvirt's <title>). */
  title?: string;
  description?: string;
  /** Guest RAM in bytes, a whole number of 4 KiB pages (<memory>; <currentMemory> is the same: no balloon). */
  memoryBytes: number;
  vcpus: number;
  os: DomainOs;
  onPoweroff: LifecycleAction;
  onReboot: LifecycleAction;
  onCrash: LifecycleAction;
  devices: DomainDevices;
}

/** Direct kernel boot; with no kernel, tsvmm boots its default guest (there is no firmware to boot a disk). */
export interface DomainOs {
  kernel?: string;
  initrd?: string;
  cmdline?: string;
}

export interface DomainDevices {
  /** <emulator>: kept as given, for the tool that starts the domain to check. */
  emulator?: string;
  /** In XML order. */
  disks: DiskDefinition[];
  interfaces: InterfaceDefinition[];
  /** A pty serial port: COM1, the only one a tsvmm PC has. */
  serial: boolean;
  /** Where the console is: COM1 (target type='serial') or a virtio console (hvc0); null when none is given. */
  console: 'serial' | 'virtio' | null;
  /** A virtio-rng fed from /dev/urandom. */
  rng: boolean;
  /** <panic model='isa'/>: QEMU's pvpanic at 0x505, through which the guest reports a crash (on_crash). */
  panic: boolean;
}

export interface DiskDefinition {
  /** <source file='...'>: an image file; for a storage volume, its file once resolved ('' before). */
  path: string;
  /** <driver type>; for a storage volume, the volume's format once resolved. */
  format: 'raw' | 'qcow2';
  /** <disk type='volume'>: the storage pool and volume it names (src/pool finds them when the domain starts). */
  volume?: VolumeSource;
  /** <target dev='vdX'>: the name libvirt gives the disk; tsvmm attaches disks in this name's order. */
  target: string;
  readOnly: boolean;
  serial?: string;
}

export interface VolumeSource {
  pool: string;
  volume: string;
  /** The <driver type> the XML gave, if any: the volume's format must be that one. */
  driverFormat?: 'raw' | 'qcow2';
}

/** Finds a storage volume's file and format, or says in a string why it cannot (src/pool provides it). */
export type VolumeLookup = (pool: string, volume: string) => { path: string; format: 'raw' | 'qcow2' } | string;

/**
 * A network card (virtio-net). How it reaches the host is kept as libvirt
 * states it: a libvirt network by name (src/network finds its bridge when the
 * domain starts), a host bridge, or user networking. `target` is the host
 * TAP's name (<target dev='...'/>); without one the kernel numbers a vnetN.
 */
export type InterfaceDefinition = { mac: string; target?: string } & (
  | { type: 'network'; network: string }
  | { type: 'bridge'; bridge: string }
  /** User networking through passt (libvirt's <backend type='passt'/>), with its <portForward>s. */
  | { type: 'user'; portForwards: PortForward[] }
);

/**
 * <portForward proto='tcp' [address='A']><range start='HOSTPORT' [to='GUESTPORT']/></portForward>,
 * one port per range: connections to the host's port reach the guest's.
 */
export interface PortForward {
  protocol: 'tcp' | 'udp';
  /** The host address passt listens on; all of them when absent. */
  address?: string;
  hostPort: number;
  guestPort: number;
}

/** libvirt's defaults for an absent <on_poweroff>, <on_reboot>, <on_crash>. */
export const DEFAULT_LIFECYCLE = { onPoweroff: 'destroy', onReboot: 'restart', onCrash: 'destroy' } as const;

/** The random source tsvmm's virtio-rng draws from (node:crypto, which reads the kernel's urandom pool). */
export const RNG_BACKEND = '/dev/urandom';
