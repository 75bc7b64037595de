// The PCI host bridge: PCI configuration mechanism #1 (PCI Local Bus 3.0,
// 3.2.2.3.2) on ports 0xCF8 (CONFIG_ADDRESS) and 0xCFC-0xCFF (CONFIG_DATA),
// one bus, and the bridge's own function at 00:00.0. Linux finds PCI this way
// when there is no ACPI: it checks that CONFIG_ADDRESS reads back what it
// wrote, then looks on bus 0 for a host bridge or an Intel device
// (pci_sanity_check), which the bridge's class and vendor satisfy.
// Its state (the CONFIG_ADDRESS latch, the bridge function's configuration
// space, the ignored-access count) is data in PCI_HOST_BRIDGE_STATE, so every
// vCPU thread's bridge object over one buffer is the same chipset: a driver
// may latch CONFIG_ADDRESS on one CPU and read CONFIG_DATA on another.
// The functions in the slots are wiring; each keeps its own state.
import type { AddressSpace, BusDevice } from '../../bus/index.ts';
import { DeviceStateLayout, type SavedDeviceState, type StatefulDevice } from '../device-state.ts';
import { PCI_CONFIG_SIZE, PciConfigSpace } from './config-space.ts';
import type { PciFunction } from './function.ts';

export const CONFIG_ADDRESS_PORT = 0xcf8;
export const CONFIG_DATA_PORT = 0xcfc;

/** CONFIG_ADDRESS fields. */
const ENABLE = 0x8000_0000;
const BUS_SHIFT = 16;
const DEVICE_SHIFT = 11;
const FUNCTION_SHIFT = 8;
/**
 * Bits 30:24 are reserved and read as 0. Bits 1:0 are kept and select bytes
 * of the register as QEMU's host bridges do (the register is CONFIG_ADDRESS
 * bits 7:0 ORed with the CONFIG_DATA port's offset): kvm-unit-tests reads
 * the device ID with register 2 in CONFIG_ADDRESS and a word from 0xCFC.
 */
const ADDRESS_MASK = 0x80ff_ffff;

export const SLOT_COUNT = 32;

/** The bridge's identity: Intel's Q35 DRAM controller, as QEMU's q35 machine shows it. */
export const HOST_BRIDGE_VENDOR = 0x8086;
export const HOST_BRIDGE_DEVICE = 0x29c0;
export const HOST_BRIDGE_CLASS = 0x060000;

const ALL_ONES = [0, 0xff, 0xffff, 0, 0xffff_ffff] as const;

export const PCI_HOST_BRIDGE_STATE = new DeviceStateLayout('pci-host-bridge', 1, {
  /** CONFIG_ADDRESS (0xCF8) as last written, reserved bits cleared. */
  configAddress: ['u32', 1],
  /** Byte and word accesses to CONFIG_ADDRESS the chipset ignored, for reports. */
  ignoredAccesses: ['u32', 1],
  /** The bridge's own function, 00:00.0. */
  bridgeConfig: ['u8', PCI_CONFIG_SIZE],
});

class HostBridgeFunction implements PciFunction {
  readonly name = 'PCI host bridge';
  readonly config: PciConfigSpace;

  constructor(bytes?: Uint8Array) {
    this.config = new PciConfigSpace({ vendorId: HOST_BRIDGE_VENDOR, deviceId: HOST_BRIDGE_DEVICE, classCode: HOST_BRIDGE_CLASS }, bytes);
  }

  readConfig(offset: number, size: number): number {
    return this.config.read(offset, size);
  }

  writeConfig(offset: number, size: number, value: number): void {
    this.config.write(offset, size, value);
  }
}

export class PciHostBridge implements StatefulDevice {
  /** Functions by slot (function number 0 of each; no multi-function devices). */
  private readonly slots: (PciFunction | null)[] = new Array<PciFunction | null>(SLOT_COUNT).fill(null);
  readonly state: SharedArrayBuffer;
  /** [0]: CONFIG_ADDRESS. */
  private readonly address: Uint32Array;
  private readonly ignored: Uint32Array;

  /** A powered-on state for one bridge, to share between the threads that serve it. */
  static createState(): SharedArrayBuffer {
    const state = PCI_HOST_BRIDGE_STATE.create();
    // A function built without bytes of its own powers them on: copy that image.
    PCI_HOST_BRIDGE_STATE.views(state).bridgeConfig.set(new HostBridgeFunction().config.bytes);
    return state;
  }

  /** `state`: a buffer from createState() (or another thread's bridge), used as it is. */
  constructor(state?: SharedArrayBuffer) {
    this.state = state ?? PciHostBridge.createState();
    const views = PCI_HOST_BRIDGE_STATE.views(this.state);
    this.address = views.configAddress;
    this.ignored = views.ignoredAccesses;
    // The state is powered on already: the bridge function only reads and writes it.
    this.slots[0] = new HostBridgeFunction(views.bridgeConfig);
  }

  /**
   * Accesses the chipset ignores: byte and word accesses to CONFIG_ADDRESS
   * (Linux's conf1 probe makes one, a byte write to 0xCFB).
   */
  get ignoredAccesses(): number {
    return this.ignored[0]!;
  }

  saveState(): SavedDeviceState {
    return PCI_HOST_BRIDGE_STATE.save(this.state);
  }

  /** The bridge's own state only: each function in a slot saves and restores its own. */
  restoreState(saved: SavedDeviceState): void {
    PCI_HOST_BRIDGE_STATE.restore(saved, this.state);
  }

  /** Puts `fn` in `slot` as function 0 (default: the lowest free slot). */
  addFunction(fn: PciFunction, slot = this.slots.indexOf(null)): { slot: number } {
    if (slot < 0) throw new Error(`PCI: no free slot for ${fn.name} (bus 0 has ${SLOT_COUNT})`);
    if (slot >= SLOT_COUNT || this.slots[slot] !== null) throw new Error(`PCI: slot ${slot} is not free for ${fn.name}`);
    this.slots[slot] = fn;
    return { slot };
  }

  /** Registers CONFIG_ADDRESS (0xCF8-0xCFB) and CONFIG_DATA (0xCFC-0xCFF) on the port bus. */
  attach(pio: AddressSpace): void {
    pio.register(CONFIG_ADDRESS_PORT, 4, this.addressPort);
    pio.register(CONFIG_DATA_PORT, 4, this.dataPort);
  }

  /** Only a dword access at 0xCF8 is CONFIG_ADDRESS; narrower ones go nowhere. */
  readonly addressPort: BusDevice = {
    name: 'PCI CONFIG_ADDRESS',
    read: (offset, size) => {
      if (offset === 0 && size === 4) return this.address[0]!;
      this.ignored[0] = this.ignored[0]! + 1;
      return ALL_ONES[size] ?? 0xffff_ffff;
    },
    write: (offset, size, value) => {
      if (offset === 0 && size === 4) this.address[0] = value & ADDRESS_MASK;
      else this.ignored[0] = this.ignored[0]! + 1;
    },
  };

  /** CONFIG_DATA: port 0xCFC + n reaches byte n of the dword CONFIG_ADDRESS selects. */
  readonly dataPort: BusDevice = {
    name: 'PCI CONFIG_DATA',
    read: (offset, size) => {
      const fn = this.selected();
      if (!fn) return ALL_ONES[size] ?? 0xffff_ffff;
      return fn.readConfig(this.register(offset), size);
    },
    write: (offset, size, value) => {
      this.selected()?.writeConfig(this.register(offset), size, value);
    },
  };

  /** The configuration register an access at CONFIG_DATA + `offset` reaches. */
  private register(offset: number): number {
    return (this.address[0]! & 0xff) | offset;
  }

  /** The function CONFIG_ADDRESS names, or null: disabled, another bus, an empty slot or function 1-7 (absent: reads all ones). */
  private selected(): PciFunction | null {
    const a = this.address[0]!;
    if (!(a & ENABLE)) return null;
    if ((a >>> BUS_SHIFT) & 0xff) return null;
    if ((a >>> FUNCTION_SHIFT) & 0x7) return null;
    return this.slots[(a >>> DEVICE_SHIFT) & 0x1f] ?? null;
  }
}
