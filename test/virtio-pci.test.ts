// The virtio-pci modern transport from the driver's side: found through the
// host bridge's configuration ports and its capability list the way Linux's
// virtio_pci_modern probe finds it, its BAR sized and moved, and a virtio-blk
// device brought up through the common configuration and made to read a
// sector. No KVM: the "guest" is this file, RAM is an ArrayBuffer.
import { describe, expect, it } from 'vitest';
import { AddressSpace, type BusDevice } from '../src/bus/index.ts';
import { GuestMemory } from '../src/memory/index.ts';
import { PciCommand, PciConfig, PciHostBridge, PciStatus } from '../src/devices/pci/index.ts';
import { VirtioBlk, BlkRequest, SECTOR_SIZE } from '../src/devices/virtio/blk.ts';
import type { VirtioDeviceInfo } from '../src/devices/virtio/device.ts';
import {
  CapField, CommonCfg, NOTIFY_OFF_MULTIPLIER, VIRTIO_MSI_NO_VECTOR, VIRTIO_PCI_BAR_SIZE, VirtioPci, VirtioPciCap, VirtioPciRegion,
  type VirtioPciOptions,
} from '../src/devices/virtio/pci.ts';
import { VirtioDeviceRunner } from '../src/devices/virtio/runner.ts';
import { VirtioSharedState } from '../src/devices/virtio/shared-state.ts';
import { DescriptorFlag, DeviceType, Feature, InterruptCause, Status } from '../src/devices/virtio/spec.ts';
import { VirtioTransport } from '../src/devices/virtio/transport.ts';
import { MemoryDisk } from './helpers/memory-disk.ts';

const RAM = 1 << 20;
const BAR = 0xd000_0000;
const IRQ = 11;
const PCI_CAP_ID_VNDR = 0x09;

/** Configuration accesses through ports 0xCF8/0xCFC, as a driver makes them. */
function configPorts(pio: AddressSpace, slot: number) {
  const select = (register: number) => pio.write(0xcf8, 4, (0x8000_0000 | (slot << 11) | (register & 0xfc)) >>> 0);
  return {
    read(register: number, size: number): number {
      select(register);
      return pio.read(0xcfc + (register & 3), size);
    },
    write(register: number, size: number, value: number): void {
      select(register);
      pio.write(0xcfc + (register & 3), size, value);
    },
  };
}

type Config = ReturnType<typeof configPorts>;

interface FoundCapability {
  position: number;
  cfgType: number;
  bar: number;
  offset: number;
  length: number;
}

/** Linux's pci_find_capability/pci_find_next_capability walk (at most 48 steps), keeping the virtio ones. */
function walkCapabilities(config: Config): FoundCapability[] {
  const found: FoundCapability[] = [];
  if (!(config.read(PciConfig.STATUS, 2) & PciStatus.CAPABILITIES)) return found;
  let position = config.read(PciConfig.CAPABILITIES, 1);
  for (let ttl = 48; ttl > 0; ttl--) {
    if (position < 0x40) break;
    position &= ~3;
    const entry = config.read(position, 2);
    if ((entry & 0xff) === 0xff) break;
    if ((entry & 0xff) === PCI_CAP_ID_VNDR) {
      found.push({
        position,
        cfgType: config.read(position + CapField.CFG_TYPE, 1),
        bar: config.read(position + CapField.BAR, 1),
        offset: config.read(position + CapField.OFFSET, 4),
        length: config.read(position + CapField.LENGTH, 4),
      });
    }
    position = entry >> 8;
  }
  return found;
}

/** What Linux's vp_modern_map_capability checks before it maps a structure. */
function checkMappable(cap: FoundCapability, minLength: number, align: number, barLength: number): void {
  expect(cap.bar).toBe(0);
  expect(cap.length).toBeGreaterThan(0);
  expect(cap.length).toBeGreaterThanOrEqual(minLength);
  expect(cap.offset % align).toBe(0);
  expect(cap.offset + Math.max(minLength, 1)).toBeLessThanOrEqual(barLength);
}

function blkSetup(options: Partial<VirtioPciOptions> = {}) {
  const memory = GuestMemory.ofArrayBuffers([{ guestAddress: 0, size: RAM }]);
  const disk = MemoryDisk.filled(16, (i) => i * 7 + (i >> 9));
  const blk = new VirtioBlk(disk, { name: 'blk0', serial: 'tsvmm-pci' });
  const state = VirtioSharedState.create(blk.info.queueMaxSizes.length);
  const interrupts = { count: 0 };
  const runner = new VirtioDeviceRunner(blk, state, memory, { trigger: () => interrupts.count++ });
  const transport = new VirtioTransport(blk.info, state, { notify: (q) => runner.notify(q), statusChanged: () => runner.sync() });
  const pio = AddressSpace.ports();
  const mmio = AddressSpace.memory();
  const bridge = new PciHostBridge();
  bridge.attach(pio);
  const barEvents: string[] = [];
  const notifyEvents: string[] = [];
  const pci = new VirtioPci(transport, {
    irq: IRQ,
    mmio,
    barAddress: BAR,
    forbidden: [{ base: 0, length: RAM }],
    barListener: { barMapped: (bar, address, length) => barEvents.push(`${bar}:${address === null ? 'off' : address.toString(16)}+${length.toString(16)}`) },
    onNotifyMoved: (queue, address) => notifyEvents.push(`${queue}:${address === null ? 'off' : address.toString(16)}`),
    ...options,
  });
  const { slot } = bridge.addFunction(pci);
  const config = configPorts(pio, slot);
  return { memory, disk, blk, state, runner, interrupts, transport, pio, mmio, bridge, pci, slot, config, barEvents, notifyEvents };
}

describe('virtio-pci: identity', () => {
  it('is a non-transitional virtio-blk: 1af4:1042 rev 1, class 018000, subsystem 1af4:1042, INTA# on the given IRQ', () => {
    const { config } = blkSetup();
    expect(config.read(PciConfig.VENDOR_ID, 4)).toBe(0x1042_1af4);
    expect(config.read(PciConfig.REVISION_ID, 4)).toBe(0x0180_0001);
    expect(config.read(PciConfig.HEADER_TYPE, 1)).toBe(0);
    expect(config.read(PciConfig.SUBSYSTEM_VENDOR_ID, 4)).toBe(0x1042_1af4);
    expect(config.read(PciConfig.INTERRUPT_PIN, 1)).toBe(1);
    expect(config.read(PciConfig.INTERRUPT_LINE, 1)).toBe(IRQ);
    // As a BIOS leaves it: the BAR assigned and Memory Space on.
    expect(config.read(PciConfig.BAR0, 4)).toBe(BAR);
    expect(config.read(PciConfig.COMMAND, 2) & PciCommand.MEMORY).toBe(PciCommand.MEMORY);
    // Only BAR 0 is implemented, and there is no expansion ROM.
    for (let bar = 1; bar < 6; bar++) {
      config.write(PciConfig.BAR0 + 4 * bar, 4, 0xffff_ffff);
      expect(config.read(PciConfig.BAR0 + 4 * bar, 4)).toBe(0);
    }
    config.write(PciConfig.EXPANSION_ROM, 4, 0xffff_f800);
    expect(config.read(PciConfig.EXPANSION_ROM, 4)).toBe(0);
  });

  it('takes its class code from the device type', () => {
    const classOf = (type: number) => {
      const info: VirtioDeviceInfo = { type, name: `t${type}`, features: 0n, queueMaxSizes: [64], config: new Uint8Array(0) };
      const transport = new VirtioTransport(info, VirtioSharedState.create(1), { notify: () => {}, statusChanged: () => {} });
      const pci = new VirtioPci(transport, { irq: 5, mmio: AddressSpace.memory() });
      return [pci.readConfig(PciConfig.DEVICE_ID, 2), pci.readConfig(PciConfig.REVISION_ID, 4) >>> 8];
    };
    expect(classOf(DeviceType.NET)).toEqual([0x1041, 0x020000]);
    expect(classOf(DeviceType.BLOCK)).toEqual([0x1042, 0x018000]);
    expect(classOf(DeviceType.CONSOLE)).toEqual([0x1043, 0x078000]);
    expect(classOf(DeviceType.ENTROPY)).toEqual([0x1044, 0x00ff00]);
  });
});

describe('virtio-pci: the capability list, as virtio_pci_modern probes it', () => {
  it('has COMMON, NOTIFY, ISR, DEVICE and PCI_CFG capabilities that pass vp_modern_map_capability', () => {
    const { config, transport } = blkSetup();
    const caps = walkCapabilities(config);
    expect(caps.map((c) => c.cfgType)).toEqual([
      VirtioPciCap.COMMON_CFG, VirtioPciCap.NOTIFY_CFG, VirtioPciCap.ISR_CFG, VirtioPciCap.DEVICE_CFG, VirtioPciCap.PCI_CFG,
    ]);
    // The BAR's length, found by sizing it.
    const original = config.read(PciConfig.BAR0, 4);
    config.write(PciConfig.BAR0, 4, 0xffff_ffff);
    const barLength = (~(config.read(PciConfig.BAR0, 4) & ~0xf) >>> 0) + 1;
    config.write(PciConfig.BAR0, 4, original);
    expect(barLength).toBe(VIRTIO_PCI_BAR_SIZE);

    const byType = (type: number) => caps.find((c) => c.cfgType === type)!;
    checkMappable(byType(VirtioPciCap.COMMON_CFG), 0x38, 4, barLength); // sizeof(struct virtio_pci_common_cfg)
    checkMappable(byType(VirtioPciCap.ISR_CFG), 1, 1, barLength);
    checkMappable(byType(VirtioPciCap.NOTIFY_CFG), 2, 2, barLength);
    checkMappable(byType(VirtioPciCap.DEVICE_CFG), 0, 4, barLength);
    expect(byType(VirtioPciCap.DEVICE_CFG).length).toBe(transport.info.config.length);

    const notify = byType(VirtioPciCap.NOTIFY_CFG);
    const multiplier = config.read(notify.position + CapField.NOTIFY_OFF_MULTIPLIER, 4);
    expect(multiplier).toBe(NOTIFY_OFF_MULTIPLIER);
    // Every queue's notify address (queue_notify_off * multiplier + 2) lies inside the notify structure.
    expect((transport.queueCount - 1) * multiplier + 2).toBeLessThanOrEqual(notify.length);
    // cap_len covers the whole structure.
    expect(config.read(notify.position + CapField.CAP_LEN, 1)).toBe(20);
    expect(config.read(byType(VirtioPciCap.PCI_CFG).position + CapField.CAP_LEN, 1)).toBe(20);
    expect(config.read(byType(VirtioPciCap.COMMON_CFG).position + CapField.CAP_LEN, 1)).toBe(16);
  });

  it('leaves DEVICE_CFG out for a device without configuration (Linux refuses a zero-length one)', () => {
    const info: VirtioDeviceInfo = { type: DeviceType.ENTROPY, name: 'rng0', features: 0n, queueMaxSizes: [64], config: new Uint8Array(0) };
    const transport = new VirtioTransport(info, VirtioSharedState.create(1), { notify: () => {}, statusChanged: () => {} });
    const pio = AddressSpace.ports();
    const bridge = new PciHostBridge();
    bridge.attach(pio);
    const { slot } = bridge.addFunction(new VirtioPci(transport, { irq: 5, mmio: AddressSpace.memory() }));
    const types = walkCapabilities(configPorts(pio, slot)).map((c) => c.cfgType);
    expect(types).toEqual([VirtioPciCap.COMMON_CFG, VirtioPciCap.NOTIFY_CFG, VirtioPciCap.ISR_CFG, VirtioPciCap.PCI_CFG]);
  });
});

describe('virtio-pci: the BAR', () => {
  it('starts registered at the firmware address and tells the machine where each notify register is', () => {
    const { mmio, barEvents, notifyEvents, pci } = blkSetup();
    expect(mmio.list().map((r) => [r.base, r.length, r.device.name])).toEqual([[BAR, VIRTIO_PCI_BAR_SIZE, 'virtio-pci blk0']]);
    expect(barEvents).toEqual(['0:d0000000+4000']);
    expect(notifyEvents).toEqual(['0:d0003000']);
    expect(pci.notifyAddress(0)).toBe(BAR + VirtioPciRegion.NOTIFY);
  });

  it("follows Linux's __pci_read_base: decoding off, size, restore, decoding on", () => {
    const { config, mmio, barEvents, notifyEvents } = blkSetup();
    barEvents.length = notifyEvents.length = 0;
    const command = config.read(PciConfig.COMMAND, 2);
    config.write(PciConfig.COMMAND, 2, command & ~PciCommand.MEMORY);
    expect(mmio.list()).toHaveLength(0);
    expect(mmio.read(BAR + CommonCfg.NUM_QUEUES, 2)).toBe(0xffff);

    const original = config.read(PciConfig.BAR0, 4);
    config.write(PciConfig.BAR0, 4, 0xffff_ffff);
    expect(config.read(PciConfig.BAR0, 4)).toBe((~(VIRTIO_PCI_BAR_SIZE - 1)) >>> 0);
    expect(mmio.list()).toHaveLength(0); // sizing with decoding off maps nothing
    config.write(PciConfig.BAR0, 4, original);
    config.write(PciConfig.COMMAND, 2, command);
    expect(mmio.read(BAR + CommonCfg.NUM_QUEUES, 2)).toBe(1);
    expect(barEvents).toEqual(['0:off+4000', '0:d0000000+4000']);
    expect(notifyEvents).toEqual(['0:off', '0:d0003000']);
  });

  it('moves when the guest rewrites it with decoding on; the old address goes dark', () => {
    const { config, mmio, barEvents, notifyEvents, pci } = blkSetup();
    barEvents.length = notifyEvents.length = 0;
    config.write(PciConfig.BAR0, 4, 0xe000_0000);
    expect(mmio.list().map((r) => r.base)).toEqual([0xe000_0000]);
    expect(mmio.read(0xe000_0000 + CommonCfg.NUM_QUEUES, 2)).toBe(1);
    expect(mmio.read(BAR + CommonCfg.NUM_QUEUES, 2)).toBe(0xffff);
    expect(barEvents).toEqual(['0:e0000000+4000']);
    expect(notifyEvents).toEqual(['0:e0003000']);
    expect(pci.notifyAddress(0)).toBe(0xe000_3000);
    // Rewriting the same address changes nothing and calls nobody.
    config.write(PciConfig.BAR0, 4, 0xe000_0000);
    expect(barEvents).toHaveLength(1);
  });

  it('an unassigned BAR decodes nothing until the guest assigns it and enables Memory Space', () => {
    const { config, mmio, barEvents, notifyEvents } = blkSetup({ barAddress: undefined });
    expect(config.read(PciConfig.BAR0, 4)).toBe(0);
    expect(config.read(PciConfig.COMMAND, 2)).toBe(0);
    expect(mmio.list()).toHaveLength(0);
    config.write(PciConfig.BAR0, 4, 0xd010_0000);
    expect(mmio.list()).toHaveLength(0);
    config.write(PciConfig.COMMAND, 2, PciCommand.MEMORY | PciCommand.BUS_MASTER);
    expect(mmio.list().map((r) => r.base)).toEqual([0xd010_0000]);
    expect(barEvents).toEqual(['0:d0100000+4000']);
    expect(notifyEvents).toEqual(['0:d0103000']);
  });

  it('refuses (and counts) a BAR over guest RAM or over another device, without throwing', () => {
    const { config, mmio, pci, barEvents, notifyEvents } = blkSetup();
    const other: BusDevice = { name: 'other', read: () => 0x5a, write: () => {} };
    mmio.register(0xf000_0000, 0x1000, other);
    barEvents.length = notifyEvents.length = 0;

    expect(() => config.write(PciConfig.BAR0, 4, 0x0000_8000)).not.toThrow();
    expect(pci.bar.refused).toBe(1);
    expect(pci.bar.mapped).toBeNull();
    expect(mmio.list().map((r) => r.device.name)).toEqual(['other']);
    expect(barEvents).toEqual(['0:off+4000']);
    expect(notifyEvents).toEqual(['0:off']);

    expect(() => config.write(PciConfig.BAR0, 4, 0xf000_0000)).not.toThrow();
    expect(pci.bar.refused).toBe(2);
    expect(mmio.read(0xf000_0000, 4)).toBe(0x5a);
    expect(barEvents).toEqual(['0:off+4000']); // still off: no new event

    config.write(PciConfig.BAR0, 4, BAR);
    expect(pci.bar.mapped).toBe(BAR);
    expect(barEvents).toEqual(['0:off+4000', '0:d0000000+4000']);
  });

  it('a firmware address that collides is a setup error, thrown at construction', () => {
    expect(() => blkSetup({ barAddress: 0x4000 })).toThrow(/overlaps/);
    expect(() => blkSetup({ barAddress: BAR + 0x1000 })).toThrow(/aligned/);
  });
});

/** A driver's view of the BAR, found through the capabilities. */
function driverOf(setup: ReturnType<typeof blkSetup>) {
  const { config, mmio } = setup;
  const caps = walkCapabilities(config);
  const bar = (config.read(PciConfig.BAR0, 4) & ~0xf) >>> 0;
  const at = (type: number) => bar + caps.find((c) => c.cfgType === type)!.offset;
  const common = at(VirtioPciCap.COMMON_CFG);
  const notifyCap = caps.find((c) => c.cfgType === VirtioPciCap.NOTIFY_CFG)!;
  const multiplier = config.read(notifyCap.position + CapField.NOTIFY_OFF_MULTIPLIER, 4);
  return {
    common: {
      read: (field: number, size: number) => mmio.read(common + field, size),
      write: (field: number, size: number, value: number) => mmio.write(common + field, size, value),
    },
    isr: at(VirtioPciCap.ISR_CFG),
    device: at(VirtioPciCap.DEVICE_CFG),
    notifyAddress: (notifyOff: number) => bar + notifyCap.offset + notifyOff * multiplier,
  };
}

describe('virtio-pci: a driver brings up virtio-blk and reads a sector', () => {
  it('negotiates, sets up the queue, and gets sector 0 back with an interrupt', () => {
    const setup = blkSetup();
    const { memory, disk, interrupts, mmio, config, state } = setup;
    const d = driverOf(setup);
    const { common } = d;

    // Reset, then ACKNOWLEDGE and DRIVER (virtio 1.2, 3.1.1).
    common.write(CommonCfg.DEVICE_STATUS, 1, 0);
    expect(common.read(CommonCfg.DEVICE_STATUS, 1)).toBe(0);
    common.write(CommonCfg.DEVICE_STATUS, 1, Status.ACKNOWLEDGE);
    common.write(CommonCfg.DEVICE_STATUS, 1, Status.ACKNOWLEDGE | Status.DRIVER);

    // Features, 32 bits at a time.
    common.write(CommonCfg.DEVICE_FEATURE_SELECT, 4, 0);
    const low = common.read(CommonCfg.DEVICE_FEATURE, 4);
    common.write(CommonCfg.DEVICE_FEATURE_SELECT, 4, 1);
    const high = common.read(CommonCfg.DEVICE_FEATURE, 4);
    const offered = (BigInt(high) << 32n) | BigInt(low);
    expect(offered & (1n << Feature.VERSION_1)).not.toBe(0n);
    expect(common.read(CommonCfg.DEVICE_FEATURE_SELECT, 4)).toBe(1);
    // Accept VERSION_1 and BLK_SIZE (bit 6); leave EVENT_IDX off, so avail.flags decides interrupts.
    const accepted = (1n << Feature.VERSION_1) | (1n << 6n);
    common.write(CommonCfg.DRIVER_FEATURE_SELECT, 4, 0);
    common.write(CommonCfg.DRIVER_FEATURE, 4, Number(accepted & 0xffff_ffffn));
    common.write(CommonCfg.DRIVER_FEATURE_SELECT, 4, 1);
    common.write(CommonCfg.DRIVER_FEATURE, 4, Number(accepted >> 32n));
    expect(common.read(CommonCfg.DRIVER_FEATURE, 4)).toBe(1);
    common.write(CommonCfg.DEVICE_STATUS, 1, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK);
    expect(common.read(CommonCfg.DEVICE_STATUS, 1) & Status.FEATURES_OK).toBe(Status.FEATURES_OK);

    // Device configuration: capacity as two 32-bit halves, blk_size.
    expect(mmio.read(d.device, 4) + mmio.read(d.device + 4, 4) * 2 ** 32).toBe(disk.size / SECTOR_SIZE);
    expect(mmio.read(d.device + 20, 4)).toBe(SECTOR_SIZE);
    expect(common.read(CommonCfg.CONFIG_GENERATION, 1)).toBe(0);

    // Queue 0, as vp_modern setup_vq does it.
    expect(common.read(CommonCfg.NUM_QUEUES, 2)).toBe(1);
    common.write(CommonCfg.QUEUE_SELECT, 2, 0);
    expect(common.read(CommonCfg.QUEUE_SIZE, 2)).toBe(256);
    expect(common.read(CommonCfg.QUEUE_ENABLE, 2)).toBe(0);
    const SIZE = 8;
    const DESC = 0x1000;
    const AVAIL = 0x2000;
    const USED = 0x3000;
    common.write(CommonCfg.QUEUE_SIZE, 2, SIZE);
    common.write(CommonCfg.QUEUE_DESC_LO, 4, DESC);
    common.write(CommonCfg.QUEUE_DESC_HI, 4, 0);
    common.write(CommonCfg.QUEUE_DRIVER_LO, 4, AVAIL);
    common.write(CommonCfg.QUEUE_DRIVER_HI, 4, 0);
    common.write(CommonCfg.QUEUE_DEVICE_LO, 4, USED);
    common.write(CommonCfg.QUEUE_DEVICE_HI, 4, 0);
    common.write(CommonCfg.QUEUE_MSIX_VECTOR, 2, 0);
    expect(common.read(CommonCfg.QUEUE_MSIX_VECTOR, 2)).toBe(VIRTIO_MSI_NO_VECTOR);
    expect(common.read(CommonCfg.MSIX_CONFIG, 2)).toBe(VIRTIO_MSI_NO_VECTOR);
    const notifyOff = common.read(CommonCfg.QUEUE_NOTIFY_OFF, 2);
    expect(notifyOff).toBe(0);
    expect([common.read(CommonCfg.QUEUE_SIZE, 2), common.read(CommonCfg.QUEUE_DESC_LO, 4), common.read(CommonCfg.QUEUE_DRIVER_LO, 4), common.read(CommonCfg.QUEUE_DEVICE_LO, 4)])
      .toEqual([SIZE, DESC, AVAIL, USED]);
    common.write(CommonCfg.QUEUE_ENABLE, 2, 1);
    expect(common.read(CommonCfg.QUEUE_ENABLE, 2)).toBe(1);
    common.write(CommonCfg.DEVICE_STATUS, 1, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK);
    expect(common.read(CommonCfg.DEVICE_STATUS, 1)).toBe(0x0f);

    // A read of sector 0: header, 512-byte data buffer, status byte.
    const HEADER = 0x10000;
    const DATA = 0x11000;
    const STATUS = 0x12000;
    memory.writeU32(HEADER, BlkRequest.IN);
    memory.writeU64(HEADER + 8, 0n);
    memory.writeU8(STATUS, 0xff);
    const descriptor = (index: number, address: number, length: number, flags: number, next: number) => {
      memory.writeU64(DESC + 16 * index, BigInt(address));
      memory.writeU32(DESC + 16 * index + 8, length);
      memory.writeU16(DESC + 16 * index + 12, flags);
      memory.writeU16(DESC + 16 * index + 14, next);
    };
    descriptor(0, HEADER, 16, DescriptorFlag.NEXT, 1);
    descriptor(1, DATA, SECTOR_SIZE, DescriptorFlag.NEXT | DescriptorFlag.WRITE, 2);
    descriptor(2, STATUS, 1, DescriptorFlag.WRITE, 0);
    memory.writeU16(AVAIL + 4, 0);
    memory.writeU16(AVAIL + 2, 1);

    expect(config.read(PciConfig.STATUS, 2) & PciStatus.INTERRUPT).toBe(0);
    mmio.write(d.notifyAddress(notifyOff), 2, 0); // vp_notify: iowrite16(queue index)

    expect(memory.readU16(USED + 2)).toBe(1);
    expect(memory.readU32(USED + 4)).toBe(0);
    expect(memory.readU32(USED + 8)).toBe(SECTOR_SIZE + 1);
    expect(memory.readU8(STATUS)).toBe(0);
    expect(memory.read(DATA, SECTOR_SIZE)).toEqual(disk.bytes.subarray(0, SECTOR_SIZE));
    expect(interrupts.count).toBe(1);

    // INTx: Status shows the interrupt; vp_interrupt reads ISR, which clears it.
    expect(config.read(PciConfig.STATUS, 2) & PciStatus.INTERRUPT).toBe(PciStatus.INTERRUPT);
    expect(mmio.read(d.isr, 1)).toBe(InterruptCause.USED_BUFFER);
    expect(mmio.read(d.isr, 1)).toBe(0);
    expect(state.interruptStatus).toBe(0);
    expect(config.read(PciConfig.STATUS, 2) & PciStatus.INTERRUPT).toBe(0);

    // A reset puts the queue back as it was: disabled, at its largest size.
    common.write(CommonCfg.DEVICE_STATUS, 1, 0);
    expect(common.read(CommonCfg.DEVICE_STATUS, 1)).toBe(0);
    expect(common.read(CommonCfg.QUEUE_ENABLE, 2)).toBe(0);
    expect(common.read(CommonCfg.QUEUE_SIZE, 2)).toBe(256);
    expect(setup.pci.badAccesses).toBe(0);
  });

  it('refuses FEATURES_OK without VERSION_1 (a legacy driver)', () => {
    const setup = blkSetup();
    const { common } = driverOf(setup);
    common.write(CommonCfg.DEVICE_STATUS, 1, Status.ACKNOWLEDGE | Status.DRIVER);
    common.write(CommonCfg.DRIVER_FEATURE_SELECT, 4, 0);
    common.write(CommonCfg.DRIVER_FEATURE, 4, 1 << 6);
    common.write(CommonCfg.DEVICE_STATUS, 1, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK);
    expect(common.read(CommonCfg.DEVICE_STATUS, 1) & Status.FEATURES_OK).toBe(0);
  });

  it('enables a queue the driver never sized at its largest size; 64-bit accesses reach both address halves', () => {
    const setup = blkSetup();
    const { common } = driverOf(setup);
    common.write(CommonCfg.QUEUE_SELECT, 2, 0);
    setup.mmio.write64(BAR + CommonCfg.QUEUE_DESC_LO, 0x1_2345_6000n);
    expect(setup.mmio.read64(BAR + CommonCfg.QUEUE_DESC_LO)).toBe(0x1_2345_6000n);
    common.write(CommonCfg.QUEUE_ENABLE, 2, 1);
    expect(common.read(CommonCfg.QUEUE_SIZE, 2)).toBe(256);
    // A live queue's setup does not change.
    common.write(CommonCfg.QUEUE_SIZE, 2, 16);
    expect(common.read(CommonCfg.QUEUE_SIZE, 2)).toBe(256);
    // A selector past the last queue names nothing.
    common.write(CommonCfg.QUEUE_SELECT, 2, 5);
    expect([common.read(CommonCfg.QUEUE_SIZE, 2), common.read(CommonCfg.QUEUE_ENABLE, 2), common.read(CommonCfg.QUEUE_NOTIFY_OFF, 2)]).toEqual([0, 0, 0]);
  });
});

describe('virtio-pci: the PCI_CFG access window (4.1.4.9)', () => {
  function windowSetup() {
    const setup = blkSetup();
    const cap = walkCapabilities(setup.config).find((c) => c.cfgType === VirtioPciCap.PCI_CFG)!;
    const { config } = setup;
    const aim = (bar: number, offset: number, length: number) => {
      config.write(cap.position + CapField.BAR, 1, bar);
      config.write(cap.position + CapField.OFFSET, 4, offset);
      config.write(cap.position + CapField.LENGTH, 4, length);
    };
    const data = cap.position + CapField.PCI_CFG_DATA;
    return { ...setup, aim, data };
  }

  it('reads and writes the BAR through configuration space, even with Memory Space off', () => {
    const { config, aim, data, state, transport } = windowSetup();
    config.write(PciConfig.COMMAND, 2, 0);
    aim(0, VirtioPciRegion.COMMON + CommonCfg.NUM_QUEUES, 2);
    expect(config.read(data, 4) & 0xffff).toBe(1);
    aim(0, VirtioPciRegion.COMMON + CommonCfg.DEVICE_STATUS, 1);
    config.write(data, 4, Status.ACKNOWLEDGE);
    expect(transport.readStatus()).toBe(Status.ACKNOWLEDGE);
    expect(config.read(data, 1)).toBe(Status.ACKNOWLEDGE);
    aim(0, VirtioPciRegion.DEVICE, 4);
    expect(config.read(data, 4)).toBe(16); // capacity in sectors, low half
    state.raiseInterruptStatus(InterruptCause.USED_BUFFER);
    aim(0, VirtioPciRegion.ISR, 1);
    expect(config.read(data, 1)).toBe(InterruptCause.USED_BUFFER);
    expect(state.interruptStatus).toBe(0);
    // cap.bar, cap.offset and cap.length read back what the driver wrote.
    expect(walkCapabilities(config).find((c) => c.cfgType === VirtioPciCap.PCI_CFG)).toMatchObject({ bar: 0, offset: VirtioPciRegion.ISR, length: 1 });
  });

  it('a window that names another BAR, a bad length, an unaligned or out-of-range offset is counted and does nothing', () => {
    const { config, aim, data, pci, transport } = windowSetup();
    const cases: [number, number, number][] = [
      [1, VirtioPciRegion.COMMON + CommonCfg.DEVICE_STATUS, 1],
      [0, VirtioPciRegion.COMMON + CommonCfg.DEVICE_STATUS, 3],
      [0, VirtioPciRegion.COMMON + CommonCfg.NUM_QUEUES + 1, 2],
      [0, VIRTIO_PCI_BAR_SIZE, 4],
      [0, 0xffff_fffc, 4],
    ];
    for (const [bar, offset, length] of cases) {
      aim(bar, offset, length);
      expect(() => config.write(data, 4, 0xff)).not.toThrow();
      expect(() => config.read(data, 4)).not.toThrow();
    }
    expect(pci.badAccesses).toBe(2 * cases.length);
    expect(transport.readStatus()).toBe(0);
  });
});

describe('virtio-pci: hostile accesses are counted, never thrown', () => {
  function hostileSetup() {
    const info: VirtioDeviceInfo = { type: DeviceType.BLOCK, name: 'blk9', features: 0n, queueMaxSizes: [128], config: new Uint8Array(24) };
    const state = VirtioSharedState.create(1);
    const notified: number[] = [];
    const transport = new VirtioTransport(info, state, {
      notify: (queue) => notified.push(queue),
      statusChanged: () => state.finishReset(state.resetEpoch),
    });
    const mmio = AddressSpace.memory();
    const pci = new VirtioPci(transport, { irq: 10, mmio, barAddress: BAR });
    return { state, transport, mmio, pci, notified };
  }

  it('common configuration: wrong widths, unaligned fields, read-only fields, past the end', () => {
    const { mmio, pci, state, transport } = hostileSetup();
    const accesses: (() => unknown)[] = [
      () => mmio.read(BAR + CommonCfg.DEVICE_STATUS, 4),
      () => mmio.read(BAR + CommonCfg.DEVICE_FEATURE + 1, 1),
      () => mmio.read(BAR + CommonCfg.NUM_QUEUES, 4),
      () => mmio.write(BAR + CommonCfg.DEVICE_FEATURE_SELECT, 2, 1),
      () => mmio.write(BAR + CommonCfg.DEVICE_STATUS, 2, Status.ACKNOWLEDGE),
      () => mmio.write(BAR + CommonCfg.NUM_QUEUES, 2, 7),
      () => mmio.write(BAR + CommonCfg.DEVICE_FEATURE, 4, 0xffff_ffff),
      () => mmio.write(BAR + CommonCfg.CONFIG_GENERATION, 1, 9),
      () => mmio.write(BAR + CommonCfg.QUEUE_NOTIFY_OFF, 2, 3),
      () => mmio.write(BAR + CommonCfg.QUEUE_ENABLE, 2, 0),
      () => mmio.read(BAR + 0x38, 2),
      () => mmio.write(BAR + 0x800, 4, 1),
      () => mmio.read(BAR + 0xffe, 4), // straddles COMMON and ISR
    ];
    for (const access of accesses) expect(access).not.toThrow();
    expect(pci.badAccesses).toBe(accesses.length);
    expect(state.deviceFeatureSelect).toBe(0);
    expect(transport.readStatus()).toBe(0);
    expect(transport.queueCount).toBe(1);
  });

  it('ISR: only a byte read at its start, which alone clears it', () => {
    const { mmio, pci, state } = hostileSetup();
    state.raiseInterruptStatus(InterruptCause.USED_BUFFER);
    expect(mmio.read(BAR + VirtioPciRegion.ISR, 4)).toBe(0);
    expect(mmio.read(BAR + VirtioPciRegion.ISR + 1, 1)).toBe(0);
    mmio.write(BAR + VirtioPciRegion.ISR, 1, 0);
    expect(pci.badAccesses).toBe(3);
    expect(state.interruptStatus).toBe(InterruptCause.USED_BUFFER);
    expect(mmio.read(BAR + VirtioPciRegion.ISR, 1)).toBe(InterruptCause.USED_BUFFER);
  });

  it('notify: a 16-bit write at a queue address notifies that queue; anything else is counted', () => {
    const { mmio, pci, notified } = hostileSetup();
    const notify = BAR + VirtioPciRegion.NOTIFY;
    mmio.write(notify, 2, 0);
    expect(notified).toEqual([0]);
    mmio.write(notify, 4, 0); // wrong width
    mmio.write(notify + 2, 2, 0); // between queues
    mmio.write(notify + NOTIFY_OFF_MULTIPLIER, 2, 1); // queue 1 does not exist
    mmio.write(notify + 0xffe, 2, 0);
    expect(mmio.read(notify, 2)).toBe(0); // write-only
    expect(notified).toEqual([0]);
    expect(pci.badAccesses).toBe(5);
  });

  it('device configuration: any width inside it; past its end is counted; writes are dropped', () => {
    const { mmio, pci } = hostileSetup();
    const device = BAR + VirtioPciRegion.DEVICE;
    expect(mmio.read(device + 3, 1)).toBe(0);
    expect(mmio.read(device + 20, 4)).toBe(0);
    mmio.write(device, 4, 0xffff_ffff);
    expect(pci.badAccesses).toBe(0);
    expect(mmio.read(device + 22, 4)).toBe(0);
    mmio.write(device + 0x100, 1, 0);
    expect(pci.badAccesses).toBe(2);
  });

  it('configuration space: read-only registers keep their values; an all-ones BAR with decoding on is just an address', () => {
    const { pci, mmio } = hostileSetup();
    pci.writeConfig(PciConfig.VENDOR_ID, 4, 0);
    pci.writeConfig(PciConfig.STATUS, 2, 0xffff);
    pci.writeConfig(0x40, 4, 0);
    expect(pci.readConfig(PciConfig.VENDOR_ID, 4)).toBe(0x1042_1af4);
    expect(pci.readConfig(PciConfig.STATUS, 2)).toBe(PciStatus.CAPABILITIES);
    expect(pci.readConfig(0x40, 1)).toBe(PCI_CAP_ID_VNDR);
    // All ones with decoding on: a BAR at 0xffffc000, which is allowed (nothing is there) and decodes.
    expect(() => pci.writeConfig(PciConfig.BAR0, 4, 0xffff_ffff)).not.toThrow();
    expect(pci.bar.mapped).toBe(0xffff_c000);
    expect(mmio.read(0xffff_c000 + CommonCfg.NUM_QUEUES, 2)).toBe(1);
    expect(pci.readConfig(0xff, 1)).toBe(0);
    // Reading all of configuration space (lspci -xxx) touches the unaimed PCI_CFG window: no access, nothing counted.
    for (let offset = 0; offset < 256; offset += 4) pci.readConfig(offset, 4);
    expect(pci.badAccesses).toBe(0);
  });
});
