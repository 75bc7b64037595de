// The virtio devices at VM creation, in the main thread: each device is
// opened once (to learn its shape and fail early on a bad image or TAP),
// placed (virtio-plan.ts), and its eventfds connected to KVM. The virtio I/O
// thread (virtio-io-thread.ts) runs them.
import { PciHostBridge } from '../devices/pci/index.ts';
import { VirtioBlk } from '../devices/virtio/blk.ts';
import { MmioRegister } from '../devices/virtio/mmio.ts';
import { bridgeTap, closeFd, createEventFd, ofdByteLocks, openTap, type VmFd } from '../kvm/index.ts';
import { InputError } from '../errors.ts';
import { DiskDirtyLog } from '../storage/dirty-chunks.ts';
import { identityOf, lockImageChain, type ImageLocks } from '../storage/image-lock.ts';
import type { MachineConfig, VirtioDeviceConfig } from './config.ts';
import { defaultMac, indexesWithinKind, openVirtioDevice, parseMac } from './virtio-devices.ts';
import { planVirtioDevices, type PlannedVirtioDevice } from './virtio-plan.ts';

/** The machine's virtio devices as planned, and the eventfd that wakes their I/O thread. */
export interface VirtioWiring {
  devices: PlannedVirtioDevice[];
  controlFd: number;
  /** The PCI host bridge's state (CONFIG_ADDRESS), shared by every vCPU thread; null without virtio-pci devices or edu. */
  pciBridgeState: SharedArrayBuffer | null;
  /** The disks, in their order (virtio0, virtio1...). */
  disks: WiredDisk[];
}

/** What a block migration needs of a disk besides the device. */
export interface WiredDisk {
  /** Virtual size in bytes. */
  size: number;
  /** Where the device marks the chunks it writes (storage/dirty-chunks.ts). */
  dirtyLog: SharedArrayBuffer;
}

/**
 * The disk images' locks, held by the main thread for the VM's lifetime: the
 * I/O thread opens the images again on descriptors of its own and takes no
 * locks (OFD locks on those would conflict with these). Kept beside the
 * wiring, not in it, because the wiring is copied to the threads.
 */
const heldImageLocks = new WeakMap<VirtioWiring, ImageLocks[]>();

/** Two --disk options naming one file (under any names) where either may write it. */
function refuseSharedWritableImages(configs: readonly VirtioDeviceConfig[]): void {
  const seen = new Map<string, Extract<VirtioDeviceConfig, { kind: 'blk' }>>();
  for (const config of configs) {
    if (config.kind !== 'blk') continue;
    const identity = identityOf(config.path);
    if (identity === null) continue;
    const earlier = seen.get(identity);
    if (earlier && !(earlier.readOnly && config.readOnly)) {
      throw new InputError(`${config.path}: the same image is given twice (--disk ${earlier.path} and --disk ${config.path}); add readonly to both to share it`);
    }
    seen.set(identity, config);
  }
}

/** Locks each disk image and its backing files as QEMU does, so no other tsvmm or QEMU writes them meanwhile. */
function lockDiskImages(configs: readonly VirtioDeviceConfig[]): ImageLocks[] {
  const held: ImageLocks[] = [];
  try {
    for (const config of configs) {
      if (config.kind !== 'blk') continue;
      held.push(lockImageChain(config.path, {
        ...(config.format ? { format: config.format } : {}),
        readOnly: config.readOnly ?? false,
        locks: ofdByteLocks,
      }));
    }
  } catch (e) {
    for (const locks of held) locks.release();
    throw e;
  }
  return held;
}

/**
 * Opens the virtio devices once here to learn their shape (and to fail before
 * the guest starts on a bad disk image or a missing TAP device), plans where
 * they sit, and connects their eventfds to KVM.
 */
export function wireVirtio(vm: VmFd, config: MachineConfig, hasIrqchip: boolean, { lockImages = true } = {}): VirtioWiring {
  const configs: VirtioDeviceConfig[] = [...(config.virtio ?? [])];
  if (config.console === 'virtio' && !configs.some((c) => c.kind === 'console')) configs.push({ kind: 'console' });
  // The host bridge also carries edu, a PCI function that is not virtio.
  if (configs.length === 0) return { devices: [], controlFd: -1, pciBridgeState: config.edu ? PciHostBridge.createState() : null, disks: [] };
  if (!hasIrqchip) throw new InputError('virtio devices need the interrupt controllers: use --irqchip with a flat guest');
  refuseSharedWritableImages(configs);
  // An incoming migration locks its disks only once the source let them go (lockWiredImages).
  const imageLocks = lockImages ? lockDiskImages(configs) : [];
  try {
    const wiring = wireLockedVirtio(vm, config, configs);
    heldImageLocks.set(wiring, imageLocks);
    return wiring;
  } catch (e) {
    for (const locks of imageLocks) locks.release();
    throw e;
  }
}

/** The TAP of a virtio-net device, in its bridge when it names one (the TAP's own MAC is the guest's with 0xfe first, as libvirt's). */
function openNetTap(config: VirtioDeviceConfig & { kind: 'net' }, index: number): number {
  const tap = openTap(config.tap);
  if (config.bridge === undefined) return tap.fd;
  try {
    const guestMac = (config.mac !== undefined ? parseMac(config.mac) : null) ?? defaultMac(index);
    bridgeTap(tap.name, config.bridge, Uint8Array.of(0xfe, ...guestMac.subarray(1)));
    return tap.fd;
  } catch (e) {
    closeFd(tap.fd);
    throw e;
  }
}

function wireLockedVirtio(vm: VmFd, config: MachineConfig, configs: VirtioDeviceConfig[]): VirtioWiring {
  const indexes = indexesWithinKind(configs);
  const noConsole = { write: () => {}, read: () => null };
  const described = configs.map((deviceConfig, i) => {
    const index = indexes[i]!;
    // User networking's passt socket comes with the configuration (src/network/passt.ts).
    if (deviceConfig.kind === 'net' && !deviceConfig.user && deviceConfig.tapFd === undefined) {
      deviceConfig = { ...deviceConfig, tapFd: openNetTap(deviceConfig, index) };
    }
    const device = openVirtioDevice(deviceConfig, index, { console: noConsole });
    const info = device.info;
    const diskSize = device instanceof VirtioBlk ? device.diskSize : 0;
    // The TAP or passt fd stays open for the I/O thread; a disk is opened again there.
    if (deviceConfig.kind !== 'net') device.close?.();
    return { config: deviceConfig, index, info, diskSize };
  });
  const devices = planVirtioDevices(described, {
    defaultTransport: config.virtioTransport ?? 'mmio',
    createEventFd,
    useIrqfd: config.irqfd === true,
  });
  for (const device of devices) {
    if (device.irqfd !== null) vm.irqfd(device.irqfd, device.irq);
    // A virtio-mmio notify is a 32-bit write of the queue index to one register.
    if (device.transport === 'mmio' && config.ioeventfd === true) {
      device.notifyFds.forEach((fd, queue) => vm.ioeventfd({
        address: device.address + MmioRegister.QUEUE_NOTIFY, length: 4, datamatch: queue, fd, pio: false,
      }));
    }
  }
  const pciBridgeState = devices.some((d) => d.transport === 'pci') || config.edu ? PciHostBridge.createState() : null;
  const disks = described.filter((d) => d.config.kind === 'blk').map((d) => ({ size: d.diskSize, dirtyLog: DiskDirtyLog.create(d.diskSize) }));
  return { devices, controlFd: createEventFd(), pciBridgeState, disks };
}

/**
 * Takes the disk images' locks for a machine wired without them (an incoming
 * migration, once the source has released them). InputError when another
 * process still holds one.
 */
export function lockWiredImages(wiring: VirtioWiring): void {
  if (heldImageLocks.get(wiring)?.length) return;
  heldImageLocks.set(wiring, lockDiskImages(wiring.devices.map((d) => d.config)));
}

/** Lets the disk images go while the machine lives on (the VM migrated away: its destination takes them). */
export function releaseWiredImages(wiring: VirtioWiring): void {
  for (const locks of heldImageLocks.get(wiring) ?? []) locks.release();
  heldImageLocks.delete(wiring);
}

/** Closes what wireVirtio opened: TAP fds, queue and interrupt eventfds, the control eventfd, the image locks (not a passt socket: its starter's). */
export function closeVirtioWiring(wiring: VirtioWiring): void {
  for (const device of wiring.devices) {
    if (device.config.kind === 'net' && device.config.tapFd !== undefined) closeFd(device.config.tapFd);
    for (const fd of [...device.notifyFds, ...(device.irqfd !== null ? [device.irqfd] : [])]) closeFd(fd);
  }
  if (wiring.controlFd >= 0) closeFd(wiring.controlFd);
  releaseWiredImages(wiring);
}
