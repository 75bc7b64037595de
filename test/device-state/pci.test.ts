// PCI state as data: the host bridge (the CONFIG_ADDRESS latch and its own
// function 00:00.0) and a function's configuration space (Command, the BARs
// as programmed, Interrupt Line, the writable capability fields). Saved,
// restored into fresh objects, and shared by two objects over one buffer as
// two vCPU threads would serve it.
import { describe, expect, it } from 'vitest';
import { AddressSpace } from '../../src/bus/index.ts';
import { InputError } from '../../src/errors.ts';
import { PciCommand, PciConfig, PciHostBridge, PCI_CONFIG_SIZE, type PciFunction } from '../../src/devices/pci/index.ts';
import { CapField, CommonCfg, VIRTIO_PCI_STATE, VirtioPci, VirtioPciRegion, type VirtioPciOptions } from '../../src/devices/virtio/pci.ts';
import { VirtioSharedState } from '../../src/devices/virtio/shared-state.ts';
import { VirtioTransport } from '../../src/devices/virtio/transport.ts';
import type { VirtioDeviceInfo } from '../../src/devices/virtio/device.ts';
import { DeviceType } from '../../src/devices/virtio/spec.ts';

const ENABLE = 0x8000_0000;
const configAddress = (slot: number, register: number) => (ENABLE | (slot << 11) | (register & 0xfc)) >>> 0;

const BLK: VirtioDeviceInfo = { type: DeviceType.BLOCK, name: 'blk0', features: 0n, queueMaxSizes: [256], config: new Uint8Array(24) };
const NET: VirtioDeviceInfo = { type: DeviceType.NET, name: 'net0', features: 0n, queueMaxSizes: [256, 256], config: new Uint8Array(8) };
const FIRMWARE_BAR = 0xe000_0000;
const GUEST_BAR = 0xe100_0000;

/** A virtio-pci function on a bus of its own, over `state` (absent: a fresh one, with the BAR where firmware puts it). */
function virtioFunction(info: VirtioDeviceInfo, state?: SharedArrayBuffer, options: Partial<VirtioPciOptions> = {}) {
  const mmio = AddressSpace.memory();
  const transport = new VirtioTransport(info, VirtioSharedState.create(info.queueMaxSizes.length), { notify() {}, statusChanged() {} });
  const pci = new VirtioPci(transport, { irq: 10, mmio, barAddress: FIRMWARE_BAR, state, ...options });
  return { pci, mmio };
}

/** All 256 bytes of a function's configuration space as the guest reads them, dword by dword. */
function configDwords(fn: PciFunction): number[] {
  const out: number[] = [];
  for (let offset = 0; offset < PCI_CONFIG_SIZE; offset += 4) out.push(fn.readConfig(offset, 4));
  return out;
}

/** What a guest does to a function after firmware: moves the BAR, enables bus mastering, sets Interrupt Line, aims the PCI_CFG window. */
function programByGuest(pci: VirtioPci): void {
  pci.writeConfig(PciConfig.COMMAND, 2, 0);
  pci.writeConfig(PciConfig.BAR0, 4, GUEST_BAR);
  pci.writeConfig(PciConfig.COMMAND, 2, PciCommand.MEMORY | PciCommand.BUS_MASTER);
  pci.writeConfig(PciConfig.INTERRUPT_LINE, 1, 5);
  const window = pciCfgCapability(pci);
  pci.writeConfig(window + CapField.BAR, 1, 0);
  pci.writeConfig(window + CapField.OFFSET, 4, VirtioPciRegion.COMMON + CommonCfg.NUM_QUEUES);
  pci.writeConfig(window + CapField.LENGTH, 4, 2);
}

/** The PCI_CFG capability: the last of the capability list. */
function pciCfgCapability(pci: VirtioPci): number {
  let at = pci.readConfig(PciConfig.CAPABILITIES, 1);
  for (let next = pci.readConfig(at + 1, 1); next !== 0; next = pci.readConfig(at + 1, 1)) at = next;
  return at;
}

describe('PCI host bridge state', () => {
  function bridgeWithFunction(state?: SharedArrayBuffer) {
    const pio = AddressSpace.ports();
    const bridge = new PciHostBridge(state);
    bridge.attach(pio);
    const { pci } = virtioFunction(BLK);
    bridge.addFunction(pci);
    return { pio, bridge };
  }

  it('restores the CONFIG_ADDRESS latch, the bridge function and the ignored-access count: the next CONFIG_DATA read reaches the same register', () => {
    const { pio, bridge } = bridgeWithFunction();
    pio.write(0xcf8, 4, configAddress(0, PciConfig.CACHE_LINE_SIZE));
    pio.write(0xcfc, 1, 0x10); // the bridge's Cache Line Size, writable
    pio.write(0xcfb, 1, 0x01); // Linux's conf1 probe: ignored
    pio.write(0xcf8, 4, configAddress(1, PciConfig.VENDOR_ID) | 0x7f00_0000); // reserved bits read as 0
    const latched = pio.read(0xcf8, 4);
    expect(latched).toBe(configAddress(1, PciConfig.VENDOR_ID));

    const fresh = bridgeWithFunction();
    fresh.bridge.restoreState(bridge.saveState());
    expect(fresh.pio.read(0xcf8, 4)).toBe(latched);
    expect(fresh.bridge.ignoredAccesses).toBe(1);
    // No new CONFIG_ADDRESS write: the data port answers for 01:00.0 as the latch says.
    expect(fresh.pio.read(0xcfc, 4)).toBe(pio.read(0xcfc, 4));
    expect(fresh.pio.read(0xcfe, 2)).toBe(0x1042);
    for (const p of [pio, fresh.pio]) p.write(0xcf8, 4, configAddress(0, PciConfig.CACHE_LINE_SIZE));
    expect(fresh.pio.read(0xcfc, 1)).toBe(0x10);
  });

  it('two bridges over one state are one chipset: CONFIG_ADDRESS latched on one CPU, CONFIG_DATA read on the other', () => {
    const state = PciHostBridge.createState();
    const cpu0 = bridgeWithFunction(state);
    const cpu1 = bridgeWithFunction(state);
    cpu0.pio.write(0xcf8, 4, configAddress(1, PciConfig.VENDOR_ID));
    expect(cpu1.pio.read(0xcfc, 4)).toBe(0x1042_1af4);
    cpu1.pio.write(0xcf8, 2, 0); // ignored, counted once for the chipset
    expect(cpu0.bridge.ignoredAccesses).toBe(1);
    // Building the second bridge did not power the state on again.
    cpu0.pio.write(0xcf8, 4, configAddress(0, PciConfig.CACHE_LINE_SIZE));
    cpu0.pio.write(0xcfc, 1, 0x20);
    const late = bridgeWithFunction(state);
    expect(late.pio.read(0xcf8, 4)).toBe(configAddress(0, PciConfig.CACHE_LINE_SIZE));
    expect(late.pio.read(0xcfc, 1)).toBe(0x20);
  });

  it('refuses the state of another device, another version, or of the wrong size', () => {
    const { bridge } = bridgeWithFunction();
    const { pci } = virtioFunction(BLK);
    const saved = bridge.saveState();
    expect(() => pci.restoreState(saved)).toThrow(InputError);
    expect(() => pci.restoreState(saved)).toThrow('pci-host-bridge state cannot be restored into virtio-pci (another device)');
    expect(() => bridge.restoreState({ ...saved, version: 2 })).toThrow(/pci-host-bridge state version 2 cannot be restored/);
    expect(() => bridge.restoreState({ ...saved, bytes: new Uint8Array(8) })).toThrow(/8 bytes, expected .* \(damaged state\)/);
  });
});

describe('a virtio-pci function\'s configuration space state', () => {
  it('restores Command, the BAR as the guest moved it, Interrupt Line and the PCI_CFG window, and decodes the BAR there again', () => {
    const { pci } = virtioFunction(BLK);
    programByGuest(pci);
    expect(pci.bar.mapped).toBe(GUEST_BAR);
    const before = configDwords(pci);

    const moved: (number | null)[] = [];
    const fresh = virtioFunction(BLK, undefined, { onNotifyMoved: (queue, address) => moved.push(address) });
    expect(fresh.pci.bar.mapped).toBe(FIRMWARE_BAR);
    moved.length = 0;
    fresh.pci.restoreState(pci.saveState());
    expect(configDwords(fresh.pci)).toEqual(before);
    expect(fresh.pci.bar.mapped).toBe(GUEST_BAR);
    // The machine hears where the notify address went, to move its ioeventfds.
    expect(moved).toEqual([GUEST_BAR + VirtioPciRegion.NOTIFY]);
    // The bus reaches the restored function at the guest's address, not at firmware's.
    expect(fresh.mmio.read(GUEST_BAR + CommonCfg.NUM_QUEUES, 2)).toBe(1);
    expect(fresh.mmio.find(FIRMWARE_BAR, 1)).toBeUndefined();
    // The window reads the register the guest aimed it at.
    expect(fresh.pci.readConfig(pciCfgCapability(fresh.pci) + CapField.PCI_CFG_DATA, 2)).toBe(1);
  });

  it('two functions over one state are one function: what one CPU programs, the other reads and decodes', () => {
    const state = VirtioPci.createState(BLK, { irq: 10, barAddress: FIRMWARE_BAR });
    const cpu0 = virtioFunction(BLK, state);
    const cpu1 = virtioFunction(BLK, state);
    expect(cpu1.pci.bar.mapped).toBe(FIRMWARE_BAR);
    programByGuest(cpu0.pci);
    expect(configDwords(cpu1.pci)).toEqual(configDwords(cpu0.pci));
    // cpu1's bus follows once it syncs (the machine does, after any vCPU's configuration write).
    cpu1.pci.bar.sync();
    expect(cpu1.pci.bar.mapped).toBe(GUEST_BAR);
    // A third object built later does not reset what the guest programmed.
    expect(virtioFunction(BLK, state).pci.readConfig(PciConfig.INTERRUPT_LINE, 1)).toBe(5);
  });

  it('refuses another function\'s configuration space (a virtio-blk\'s into a virtio-net), and a damaged one', () => {
    const blk = virtioFunction(BLK).pci;
    const net = virtioFunction(NET).pci;
    const before = configDwords(net);
    expect(() => net.restoreState(blk.saveState())).toThrow(InputError);
    expect(() => net.restoreState(blk.saveState())).toThrow('PCI state of function 1af4:1042 cannot be restored into function 1af4:1041');
    expect(configDwords(net)).toEqual(before);
    expect(() => net.restoreState({ kind: VIRTIO_PCI_STATE.kind, version: 1, bytes: new Uint8Array(100) })).toThrow(/damaged state/);
    expect(() => net.restoreState({ ...net.saveState(), version: 7 })).toThrow(/virtio-pci state version 7/);
  });
});
