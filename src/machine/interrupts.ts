// Interrupt lines from devices to the in-kernel PIC/IOAPIC (KVM_IRQ_LINE on
// the VM fd). KVM takes the ioctl from any thread and wakes a halted vCPU.
import type { VmFd } from '../kvm/index.ts';
import type { EdgeOutcome, InterruptLine } from '../devices/interrupt-line.ts';

export class KvmInterruptLine implements InterruptLine {
  private level = false;

  constructor(private readonly vm: VmFd, readonly irq: number) {}

  setLevel(high: boolean): void {
    if (high === this.level) return;
    this.level = high;
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
