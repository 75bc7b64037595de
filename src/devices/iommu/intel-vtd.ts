// An Intel VT-d DMA and interrupt remapping unit, the one QEMU's q35 puts at
// 0xFED90000 (`-device intel-iommu`), seen by the guest as a page of
// registers (vtd-registers.ts) and by the machine as three services:
//   - translate(): DMA remapping of a PCI function's request (vtd-translation.ts);
//   - remapMsi() / remapIoapicEntry(): interrupt remapping (vtd-interrupts.ts);
//   - the register file: the GCMD/GSTS handshakes (TE, SRTP, QIE, IRE,
//     SIRTP, CFI), register-based and queued invalidation (with wait
//     descriptors that write a status and raise the completion event), and
//     primary fault recording with its fault event interrupt.
// The unit caches no translation, so an invalidation has nothing to drop: it
// only has to complete. Tables, queue and status addresses are the guest's;
// one outside RAM is an error the unit reports (a fault, IQE), never a host
// exception.
//
// State as data: every register and the pointers SRTP and SIRTP latched are
// in VTD_STATE, so every vCPU thread's object over one buffer is one unit.
import type { BusDevice } from '../../bus/index.ts';
import { DeviceStateLayout, type SavedDeviceState, type StatefulDevice } from '../device-state.ts';
import { ioapicEntryIndex, remapIndex, remappableIndex, type MsiMessage } from './vtd-interrupts.ts';
import {
  CCMD_ICC, Ecap, EventControl, FaultReason, ICS_IWC, IOTLB_IVT, VTD_HOST_ADDRESS_WIDTH, VTD_REGISTERS_END, VTD_VERSION,
  VtdFaultStatus, VtdGlobal, VtdRegister, vtdCapabilities,
} from './vtd-registers.ts';
import { translateDma, type DmaAccess, type TableMemory, type Translation, type VtdEntry } from './vtd-translation.ts';

export const VTD_STATE = new DeviceStateLayout('intel-vtd', 1, {
  /** The registers, one dword per 4 bytes of the page up to the fault record. */
  registers: ['u32', VTD_REGISTERS_END / 4],
  /** RTADDR as SRTP latched it, then IRTA as SIRTP latched it (low, high dwords). */
  latched: ['u32', 4],
  /** Invalidation descriptors completed, for reports. */
  invalidations: ['u32', 1],
});

/** What the unit reaches in the machine: guest RAM and the local APICs. */
export interface VtdWiring {
  memory: TableMemory & { writeU32(address: number, value: number): void };
  /** Delivers an MSI to the local APICs (the unit's own fault and invalidation events). */
  signalMsi(message: MsiMessage): void;
}

export interface VtdOptions {
  /** ECAP.IR: interrupt remapping (QEMU's intremap=on). */
  interruptRemapping: boolean;
}

/** What happens to an interrupt the IOAPIC would send for one pin (remapIoapicEntry). */
export type IoapicRoute =
  /** Remapping is off, or the entry is in compatibility format and CFI lets it pass: the IOAPIC delivers it. */
  | { kind: 'ioapic' }
  | { kind: 'msi'; message: MsiMessage }
  /** Remapping refused it (a fault was recorded unless the IRTE disabled that). */
  | { kind: 'blocked' };

/** 128-bit invalidation descriptor types (6.5.2). */
const Descriptor = { CONTEXT_CACHE: 1, IOTLB: 2, INTERRUPT_ENTRY_CACHE: 4, WAIT: 5 } as const;
const DESCRIPTOR_SIZE = 16;
/** Wait descriptor bits: Interrupt Flag, Status Write. */
const WAIT_IF = 1 << 4;
const WAIT_SW = 1 << 5;

/** Queue tail and head: descriptor index in bits 18:4 (128-bit descriptors). */
const QUEUE_INDEX_MASK = 0x7fff0;
/** IQA: base in 63:12, queue size in 2:0 (2^QS pages). DW (bit 11, 256-bit descriptors) is not implemented. */
const IQA_LOW_MASK = 0xffff_f007;
/** IRTA: base in 63:12, table size in 3:0. EIME (bit 11) is not implemented. */
const IRTA_LOW_MASK = 0xffff_f00f;
/** RTADDR: base in 63:12 and the table type in 11:10. */
const RTADDR_LOW_MASK = 0xffff_fc00;
const HIGH_ADDRESS_MASK = 2 ** (VTD_HOST_ADDRESS_WIDTH - 32) - 1;

/** FRCD's dwords: fault info (2), source-id, then reason, type (bit 30, 1 = read) and F (bit 31). */
const FRCD_F = 1 << 31;
const FRCD_READ = 1 << 30;

/** The widest guest-physical page an untranslated (TE = 0) request is in: all of it. */
const UNTRANSLATED_PAGE = 2 ** 52;

export class IntelVtd implements BusDevice, StatefulDevice {
  readonly name = 'intel-iommu';
  readonly state: SharedArrayBuffer;
  private readonly regs: Uint32Array;
  private readonly latched: Uint32Array;
  private readonly invalidations: Uint32Array;

  /** A powered-on unit's state: version and capabilities in place, everything else 0. */
  static createState(options: VtdOptions): SharedArrayBuffer {
    const state = VTD_STATE.create();
    const regs = VTD_STATE.views(state).registers;
    const { cap, ecap } = vtdCapabilities(options);
    regs[VtdRegister.VER / 4] = VTD_VERSION;
    [regs[VtdRegister.CAP / 4], regs[VtdRegister.CAP / 4 + 1]] = cap;
    [regs[VtdRegister.ECAP / 4], regs[VtdRegister.ECAP / 4 + 1]] = ecap;
    return state;
  }

  /** `state`: from createState() (or another thread's unit), used as it is. */
  constructor(private readonly wiring: VtdWiring, state: SharedArrayBuffer) {
    this.state = state;
    const views = VTD_STATE.views(state);
    this.regs = views.registers;
    this.latched = views.latched;
    this.invalidations = views.invalidations;
  }

  saveState(): SavedDeviceState {
    return VTD_STATE.save(this.state);
  }

  restoreState(saved: SavedDeviceState): void {
    VTD_STATE.restore(saved, this.state);
  }

  /** Invalidation descriptors processed so far. */
  get invalidationsDone(): number {
    return this.invalidations[0]!;
  }

  // --- the services ---------------------------------------------------------

  /**
   * DMA remapping of a request from `sourceId` (bus << 8 | devfn): with
   * translation off the address is used as it is; a failed translation is
   * recorded as a primary fault (unless the context entry disabled that).
   */
  translate(sourceId: number, iova: number, access: DmaAccess): Translation {
    if (!(this.status & VtdGlobal.TE)) return { ok: true, address: iova, pageSize: UNTRANSLATED_PAGE };
    const result = translateDma(this.wiring.memory, this.entry(this.latched, 0), sourceId, iova, access);
    if (!result.ok && result.report) this.recordFault(sourceId, result.reason, iova, access === 'read');
    return result;
  }

  /**
   * An MSI write from `sourceId` through interrupt remapping: the message to
   * deliver, or null when remapping blocked it.
   */
  remapMsi(sourceId: number, message: MsiMessage): MsiMessage | null {
    if (!(this.status & VtdGlobal.IRE)) return message;
    const index = remappableIndex(message);
    if (index === null) {
      if (this.status & VtdGlobal.CFI) return message;
      this.recordFault(sourceId, FaultReason.COMPATIBILITY_BLOCKED, 0, false);
      return null;
    }
    return this.remap(index, sourceId);
  }

  /**
   * What becomes of an interrupt from an IOAPIC pin whose redirection entry is
   * `entry`. The IOAPIC's requests are not verified against the IRTE's
   * source-id: kvm-unit-tests (and QEMU, whose IOAPIC writes its MSIs without
   * a requester id) put the requesting device's own id there.
   */
  remapIoapicEntry(entry: bigint): IoapicRoute {
    if (!(this.status & VtdGlobal.IRE)) return { kind: 'ioapic' };
    const index = ioapicEntryIndex(entry);
    if (index === null) return this.status & VtdGlobal.CFI ? { kind: 'ioapic' } : { kind: 'blocked' };
    const message = this.remap(index, null);
    return message ? { kind: 'msi', message } : { kind: 'blocked' };
  }

  private remap(index: number, sourceId: number | null): MsiMessage | null {
    const result = remapIndex(this.wiring.memory, this.entry(this.latched, 2), index, sourceId);
    if (result.ok) return result.message;
    // Interrupt faults carry the IRTE index in the fault info's bits 63:48.
    if (result.report) this.recordFault(sourceId ?? 0, result.reason, result.index * 2 ** 48, false);
    return null;
  }

  // --- the register file ----------------------------------------------------

  read(offset: number, size: number): number {
    const dword = this.readDword(offset & ~3);
    if (size === 4) return dword;
    return (dword >>> ((offset & 3) * 8)) & (size === 1 ? 0xff : 0xffff);
  }

  write(offset: number, size: number, value: number): void {
    // The registers are 32 and 64 bits wide and software accesses them whole (11.2).
    if (size === 4 && (offset & 3) === 0) this.writeDword(offset, value >>> 0);
  }

  read64(offset: number): bigint {
    return BigInt(this.readDword(offset)) | (BigInt(this.readDword(offset + 4)) << 32n);
  }

  write64(offset: number, value: bigint): void {
    this.writeDword(offset, Number(value & 0xffff_ffffn));
    this.writeDword(offset + 4, Number((value >> 32n) & 0xffff_ffffn));
  }

  private get status(): number {
    return this.regs[VtdRegister.GSTS / 4]!;
  }

  private set status(value: number) {
    this.regs[VtdRegister.GSTS / 4] = value >>> 0;
  }

  private reg(offset: number): number {
    return this.regs[offset / 4]!;
  }

  private setReg(offset: number, value: number): void {
    this.regs[offset / 4] = value >>> 0;
  }

  private entry(from: Uint32Array, at: number): VtdEntry {
    return { low: from[at]!, high: from[at + 1]! };
  }

  private readDword(offset: number): number {
    if (offset < 0 || offset >= VTD_REGISTERS_END) return 0;
    switch (offset) {
      case VtdRegister.GCMD: return 0; // write-only
      case VtdRegister.FSTS: {
        // PPF is not a latch: it says a fault record holds a fault.
        const pending = this.reg(VtdRegister.FRCD + 12) & FRCD_F ? VtdFaultStatus.PPF : 0;
        return (this.reg(VtdRegister.FSTS) | pending) >>> 0;
      }
      default: return this.reg(offset);
    }
  }

  private writeDword(offset: number, value: number): void {
    switch (offset) {
      case VtdRegister.GCMD: return this.globalCommand(value);
      case VtdRegister.RTADDR: return this.setReg(offset, value & RTADDR_LOW_MASK);
      case VtdRegister.RTADDR + 4: return this.setReg(offset, value & HIGH_ADDRESS_MASK);
      case VtdRegister.CCMD: return this.setReg(offset, value);
      // A context-cache invalidation completes at once, at the granularity asked (CAIG = CIRG).
      case VtdRegister.CCMD + 4: return this.setReg(offset, value & CCMD_ICC ? (value & ~CCMD_ICC & ~(3 << 27)) | (((value >>> 29) & 3) << 27) : value);
      case VtdRegister.FSTS: return this.setReg(offset, this.reg(offset) & ~(value & VtdFaultStatus.RW1C));
      case VtdRegister.FECTL: return this.eventControl(offset, value, VtdRegister.FEADDR);
      case VtdRegister.FEDATA:
      case VtdRegister.IEDATA: return this.setReg(offset, value & 0xffff);
      case VtdRegister.FEADDR:
      case VtdRegister.IEADDR: return this.setReg(offset, value & ~3);
      case VtdRegister.FEUADDR:
      case VtdRegister.IEUADDR:
      case VtdRegister.IVA:
      case VtdRegister.IVA + 4:
      case VtdRegister.IOTLB: return this.setReg(offset, value);
      // An IOTLB invalidation completes at once too (IAIG = IIRG).
      case VtdRegister.IOTLB + 4: return this.setReg(offset, value & IOTLB_IVT ? (value & ~IOTLB_IVT & ~(3 << 25)) | (((value >>> 28) & 3) << 25) : value);
      case VtdRegister.IQT:
        this.setReg(offset, value & QUEUE_INDEX_MASK);
        return this.processQueue();
      case VtdRegister.IQA: return this.setReg(offset, value & IQA_LOW_MASK);
      case VtdRegister.IQA + 4: return this.setReg(offset, value & HIGH_ADDRESS_MASK);
      case VtdRegister.ICS:
        // Clearing IWC also clears a pending (masked) completion event.
        if (value & ICS_IWC) {
          this.setReg(offset, 0);
          this.setReg(VtdRegister.IECTL, this.reg(VtdRegister.IECTL) & ~EventControl.IP);
        }
        return;
      case VtdRegister.IECTL: return this.eventControl(offset, value, VtdRegister.IEADDR);
      case VtdRegister.IRTA: return this.setReg(offset, value & IRTA_LOW_MASK);
      case VtdRegister.IRTA + 4: return this.setReg(offset, value & HIGH_ADDRESS_MASK);
      case VtdRegister.FRCD + 12:
        if (value & FRCD_F) this.setReg(offset, this.reg(offset) & ~FRCD_F);
        return;
      default: return; // read-only or reserved
    }
  }

  /**
   * GCMD: each bit that differs from the status is a command, carried out at
   * once, so the status the guest polls for is already there. SRTP and SIRTP
   * are one-shot: each write with them set latches the pointer again.
   */
  private globalCommand(command: number): void {
    let status = this.status;
    const toggle = (bit: number) => {
      status = command & bit ? status | bit : status & ~bit;
    };
    if (command & VtdGlobal.SRTP) {
      this.latched[0] = this.reg(VtdRegister.RTADDR);
      this.latched[1] = this.reg(VtdRegister.RTADDR + 4);
      status |= VtdGlobal.SRTP;
    }
    toggle(VtdGlobal.TE);
    const queueWas = status & VtdGlobal.QIE;
    if ((command & VtdGlobal.QIE) && !queueWas) {
      this.setReg(VtdRegister.IQH, 0);
      status |= VtdGlobal.QIE;
    } else if (!(command & VtdGlobal.QIE) && queueWas && this.reg(VtdRegister.IQH) === this.reg(VtdRegister.IQT)) {
      // Disabling needs an empty queue (IQH = IQT), as in QEMU; with descriptors pending it stays on.
      this.setReg(VtdRegister.IQH, 0);
      status &= ~VtdGlobal.QIE;
    }
    if (this.reg(VtdRegister.ECAP) & Ecap.IR) {
      if (command & VtdGlobal.SIRTP) {
        this.latched[2] = this.reg(VtdRegister.IRTA);
        this.latched[3] = this.reg(VtdRegister.IRTA + 4);
        status |= VtdGlobal.SIRTP;
      }
      toggle(VtdGlobal.IRE);
      toggle(VtdGlobal.CFI);
    }
    const queueEnabled = !queueWas && (status & VtdGlobal.QIE) !== 0;
    this.status = status;
    if (queueEnabled) this.processQueue();
  }

  /** FECTL and IECTL: IM is the guest's; unmasking with an event pending sends it. */
  private eventControl(offset: number, value: number, addressRegister: number): void {
    const before = this.reg(offset);
    if (!(value & EventControl.IM) && (before & EventControl.IP)) {
      this.setReg(offset, 0);
      this.sendEvent(addressRegister);
      return;
    }
    this.setReg(offset, (before & EventControl.IP) | (value & EventControl.IM));
  }

  /** The fault or invalidation-completion event: an MSI from the address/data registers that follow `addressRegister`'s pattern. */
  private sendEvent(addressRegister: number): void {
    const data = this.reg(addressRegister - 4);
    const address = this.reg(addressRegister + 4) * 2 ** 32 + this.reg(addressRegister);
    this.wiring.signalMsi({ address, data });
  }

  /** Raises an event whose control register is `control`: sent now, or left pending while masked. */
  private raiseEvent(control: number, addressRegister: number): void {
    if (this.reg(control) & EventControl.IM) this.setReg(control, this.reg(control) | EventControl.IP);
    else this.sendEvent(addressRegister);
  }

  /**
   * Primary fault logging (chapter 7) into the one fault record: a second fault
   * while it is still full sets PFO and is dropped. The fault event fires
   * when the record fills.
   */
  private recordFault(sourceId: number, reason: number, faultInfo: number, read: boolean): void {
    const fsts = this.reg(VtdRegister.FSTS);
    if (fsts & VtdFaultStatus.PFO) return;
    const record = VtdRegister.FRCD;
    if (this.reg(record + 12) & FRCD_F) {
      this.setReg(VtdRegister.FSTS, fsts | VtdFaultStatus.PFO);
      return;
    }
    this.setReg(record, (faultInfo % 2 ** 32) & ~0xfff);
    this.setReg(record + 4, Math.floor(faultInfo / 2 ** 32));
    this.setReg(record + 8, sourceId & 0xffff);
    this.setReg(record + 12, (reason & 0xff) | (read ? FRCD_READ : 0) | FRCD_F);
    // FSTS.FRI (15:8) stays 0: it names record 0, the only one.
    this.raiseEvent(VtdRegister.FECTL, VtdRegister.FEADDR);
  }

  /**
   * Runs the invalidation queue from IQH to IQT. A tail beyond the queue, a
   * descriptor outside RAM or of a type this unit does not know stops it with
   * IQE set, IQH left on the bad descriptor; nothing runs until the guest
   * clears IQE.
   */
  private processQueue(): void {
    if (!(this.status & VtdGlobal.QIE)) return;
    if (this.reg(VtdRegister.FSTS) & VtdFaultStatus.IQE) return;
    const iqa = this.reg(VtdRegister.IQA);
    const entries = 256 * 2 ** (iqa & 7);
    const base = this.reg(VtdRegister.IQA + 4) * 2 ** 32 + ((iqa & ~0xfff) >>> 0);
    const tail = this.reg(VtdRegister.IQT) >>> 4;
    if (tail >= entries) return this.queueError();
    let head = this.reg(VtdRegister.IQH) >>> 4;
    while (head !== tail) {
      if (head >= entries || !this.runDescriptor(base + head * DESCRIPTOR_SIZE)) {
        this.setReg(VtdRegister.IQH, (head % entries) << 4);
        return this.queueError();
      }
      head = (head + 1) % entries;
      this.invalidations[0] = this.invalidations[0]! + 1;
    }
    this.setReg(VtdRegister.IQH, head << 4);
  }

  private queueError(): void {
    this.setReg(VtdRegister.FSTS, this.reg(VtdRegister.FSTS) | VtdFaultStatus.IQE);
    this.raiseEvent(VtdRegister.FECTL, VtdRegister.FEADDR);
  }

  /** One 128-bit descriptor at `address`; false when it is invalid. */
  private runDescriptor(address: number): boolean {
    const { memory } = this.wiring;
    if (!memory.contains(address, DESCRIPTOR_SIZE)) return false;
    const low = memory.readU32(address);
    switch (low & 0xf) {
      // Nothing is cached: these complete at once.
      case Descriptor.CONTEXT_CACHE:
      case Descriptor.IOTLB:
      case Descriptor.INTERRUPT_ENTRY_CACHE:
        return true;
      case Descriptor.WAIT: {
        if (low & WAIT_SW) {
          const statusAddress = memory.readU32(address + 12) * 2 ** 32 + ((memory.readU32(address + 8) & ~3) >>> 0);
          if (!memory.contains(statusAddress, 4)) return false;
          memory.writeU32(statusAddress, memory.readU32(address + 4));
        }
        // A completion still unacknowledged (IWC set) raises no second event.
        if ((low & WAIT_IF) && !(this.reg(VtdRegister.ICS) & ICS_IWC)) {
          this.setReg(VtdRegister.ICS, ICS_IWC);
          this.raiseEvent(VtdRegister.IECTL, VtdRegister.IEADDR);
        }
        return true;
      }
      default:
        return false;
    }
  }
}
