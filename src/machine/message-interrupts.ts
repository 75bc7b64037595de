// Message-signalled interrupts into KVM's local APICs, and the interrupt
// line of a device whose INTx may be remapped by the VT-d unit.
//
// Why this replaces QEMU's split irqchip: with interrupt remapping on, the
// guest programs an IOAPIC redirection entry in remappable format (bit 48
// set, an IRTE index instead of a destination), which KVM's in-kernel IOAPIC
// does not understand. QEMU moves the IOAPIC to userspace for that
// (kernel-irqchip=split) and sends each of its interrupts through the IOMMU
// as an MSI. tsvmm keeps KVM's IOAPIC, which owns the redirection table, and
// reads the pin's entry (KVM_GET_IRQCHIP) when the device raises its line:
// an entry in remappable format never reaches KVM's IOAPIC; its IRTE's
// message is delivered with KVM_SIGNAL_MSI instead. Entries in compatibility
// format, and every other line of the machine, stay KVM's.
// A remapped line is delivered once per assertion, as an edge: KVM's IOAPIC
// never saw it, so there is no remote IRR to re-deliver a level-triggered one
// after the guest's EOI.
import type { InterruptLine, EdgeOutcome } from '../devices/interrupt-line.ts';
import type { IoapicRoute, MsiMessage } from '../devices/iommu/index.ts';
import { KvmError, type VmFd } from '../kvm/index.ts';

/** The local APICs' message window: a message anywhere else is not an interrupt. */
const MSI_WINDOW = 0xfee0_0000;
const MSI_WINDOW_MASK = 0xfff0_0000;
/** Redirection entry bit 16: the input is masked. */
const IOAPIC_MASK_BIT = 16n;

/**
 * Sends `message` to the local APICs. A message outside the interrupt window
 * (a guest's garbage), or one KVM refuses, is dropped: the guest's mistake
 * must not end the exit that sent it. Returns whether it was delivered.
 */
export function deliverMsi(vm: VmFd, message: MsiMessage): boolean {
  if (message.address >= 2 ** 32 || ((message.address & MSI_WINDOW_MASK) >>> 0) !== MSI_WINDOW) return false;
  try {
    return vm.signalMsi(message.address, message.data) > 0;
  } catch (e) {
    if (e instanceof KvmError) return false;
    throw e;
  }
}

/**
 * IOAPIC input `pin`, driven by one device, with every rising edge checked
 * against the pin's redirection entry by `remap` (the VT-d unit). `levels` is
 * the machine's shared line levels (interrupts.ts createIrqLevels): the level
 * the device drives the pin to, whichever way it was delivered.
 */
export class RemappableIntxLine implements InterruptLine {
  private readonly levels: Int32Array;

  constructor(
    private readonly vm: VmFd,
    readonly pin: number,
    private readonly remap: (entry: bigint) => IoapicRoute,
    levels: SharedArrayBuffer,
  ) {
    this.levels = new Int32Array(levels);
  }

  setLevel(high: boolean): void {
    const level = high ? 1 : 0;
    if (this.levels[this.pin] === level) return;
    this.levels[this.pin] = level;
    // Lowering KVM's input is harmless when the assertion went around it.
    if (!high) this.vm.setIrqLine(this.pin, false);
    else this.assert();
  }

  pulse(): EdgeOutcome {
    this.setLevel(false);
    this.levels[this.pin] = 1;
    const outcome = this.assert();
    this.setLevel(false);
    return outcome;
  }

  private assert(): EdgeOutcome {
    const entry = this.vm.ioapicRedirection(this.pin);
    const route = this.remap(entry);
    switch (route.kind) {
      case 'ioapic':
        this.vm.setIrqLine(this.pin, true);
        return 'new';
      case 'msi':
        // The entry's mask bit is still the IOAPIC's to honour.
        if ((entry >> IOAPIC_MASK_BIT) & 1n) return 'ignored';
        return deliverMsi(this.vm, route.message) ? 'new' : 'ignored';
      case 'blocked':
        return 'ignored';
    }
  }
}
