// QEMU's educational PCI device "edu" (1234:11e8, QEMU's hw/misc/edu.c and
// docs/specs/edu.rst), which kvm-unit-tests drives to test an IOMMU. BAR 0 is
// 1 MiB of registers:
//   0x00 RO  identification 0x010000ed (version 1.0, 0xed)
//   0x04 RW  liveness check: reads back the bitwise inverse of what was written
//   0x08 RW  factorial: a write starts n!, the read gives the result
//   0x20 RW  status: bit 0 computing (RO), bit 7 raise interrupt 0x1 when a factorial is done
//   0x24 RO  interrupt status
//   0x60 WO  interrupt raise: status |= value, and the interrupt is sent
//   0x64 WO  interrupt acknowledge: status &= ~value; INTx drops when it is 0
//   0x80 RW  DMA source, 0x88 DMA destination, 0x90 DMA count (64 bits each)
//   0x98 RW  DMA command: bit 0 start, bit 1 direction (0: RAM to the
//            buffer, 1: the buffer to RAM), bit 2 raise interrupt 0x100 when done
// The DMA buffer is 4 KiB that the device sees at 0x40000. Registers below
// 0x80 take 4-byte accesses only, the DMA registers 4 or 8 bytes; anything
// else reads all ones and writes nothing, as in QEMU.
// Unlike QEMU, which computes on a thread and moves data 100 ms after the
// command, tsvmm finishes both within the write: a driver that polls the
// status sees them done on its first look.
// The interrupt is INTx pin A, or the MSI capability's message while MSI is
// enabled. DMA goes through whatever DmaSpace the machine gives (guest RAM,
// or an IOMMU's translation); a transfer outside the buffer or one the
// DmaSpace aborts changes nothing.
//
// State: configuration space, registers and buffer are EDU_STATE; the BAR's
// place on this thread's bus is re-derived from it (bar.sync()).
import type { AddressSpace, BusDevice } from '../../bus/index.ts';
import { DeviceStateLayout, type SavedDeviceState, type StatefulDevice } from '../device-state.ts';
import type { InterruptLine } from '../interrupt-line.ts';
import { PCI_CONFIG_SIZE, PciCommand, PciConfigSpace, PciStatus } from './config-space.ts';
import type { DmaSpace } from './dma.ts';
import type { PciFunction } from './function.ts';
import { MemoryBar, type ForbiddenRange } from './memory-bar.ts';
import { MsiCapability } from './msi-capability.ts';

export const EDU_VENDOR_ID = 0x1234;
export const EDU_DEVICE_ID = 0x11e8;
/** Base class 0x00 (unclassified), sub-class 0xff: QEMU's PCI_CLASS_OTHERS in a 16-bit class_id. */
const EDU_CLASS_CODE = 0x00ff00;
const EDU_REVISION = 0x10;

export const EDU_BAR = 0;
export const EDU_BAR_SIZE = 0x10_0000;

export const EduRegister = {
  IDENTIFICATION: 0x00,
  LIVENESS: 0x04,
  FACTORIAL: 0x08,
  STATUS: 0x20,
  INTERRUPT_STATUS: 0x24,
  INTERRUPT_RAISE: 0x60,
  INTERRUPT_ACK: 0x64,
  DMA_SOURCE: 0x80,
  DMA_DESTINATION: 0x88,
  DMA_COUNT: 0x90,
  DMA_COMMAND: 0x98,
} as const;

export const EDU_IDENTIFICATION = 0x010000ed;
/** Status bits. */
export const EDU_STATUS_COMPUTING = 0x01;
export const EDU_STATUS_FACTORIAL_IRQ = 0x80;
/** Interrupt status bits the device itself raises. */
export const EDU_FACTORIAL_IRQ = 0x001;
export const EDU_DMA_IRQ = 0x100;
/** DMA command bits. */
export const EduDma = { START: 0x1, TO_RAM: 0x2, IRQ: 0x4 } as const;
/** Where the device sees its buffer, and its size. */
export const EDU_DMA_BUFFER_ADDRESS = 0x4_0000;
export const EDU_DMA_BUFFER_SIZE = 0x1000;
/** QEMU's dma_mask default: bus addresses are cut to 28 bits. */
const EDU_DMA_MASK = 2 ** 28 - 1;

export const EDU_STATE = new DeviceStateLayout('edu', 1, {
  config: ['u8', PCI_CONFIG_SIZE],
  /** Liveness, factorial, status, interrupt status. */
  registers: ['u32', 4],
  /** Source, destination, count, command: low and high dwords each. */
  dma: ['u32', 8],
  buffer: ['u8', EDU_DMA_BUFFER_SIZE],
  /** Transfers refused (outside the buffer, or aborted by the DMA space), for reports. */
  refusedDmas: ['u32', 1],
});

const Reg = { LIVENESS: 0, FACTORIAL: 1, STATUS: 2, INTERRUPT_STATUS: 3 } as const;
const Dma = { SOURCE: 0, DESTINATION: 2, COUNT: 4, COMMAND: 6 } as const;
const ALL_ONES = 0xffff_ffff;

export interface EduWiring {
  /** The bus BAR 0 is registered on while Memory Space is enabled. */
  mmio: AddressSpace;
  /** Guest RAM and the other ranges the BAR must never cover. */
  forbidden?: readonly ForbiddenRange[];
  /** INTA#, the pin's interrupt line. */
  intx: InterruptLine;
  /** Sends an MSI (the capability's message) as this function's memory write. */
  sendMsi(message: { address: number; data: number }): void;
  /** How the function's DMA reaches memory. */
  dma: DmaSpace;
  /** The function's state (EDU_STATE, from createState or another thread's function), used as it is. */
  state: SharedArrayBuffer;
}

export class Edu implements PciFunction, BusDevice, StatefulDevice {
  readonly name = 'edu';
  readonly state: SharedArrayBuffer;
  readonly config: PciConfigSpace;
  readonly bar: MemoryBar;
  private readonly msi: MsiCapability;
  private readonly registers: Uint32Array;
  private readonly dmaRegisters: Uint32Array;
  private readonly buffer: Uint8Array;
  private readonly refused: Uint32Array;

  /**
   * A powered-on function, as firmware leaves it: Interrupt Line says `irq`,
   * and with `barAddress` BAR 0 is there with Memory Space enabled.
   */
  static createState(firmware: { irq: number; barAddress?: number }): SharedArrayBuffer {
    const state = EDU_STATE.create();
    const config = Edu.configSpace(EDU_STATE.views(state).config, true, firmware.irq);
    new MsiCapability(config);
    config.defineMemoryBar(EDU_BAR, EDU_BAR_SIZE);
    if (firmware.barAddress !== undefined) {
      config.setBarAddress(EDU_BAR, firmware.barAddress);
      config.command = PciCommand.MEMORY;
    }
    return state;
  }

  private static configSpace(bytes: Uint8Array, powerOn: boolean, irq = 0xff): PciConfigSpace {
    return new PciConfigSpace({
      vendorId: EDU_VENDOR_ID,
      deviceId: EDU_DEVICE_ID,
      revision: EDU_REVISION,
      classCode: EDU_CLASS_CODE,
      // QEMU's devices carry Red Hat's subsystem IDs.
      subsystemVendorId: 0x1af4,
      subsystemId: 0x1100,
      interruptPin: 1,
      interruptLine: irq,
    }, bytes, powerOn);
  }

  constructor(private readonly wiring: EduWiring) {
    this.state = wiring.state;
    const views = EDU_STATE.views(this.state);
    this.config = Edu.configSpace(views.config, false);
    this.msi = new MsiCapability(this.config);
    this.config.defineMemoryBar(EDU_BAR, EDU_BAR_SIZE);
    this.registers = views.registers;
    this.dmaRegisters = views.dma;
    this.buffer = views.buffer;
    this.refused = views.refusedDmas;
    this.bar = new MemoryBar(this.config, EDU_BAR, this, { mmio: wiring.mmio, ...(wiring.forbidden ? { forbidden: wiring.forbidden } : {}) });
    this.bar.sync();
  }

  /** DMA transfers refused so far. */
  get refusedDmas(): number {
    return this.refused[0]!;
  }

  saveState(): SavedDeviceState {
    return EDU_STATE.save(this.state);
  }

  restoreState(saved: SavedDeviceState): void {
    EDU_STATE.check(saved);
    this.config.checkIdentity(saved.bytes.subarray(0, PCI_CONFIG_SIZE));
    EDU_STATE.restore(saved, this.state);
    this.bar.sync();
    this.updateIntx();
  }

  // --- configuration space -------------------------------------------------

  readConfig(offset: number, size: number): number {
    return this.config.read(offset, size);
  }

  writeConfig(offset: number, size: number, value: number): void {
    this.config.write(offset, size, value);
    this.bar.sync();
    // MSI Enable and Interrupt Disable decide whether INTx is driven.
    this.updateIntx();
  }

  // --- BAR 0 -----------------------------------------------------------------

  read(offset: number, size: number): number {
    if (!this.sizeAllowed(offset, size)) return ALL_ONES >>> (32 - 8 * size);
    switch (offset) {
      case EduRegister.IDENTIFICATION: return EDU_IDENTIFICATION;
      case EduRegister.LIVENESS: return this.registers[Reg.LIVENESS]!;
      case EduRegister.FACTORIAL: return this.registers[Reg.FACTORIAL]!;
      case EduRegister.STATUS: return this.registers[Reg.STATUS]!;
      case EduRegister.INTERRUPT_STATUS: return this.registers[Reg.INTERRUPT_STATUS]!;
      case EduRegister.DMA_SOURCE: return this.dmaRegisters[Dma.SOURCE]!;
      case EduRegister.DMA_DESTINATION: return this.dmaRegisters[Dma.DESTINATION]!;
      case EduRegister.DMA_COUNT: return this.dmaRegisters[Dma.COUNT]!;
      case EduRegister.DMA_COMMAND: return this.dmaRegisters[Dma.COMMAND]!;
      default: return ALL_ONES;
    }
  }

  read64(offset: number): bigint {
    const index = this.dmaIndex(offset);
    if (index === null) return 0xffff_ffff_ffff_ffffn;
    return BigInt(this.dmaRegisters[index]!) | (BigInt(this.dmaRegisters[index + 1]!) << 32n);
  }

  write(offset: number, size: number, value: number): void {
    if (!this.sizeAllowed(offset, size)) return;
    switch (offset) {
      case EduRegister.LIVENESS:
        this.registers[Reg.LIVENESS] = ~value >>> 0;
        return;
      case EduRegister.FACTORIAL:
        this.registers[Reg.FACTORIAL] = factorial32(value);
        if (this.registers[Reg.STATUS]! & EDU_STATUS_FACTORIAL_IRQ) this.raise(EDU_FACTORIAL_IRQ);
        return;
      case EduRegister.STATUS:
        this.registers[Reg.STATUS] = value & EDU_STATUS_FACTORIAL_IRQ;
        return;
      case EduRegister.INTERRUPT_RAISE: return this.raise(value);
      case EduRegister.INTERRUPT_ACK: return this.acknowledge(value);
      default: {
        // A 4-byte write sets a whole DMA register, as in QEMU.
        const index = this.dmaIndex(offset);
        if (index !== null) this.writeDma(index, value >>> 0, 0);
      }
    }
  }

  write64(offset: number, value: bigint): void {
    const index = this.dmaIndex(offset);
    if (index !== null) this.writeDma(index, Number(value & 0xffff_ffffn), Number((value >> 32n) & 0xffff_ffffn));
  }

  private sizeAllowed(offset: number, size: number): boolean {
    return offset < EduRegister.DMA_SOURCE ? size === 4 : size === 4 || size === 8;
  }

  /** The dword index of the DMA register at `offset` (its start only), or null. */
  private dmaIndex(offset: number): number | null {
    if (offset < EduRegister.DMA_SOURCE || offset > EduRegister.DMA_COMMAND || offset % 8 !== 0) return null;
    return (offset - EduRegister.DMA_SOURCE) / 4;
  }

  private writeDma(index: number, low: number, high: number): void {
    if (index === Dma.COMMAND) {
      // A command without START is ignored; with it, the transfer runs now.
      if (!(low & EduDma.START)) return;
      this.dmaRegisters[Dma.COMMAND] = low;
      this.dmaRegisters[Dma.COMMAND + 1] = high;
      this.runDma();
      return;
    }
    this.dmaRegisters[index] = low;
    this.dmaRegisters[index + 1] = high;
  }

  private dmaRegister(index: number): number {
    return this.dmaRegisters[index + 1]! * 2 ** 32 + this.dmaRegisters[index]!;
  }

  private runDma(): void {
    const command = this.dmaRegisters[Dma.COMMAND]!;
    const toRam = (command & EduDma.TO_RAM) !== 0;
    const count = this.dmaRegister(Dma.COUNT);
    // The buffer end of the transfer must lie inside the buffer; the other end is a bus address.
    const bufferAddress = this.dmaRegister(toRam ? Dma.SOURCE : Dma.DESTINATION);
    const busAddress = this.dmaRegister(toRam ? Dma.DESTINATION : Dma.SOURCE) % (EDU_DMA_MASK + 1);
    const at = bufferAddress - EDU_DMA_BUFFER_ADDRESS;
    let done = at >= 0 && count <= EDU_DMA_BUFFER_SIZE && at + count <= EDU_DMA_BUFFER_SIZE && this.busMaster;
    if (done) {
      if (toRam) {
        done = this.wiring.dma.write(busAddress, this.buffer.slice(at, at + count));
      } else {
        const data = this.wiring.dma.read(busAddress, count);
        if (data) this.buffer.set(data, at);
        done = data !== null;
      }
    }
    if (!done) this.refused[0] = this.refused[0]! + 1;
    this.dmaRegisters[Dma.COMMAND] = command & ~EduDma.START;
    if (command & EduDma.IRQ) this.raise(EDU_DMA_IRQ);
  }

  private get busMaster(): boolean {
    return (this.config.command & PciCommand.BUS_MASTER) !== 0;
  }

  // --- the interrupt -------------------------------------------------------

  private raise(bits: number): void {
    const status = (this.registers[Reg.INTERRUPT_STATUS]! | bits) >>> 0;
    this.registers[Reg.INTERRUPT_STATUS] = status;
    if (status === 0) return;
    // Each raise is a message while MSI is on; an MSI is a memory write, so it needs Bus Master too.
    if (this.msi.enabled) {
      if (this.busMaster) this.wiring.sendMsi(this.msi.message());
      return;
    }
    this.updateIntx();
  }

  private acknowledge(bits: number): void {
    this.registers[Reg.INTERRUPT_STATUS] = (this.registers[Reg.INTERRUPT_STATUS]! & ~bits) >>> 0;
    this.updateIntx();
  }

  /** INTA# is asserted while an interrupt is pending, MSI is off and Interrupt Disable is clear. */
  private updateIntx(): void {
    const asserted = this.registers[Reg.INTERRUPT_STATUS]! !== 0 && !this.msi.enabled;
    this.config.setStatus(PciStatus.INTERRUPT, asserted);
    this.wiring.intx.setLevel(asserted && !(this.config.command & PciCommand.INTX_DISABLE));
  }
}

/** From 34! on, the product holds 2^32 and wraps to 0. */
const FACTORIAL_WRAPS_TO_ZERO = 34;

/** n! in 32-bit arithmetic, wrapping as QEMU's uint32_t loop does (without its 4-billion-step loop for a large n). */
export function factorial32(n: number): number {
  if (n >>> 0 >= FACTORIAL_WRAPS_TO_ZERO) return 0;
  let result = 1;
  for (let i = n >>> 0; i > 0; i--) result = Math.imul(result, i) >>> 0;
  return result;
}
