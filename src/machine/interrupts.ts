// Interrupt lines from devices to the in-kernel PIC/IOAPIC (KVM_IRQ_LINE on
// the VM fd). KVM takes the ioctl from any thread and wakes a halted vCPU.
import { Layouts, type VmFd } from '../kvm/index.ts';
import { IrqLayout } from '../layout.ts';
import type { EdgeOutcome, InterruptLine } from '../devices/interrupt-line.ts';

/**
 * The level each line was last driven to, one word per GSI, shared by every
 * thread that drives lines (each vCPU thread has its own line objects): a
 * line raised from one vCPU thread is lowered from another.
 */
export function createIrqLevels(): SharedArrayBuffer {
  return new SharedArrayBuffer(IrqLayout.IOAPIC_PINS * 4);
}

export class KvmInterruptLine implements InterruptLine {
  private readonly levels: Int32Array;

  constructor(private readonly vm: VmFd, readonly irq: number, levels: SharedArrayBuffer = createIrqLevels()) {
    this.levels = new Int32Array(levels);
  }

  setLevel(high: boolean): void {
    const level = high ? 1 : 0;
    if (this.levels[this.irq] === level) return;
    this.levels[this.irq] = level;
    this.vm.setIrqLine(this.irq, high);
  }

  /** The rising edge goes through KVM_IRQ_LINE_STATUS, which says whether the PIC/IOAPIC took it as new. */
  pulse(): EdgeOutcome {
    this.setLevel(false);
    const status = this.vm.setIrqLineStatus(this.irq, true);
    this.vm.setIrqLine(this.irq, false);
    return status > 0 ? 'new' : status === 0 ? 'coalesced' : 'ignored';
  }
}

/** Without an interrupt controller (flat guests) a line goes nowhere. */
export const disconnectedLine: InterruptLine = { setLevel() {}, pulse: () => 'ignored' };

// Local APIC LVT registers and delivery modes (Intel SDM vol. 3, 10.5.1).
const APIC_LVT_LINT0 = 0x350;
const APIC_LVT_LINT1 = 0x360;
const DELIVERY_MODE_EXTINT = 0x7 << 8;
const DELIVERY_MODE_NMI = 0x4 << 8;
const DELIVERY_MODE_MASK = 0x7 << 8;

/**
 * Wires the local APIC the way a PC's BIOS leaves it: LINT0 receives the
 * 8259 PIC's interrupts (ExtINT), LINT1 is NMI. Without this a kernel that
 * finds no MP table or ACPI sees no PIC interrupts at all.
 */
export function wireLocalApicToPic(lapic: Uint8Array): Uint8Array {
  const view = new DataView(lapic.buffer, lapic.byteOffset, lapic.byteLength);
  const set = (reg: number, mode: number) => view.setUint32(reg, (view.getUint32(reg, true) & ~DELIVERY_MODE_MASK) | mode, true);
  set(APIC_LVT_LINT0, DELIVERY_MODE_EXTINT);
  set(APIC_LVT_LINT1, DELIVERY_MODE_NMI);
  return lapic;
}

/** KVM_GET/SET_IRQCHIP chip ids of the two 8259s. */
const MASTER_PIC = 0;
const SLAVE_PIC = 1;
/** The vectors a PC BIOS gives the 8259s' IRQ 0-7 and 8-15. */
const MASTER_VECTOR_BASE = 0x08;
const SLAVE_VECTOR_BASE = 0x70;

/**
 * Leaves the 8259 PICs as a PC's firmware does before it starts an OS:
 * initialized (vector bases 0x08 and 0x70, so an interrupt can never arrive
 * as vector 0-15, a CPU exception) and with every input masked. An OS that
 * uses the PICs programs them again; one that does not (Linux on a
 * hardware-reduced ACPI platform never touches them, and routes everything
 * through the IOAPIC) then gets nothing through LINT0, where KVM's PICs
 * would otherwise deliver each ISA interrupt, with their power-on vector base
 * 0, as a divide error, a breakpoint, ...
 * `unmasked`: the ISA IRQs the firmware left open (a multiboot kernel gets
 * the timer and the cascade, boot/legacy-bios.ts).
 */
export function initializeLegacyPics(vm: VmFd, unmasked: readonly number[] = []): void {
  const pic = Layouts.kvm_pic_state.fields;
  for (const [chip, base] of [[MASTER_PIC, MASTER_VECTOR_BASE], [SLAVE_PIC, SLAVE_VECTOR_BASE]] as const) {
    const state = vm.getIrqchip(chip);
    const firstIrq = chip === MASTER_PIC ? 0 : 8;
    const open = unmasked.filter((irq) => irq >= firstIrq && irq < firstIrq + 8).reduce((bits, irq) => bits | (1 << (irq - firstIrq)), 0);
    state[pic.irq_base.offset] = base;
    state[pic.imr.offset] = 0xff & ~open;
    state[pic.init_state.offset] = 0; // not waiting for ICW2-4
    state[pic.init4.offset] = 1; // ICW4 given (8086 mode), as every PC's
    vm.setIrqchip(chip, state);
  }
}
