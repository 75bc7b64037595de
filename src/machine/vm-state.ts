// The state KVM keeps per VM rather than per vCPU, as plain data: the
// in-kernel interrupt controllers (PIC master, PIC slave, IOAPIC), KVM's i8254
// where the machine uses it (--pit kernel), and kvmclock.
//
// Restore it into a new VM that has its irqchip (and PIT) but whose vCPUs
// have not run, before the vCPUs' own state (src/vcpu/vcpu-state.ts), as
// Firecracker's restore does.
import { ClockFlag, KvmError, type VmFd } from '../kvm/index.ts';

/** KVM_GET_IRQCHIP's chip ids. */
const Irqchip = { PIC_MASTER: 0, PIC_SLAVE: 1, IOAPIC: 2 } as const;

export interface VmState {
  /** kvm_irqchip's `chip` union for each controller. */
  irqchips: { picMaster: Uint8Array; picSlave: Uint8Array; ioapic: Uint8Array };
  /** kvm_pit_state2; null when the machine's PIT is tsvmm's own (its state is device state). */
  pit: Uint8Array | null;
  /** KVM_GET_CLOCK's answer: kvmclock in ns, and the host's wall clock at that instant when flags has KVM_CLOCK_REALTIME. */
  clock: { ns: bigint; flags: number; realtime: bigint };
}

export interface SaveVmOptions {
  /** The VM has KVM's PIT (KVM_CREATE_PIT2). */
  kernelPit: boolean;
}

export interface RestoreVmOptions {
  /**
   * Move kvmclock on by the wall-clock time since the save (KVM_CLOCK_REALTIME),
   * as if the guest had kept running. Without it (the default) the guest's
   * clock goes on from the instant it was saved, as after a pause.
   */
  advanceClockByElapsedTime?: boolean;
}

/** Reads the VM's state; its vCPUs must all be out of KVM_RUN. */
export function saveVmState(vm: VmFd, options: SaveVmOptions): VmState {
  const clock = vm.getClock();
  return {
    irqchips: {
      picMaster: vm.getIrqchip(Irqchip.PIC_MASTER),
      picSlave: vm.getIrqchip(Irqchip.PIC_SLAVE),
      ioapic: vm.getIrqchip(Irqchip.IOAPIC),
    },
    pit: options.kernelPit ? vm.getPit2() : null,
    clock: { ns: clock.clock, flags: clock.flags, realtime: clock.realtime },
  };
}

export function restoreVmState(vm: VmFd, state: VmState, options: RestoreVmOptions = {}): void {
  // Both checks before the first write: a VM of the wrong kind is refused untouched.
  requirePresent(() => vm.getIrqchip(Irqchip.PIC_MASTER), 'KVM_SET_IRQCHIP', 'an in-kernel irqchip (KVM_CREATE_IRQCHIP)');
  if (state.pit !== null) requirePresent(() => vm.getPit2(), 'KVM_SET_PIT2', "KVM's PIT (KVM_CREATE_PIT2, --pit kernel)");
  vm.setIrqchip(Irqchip.PIC_MASTER, state.irqchips.picMaster);
  vm.setIrqchip(Irqchip.PIC_SLAVE, state.irqchips.picSlave);
  vm.setIrqchip(Irqchip.IOAPIC, state.irqchips.ioapic);
  if (state.pit !== null) vm.setPit2(state.pit);
  vm.setClock(state.clock.ns, ...clockFlags(vm, state, options));
}

/**
 * KVM_SET_CLOCK reads no flag but KVM_CLOCK_REALTIME (the others
 * KVM_GET_CLOCK reports are ignored from Linux 5.16 and refused before it),
 * and it needs KVM_CAP_ADJUST_CLOCK to list it.
 */
function clockFlags(vm: VmFd, state: VmState, options: RestoreVmOptions): [flags: number, realtime: bigint] {
  if (!options.advanceClockByElapsedTime) return [0, 0n];
  const { KVM_CLOCK_REALTIME } = ClockFlag;
  if ((state.clock.flags & KVM_CLOCK_REALTIME) === 0) {
    throw new Error('KVM_SET_CLOCK: the saved clock has no wall-clock time (the saving KVM did not report KVM_CLOCK_REALTIME), so the elapsed time is unknown');
  }
  if ((vm.checkExtension('KVM_CAP_ADJUST_CLOCK') & KVM_CLOCK_REALTIME) === 0) {
    throw new Error('KVM_SET_CLOCK: this KVM cannot advance the clock by the elapsed time (no KVM_CLOCK_REALTIME in KVM_CAP_ADJUST_CLOCK)');
  }
  return [KVM_CLOCK_REALTIME, state.clock.realtime];
}

/** A VM without the device answers its GET with ENXIO; say what is missing instead. */
function requirePresent(read: () => unknown, ioctl: string, device: string): void {
  try {
    read();
  } catch (e) {
    if (e instanceof KvmError && e.code === 'ENXIO') {
      throw new Error(`${ioctl}: the saved VM has ${device}, but this VM has none`);
    }
    throw e;
  }
}
