// Turns a machine's virtio device configuration into device objects. The
// main thread does it once to learn each device's shape (and to fail early on
// a bad disk image); the virtio I/O thread does it again to run them.
import { basename } from 'node:path';
import { VirtioBlk } from '../devices/virtio/blk.ts';
import { VirtioConsole, type ConsoleHostIo } from '../devices/virtio/console.ts';
import type { VirtioDevice } from '../devices/virtio/device.ts';
import { VirtioNet } from '../devices/virtio/net.ts';
import { StreamBackend } from '../devices/virtio/net-stream.ts';
import { VirtioRng } from '../devices/virtio/rng.ts';
import { DiskDirtyLog } from '../storage/dirty-chunks.ts';
import { openDisk } from '../storage/open-disk.ts';
import type { VirtioDeviceConfig } from './config.ts';

/** What devices need from the host side of the machine. */
export interface VirtioHostServices {
  console: ConsoleHostIo;
  /** Each disk's dirty-chunk log (storage/dirty-chunks.ts), by its index among the disks; none when absent. */
  diskDirtyLogs?: readonly SharedArrayBuffer[];
}

/**
 * Each device's position among the machine's devices of its kind, in the
 * order given: [blk, net, blk, net] is [0, 0, 1, 1]. The index names the
 * device (blk1) and picks a network device's default MAC.
 */
export function indexesWithinKind(configs: readonly VirtioDeviceConfig[]): number[] {
  const seen = new Map<string, number>();
  return configs.map((config) => {
    const index = seen.get(config.kind) ?? 0;
    seen.set(config.kind, index + 1);
    return index;
  });
}

/** "blk0", "blk1", "net0": a device's name, from its kind and its index within the kind. */
function virtioDeviceName(kind: VirtioDeviceConfig['kind'], index: number): string {
  return `${kind}${index}`;
}

/** QEMU's locally administered prefix 52:54:00, then 12:34:56 plus the index among network devices. */
export function defaultMac(index: number): Uint8Array {
  return Uint8Array.of(0x52, 0x54, 0x00, 0x12, 0x34, 0x56 + index);
}

export function parseMac(text: string): Uint8Array | null {
  const parts = text.split(':');
  if (parts.length !== 6 || !parts.every((p) => /^[0-9a-fA-F]{2}$/.test(p))) return null;
  return Uint8Array.from(parts.map((p) => parseInt(p, 16)));
}

/** Opens the device `config` describes; `index` is its position among devices of its kind (see indexesWithinKind). */
export function openVirtioDevice(config: VirtioDeviceConfig, index: number, host: VirtioHostServices): VirtioDevice {
  const name = virtioDeviceName(config.kind, index);
  switch (config.kind) {
    case 'blk': {
      const disk = openDisk(config.path, {
        ...(config.format ? { format: config.format } : {}),
        readOnly: config.readOnly ?? false,
      });
      const dirtyLog = host.diskDirtyLogs?.[index];
      return new VirtioBlk(disk, { name, serial: config.serial ?? basename(config.path), ...(dirtyLog ? { dirtyLog: new DiskDirtyLog(dirtyLog) } : {}) });
    }
    case 'rng':
      return new VirtioRng({ name });
    case 'console':
      return new VirtioConsole({ name, io: host.console });
    case 'net': {
      const mac = config.mac ? parseMac(config.mac) : defaultMac(index);
      if (!mac) throw new Error(`${name}: bad MAC address ${config.mac}`);
      if (config.user) {
        if (config.streamFd === undefined) throw new Error(`${name}: user networking without a connection to passt`);
        return new VirtioNet({ name, backend: new StreamBackend(config.streamFd, 'passt'), mac });
      }
      if (config.tapFd === undefined) throw new Error(`${name}: no TAP device opened`);
      return new VirtioNet({ name, tapFd: config.tapFd, mac });
    }
  }
}
