// KVM (and TUN/TAP) ioctl request numbers, computed the way <asm-generic/ioctl.h> does.
// test/kvm-abi.test.ts checks every one against the machine's <linux/kvm.h>, <linux/if_tun.h> and <linux/sockios.h>.
import { Layouts } from './structs.ts';

const IOC_NONE = 0;
const IOC_WRITE = 1;
const IOC_READ = 2;

function ioc(direction: number, type: number, nr: number, size: number): number {
  // Unsigned: _IOR/_IOWR set bit 31.
  return ((direction << 30) | (size << 16) | (type << 8) | nr) >>> 0;
}

const KVMIO = 0xae;
const io = (nr: number) => ioc(IOC_NONE, KVMIO, nr, 0);
const ior = (nr: number, size: number) => ioc(IOC_READ, KVMIO, nr, size);
const iow = (nr: number, size: number) => ioc(IOC_WRITE, KVMIO, nr, size);
const iowr = (nr: number, size: number) => ioc(IOC_READ | IOC_WRITE, KVMIO, nr, size);

export const Ioctl = {
  // On /dev/kvm
  KVM_GET_API_VERSION: io(0x00),
  KVM_CREATE_VM: io(0x01),
  KVM_GET_MSR_INDEX_LIST: iowr(0x02, 4 /* struct kvm_msr_list header */),
  KVM_CHECK_EXTENSION: io(0x03),
  KVM_GET_VCPU_MMAP_SIZE: io(0x04),
  KVM_GET_SUPPORTED_CPUID: iowr(0x05, Layouts.kvm_cpuid2.size),

  // On a VM fd
  KVM_CREATE_VCPU: io(0x41),
  KVM_GET_DIRTY_LOG: iow(0x42, Layouts.kvm_dirty_log.size),
  KVM_SET_USER_MEMORY_REGION: iow(0x46, Layouts.kvm_userspace_memory_region.size),
  KVM_SET_TSS_ADDR: io(0x47),
  KVM_SET_IDENTITY_MAP_ADDR: iow(0x48, 8),
  KVM_CREATE_IRQCHIP: io(0x60),
  KVM_IRQ_LINE: iow(0x61, Layouts.kvm_irq_level.size),
  KVM_GET_IRQCHIP: iowr(0x62, Layouts.kvm_irqchip.size),
  // _IOR although it writes: so <linux/kvm.h> has it.
  KVM_SET_IRQCHIP: ior(0x63, Layouts.kvm_irqchip.size),
  KVM_IRQ_LINE_STATUS: iowr(0x67, Layouts.kvm_irq_level.size),
  KVM_IRQFD: iow(0x76, Layouts.kvm_irqfd.size),
  KVM_CREATE_PIT2: iow(0x77, Layouts.kvm_pit_config.size),
  KVM_IOEVENTFD: iow(0x79, Layouts.kvm_ioeventfd.size),
  KVM_SET_CLOCK: iow(0x7b, Layouts.kvm_clock_data.size),
  KVM_GET_CLOCK: ior(0x7c, Layouts.kvm_clock_data.size),
  KVM_GET_PIT2: ior(0x9f, Layouts.kvm_pit_state2.size),
  KVM_SET_PIT2: iow(0xa0, Layouts.kvm_pit_state2.size),
  KVM_SIGNAL_MSI: iow(0xa5, Layouts.kvm_msi.size),

  // On a vCPU fd
  KVM_RUN: io(0x80),
  KVM_GET_REGS: ior(0x81, Layouts.kvm_regs.size),
  KVM_SET_REGS: iow(0x82, Layouts.kvm_regs.size),
  KVM_TRANSLATE: iowr(0x85, Layouts.kvm_translation.size),
  KVM_GET_SREGS: ior(0x83, Layouts.kvm_sregs.size),
  KVM_SET_SREGS: iow(0x84, Layouts.kvm_sregs.size),
  KVM_GET_MSRS: iowr(0x88, Layouts.kvm_msrs.size),
  KVM_SET_MSRS: iow(0x89, Layouts.kvm_msrs.size),
  KVM_GET_MP_STATE: ior(0x98, Layouts.kvm_mp_state.size),
  KVM_SET_MP_STATE: iow(0x99, Layouts.kvm_mp_state.size),
  KVM_SET_SIGNAL_MASK: iow(0x8b, Layouts.kvm_signal_mask.size),
  KVM_GET_FPU: ior(0x8c, Layouts.kvm_fpu.size),
  KVM_SET_FPU: iow(0x8d, Layouts.kvm_fpu.size),
  KVM_GET_LAPIC: ior(0x8e, Layouts.kvm_lapic_state.size),
  KVM_SET_LAPIC: iow(0x8f, Layouts.kvm_lapic_state.size),
  KVM_SET_CPUID2: iow(0x90, Layouts.kvm_cpuid2.size),
  KVM_GET_CPUID2: iowr(0x91, Layouts.kvm_cpuid2.size),
  // Same numbers as KVM_GET/SET_PIT2 (a VM ioctl); the struct size tells them apart.
  KVM_GET_VCPU_EVENTS: ior(0x9f, Layouts.kvm_vcpu_events.size),
  KVM_SET_VCPU_EVENTS: iow(0xa0, Layouts.kvm_vcpu_events.size),
  KVM_GET_DEBUGREGS: ior(0xa1, Layouts.kvm_debugregs.size),
  KVM_SET_DEBUGREGS: iow(0xa2, Layouts.kvm_debugregs.size),
  KVM_SET_TSC_KHZ: io(0xa2),
  KVM_GET_TSC_KHZ: io(0xa3),
  KVM_GET_XSAVE: ior(0xa4, Layouts.kvm_xsave.size),
  KVM_SET_XSAVE: iow(0xa5, Layouts.kvm_xsave.size),
  KVM_GET_XCRS: ior(0xa6, Layouts.kvm_xcrs.size),
  KVM_SET_XCRS: iow(0xa7, Layouts.kvm_xcrs.size),
  KVM_GET_XSAVE2: ior(0xcf, Layouts.kvm_xsave.size),

  // On a /dev/net/tun fd (<linux/if_tun.h>, type 'T'; both declare an int argument)
  TUNSETIFF: ioc(IOC_WRITE, 0x54, 202, 4),
  TUNSETVNETHDRSZ: ioc(IOC_WRITE, 0x54, 216, 4),

  // On any socket, with a struct ifreq (<linux/sockios.h>: fixed numbers, not _IOC-encoded)
  SIOCGIFFLAGS: 0x8913,
  SIOCSIFFLAGS: 0x8914,
  SIOCSIFHWADDR: 0x8924,
  SIOCGIFINDEX: 0x8933,
  SIOCBRADDIF: 0x89a2,
} as const;

export type IoctlName = keyof typeof Ioctl;

/** KVM_CHECK_EXTENSION arguments tsvmm asks about. */
export const Capability = {
  KVM_CAP_IRQCHIP: 0,
  KVM_CAP_HLT: 1,
  KVM_CAP_USER_MEMORY: 3,
  KVM_CAP_SET_TSS_ADDR: 4,
  KVM_CAP_EXT_CPUID: 7,
  KVM_CAP_NR_VCPUS: 9,
  KVM_CAP_MP_STATE: 14,
  KVM_CAP_NR_MEMSLOTS: 10,
  KVM_CAP_IRQ_INJECT_STATUS: 26,
  KVM_CAP_PIT2: 33,
  KVM_CAP_SET_IDENTITY_MAP_ADDR: 37,
  KVM_CAP_IOEVENTFD: 36,
  KVM_CAP_ADJUST_CLOCK: 39,
  KVM_CAP_VCPU_EVENTS: 41,
  KVM_CAP_DEBUGREGS: 50,
  KVM_CAP_XSAVE: 55,
  KVM_CAP_XCRS: 56,
  KVM_CAP_TSC_CONTROL: 60,
  KVM_CAP_GET_TSC_KHZ: 61,
  KVM_CAP_IRQFD: 32,
  KVM_CAP_MAX_VCPUS: 66,
  KVM_CAP_TSC_DEADLINE_TIMER: 72,
  KVM_CAP_SIGNAL_MSI: 77,
  KVM_CAP_IMMEDIATE_EXIT: 136,
  KVM_CAP_XSAVE2: 208,
} as const;

export type CapabilityName = keyof typeof Capability;

/** kvm_userspace_memory_region.flags. */
export const MemoryRegionFlag = {
  /** KVM records every write to the slot's pages, read back (and cleared) by KVM_GET_DIRTY_LOG. */
  KVM_MEM_LOG_DIRTY_PAGES: 1,
} as const;

/** kvm_clock_data.flags (KVM_CAP_ADJUST_CLOCK answers with the ones this KVM knows). */
export const ClockFlag = {
  KVM_CLOCK_TSC_STABLE: 2,
  KVM_CLOCK_REALTIME: 4,
  KVM_CLOCK_HOST_TSC: 8,
} as const;
