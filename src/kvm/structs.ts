// Byte layouts of the <linux/kvm.h> structs tsvmm passes to ioctls (x86-64).
// Field keys are C member designators ("io.port"), so test/kvm-abi.test.ts can
// check each one with offsetof()/sizeof() against the real header.
//
// tsvmm reads and writes these structs through DataViews over plain buffers
// (or, for kvm_run, over the mmap'd page): no koffi struct marshalling, so the
// exit path allocates nothing.

export interface Field {
  readonly offset: number;
  readonly size: number;
}

export interface Layout<F extends string = string> {
  readonly size: number;
  readonly fields: Readonly<Record<F, Field>>;
}

function layout<F extends string>(size: number, fields: Record<F, [offset: number, size: number]>): Layout<F> {
  const out = {} as Record<F, Field>;
  for (const name of Object.keys(fields) as F[]) {
    const [offset, fieldSize] = fields[name];
    out[name] = { offset, size: fieldSize };
  }
  return { size, fields: out };
}

const kvm_segment = layout(24, {
  base: [0, 8], limit: [8, 4], selector: [12, 2], type: [14, 1], present: [15, 1],
  dpl: [16, 1], db: [17, 1], s: [18, 1], l: [19, 1], g: [20, 1], avl: [21, 1], unusable: [22, 1],
});

const kvm_dtable = layout(16, { base: [0, 8], limit: [8, 2] });

export const Layouts = {
  kvm_segment,
  kvm_dtable,

  // The shared page of a vCPU: why KVM_RUN returned, and the data of the exit.
  // Its size is the struct's; the page KVM maps is KVM_GET_VCPU_MMAP_SIZE long
  // and also holds the PIO data that io.data_offset points into.
  kvm_run: layout(2352, {
    request_interrupt_window: [0, 1],
    immediate_exit: [1, 1],
    exit_reason: [8, 4],
    ready_for_interrupt_injection: [12, 1],
    if_flag: [13, 1],
    flags: [14, 2],
    cr8: [16, 8],
    apic_base: [24, 8],
    'hw.hardware_exit_reason': [32, 8],
    'fail_entry.hardware_entry_failure_reason': [32, 8],
    'fail_entry.cpu': [40, 4],
    'ex.exception': [32, 4],
    'ex.error_code': [36, 4],
    'io.direction': [32, 1],
    'io.size': [33, 1],
    'io.port': [34, 2],
    'io.count': [36, 4],
    'io.data_offset': [40, 8],
    'debug.arch.exception': [32, 4],
    'debug.arch.pc': [40, 8],
    'debug.arch.dr6': [48, 8],
    'debug.arch.dr7': [56, 8],
    'mmio.phys_addr': [32, 8],
    'mmio.data': [40, 8],
    'mmio.len': [48, 4],
    'mmio.is_write': [52, 1],
    'internal.suberror': [32, 4],
    'internal.ndata': [36, 4],
    'internal.data': [40, 128],
    'system_event.type': [32, 4],
    'system_event.ndata': [36, 4],
    'system_event.data': [40, 128],
    kvm_valid_regs: [288, 8],
    kvm_dirty_regs: [296, 8],
  }),

  kvm_regs: layout(144, {
    rax: [0, 8], rbx: [8, 8], rcx: [16, 8], rdx: [24, 8], rsi: [32, 8], rdi: [40, 8],
    rsp: [48, 8], rbp: [56, 8], r8: [64, 8], r9: [72, 8], r10: [80, 8], r11: [88, 8],
    r12: [96, 8], r13: [104, 8], r14: [112, 8], r15: [120, 8], rip: [128, 8], rflags: [136, 8],
  }),

  kvm_sregs: layout(312, {
    cs: [0, 24], ds: [24, 24], es: [48, 24], fs: [72, 24], gs: [96, 24], ss: [120, 24],
    tr: [144, 24], ldt: [168, 24], gdt: [192, 16], idt: [208, 16],
    cr0: [224, 8], cr2: [232, 8], cr3: [240, 8], cr4: [248, 8], cr8: [256, 8],
    efer: [264, 8], apic_base: [272, 8], interrupt_bitmap: [280, 32],
  }),

  kvm_fpu: layout(416, {
    fpr: [0, 128], fcw: [128, 2], fsw: [130, 2], ftwx: [132, 1], last_opcode: [134, 2],
    last_ip: [136, 8], last_dp: [144, 8], xmm: [152, 256], mxcsr: [408, 4],
  }),

  kvm_userspace_memory_region: layout(32, {
    slot: [0, 4], flags: [4, 4], guest_phys_addr: [8, 8], memory_size: [16, 8], userspace_addr: [24, 8],
  }),

  // Header only: `entries` is a flexible array of kvm_cpuid_entry2.
  kvm_cpuid2: layout(8, { nent: [0, 4], entries: [8, 0] }),
  kvm_cpuid_entry2: layout(40, {
    function: [0, 4], index: [4, 4], flags: [8, 4], eax: [12, 4], ebx: [16, 4], ecx: [20, 4], edx: [24, 4],
  }),

  // Header only: `entries` is a flexible array of kvm_msr_entry.
  kvm_msrs: layout(8, { nmsrs: [0, 4], entries: [8, 0] }),
  kvm_msr_entry: layout(16, { index: [0, 4], data: [8, 8] }),

  kvm_irq_level: layout(8, { irq: [0, 4], status: [0, 4], level: [4, 4] }),
  kvm_pit_config: layout(64, { flags: [0, 4] }),
  kvm_ioeventfd: layout(64, { datamatch: [0, 8], addr: [8, 8], len: [16, 4], fd: [20, 4], flags: [24, 4] }),
  kvm_irqfd: layout(32, { fd: [0, 4], gsi: [4, 4], flags: [8, 4], resamplefd: [12, 4] }),
  kvm_lapic_state: layout(1024, { regs: [0, 1024] }),
  // KVM_GET/SET_IRQCHIP: chip_id 0 = master PIC, 1 = slave PIC, 2 = IOAPIC; `chip` holds its state.
  kvm_irqchip: layout(520, { chip_id: [0, 4], pad: [4, 4], chip: [8, 512] }),
  // The in-kernel IOAPIC as KVM_GET_IRQCHIP (chip 2) returns it: 24 redirection entries of 64 bits.
  kvm_ioapic_state: layout(216, { base_address: [0, 8], ioregsel: [8, 4], id: [12, 4], irr: [16, 4], pad: [20, 4], redirtbl: [24, 192] }),
  // KVM_SIGNAL_MSI: one message-signalled interrupt, written to the local APICs as a device would.
  kvm_msi: layout(32, { address_lo: [0, 4], address_hi: [4, 4], data: [8, 4], flags: [12, 4], devid: [16, 4], pad: [20, 12] }),
  kvm_pic_state: layout(16, {
    last_irr: [0, 1], irr: [1, 1], imr: [2, 1], isr: [3, 1], priority_add: [4, 1], irq_base: [5, 1],
    read_reg_select: [6, 1], poll: [7, 1], special_mask: [8, 1], init_state: [9, 1], auto_eoi: [10, 1],
    rotate_on_auto_eoi: [11, 1], special_fully_nested_mode: [12, 1], init4: [13, 1], elcr: [14, 1], elcr_mask: [15, 1],
  }),
  kvm_mp_state: layout(4, { mp_state: [0, 4] }),
  // Header only: `sigset` holds the kernel's 8-byte signal set.
  kvm_signal_mask: layout(4, { len: [0, 4], sigset: [4, 0] }),
  // Header only: `indices` is a flexible array of u32 MSR numbers.
  kvm_msr_list: layout(4, { nmsrs: [0, 4], indices: [4, 0] }),
  // KVM_GET_DIRTY_LOG: `dirty_bitmap` is a pointer to one bit per page of the slot.
  kvm_dirty_log: layout(16, { slot: [0, 4], padding1: [4, 4], dirty_bitmap: [8, 8] }),
  // KVM_GET/SET_CLOCK: kvmclock's nanoseconds, and (with KVM_CLOCK_REALTIME) the host's wall clock at that instant.
  kvm_clock_data: layout(48, { clock: [0, 8], flags: [8, 4], pad0: [12, 4], realtime: [16, 8], host_tsc: [24, 8], pad: [32, 16] }),
  // The in-kernel i8254 (KVM_GET/SET_PIT2): three channels of 24 bytes, then flags.
  kvm_pit_state2: layout(112, { channels: [0, 72], flags: [72, 4], reserved: [76, 36] }),
  kvm_vcpu_events: layout(64, {
    exception: [0, 8], interrupt: [8, 4], nmi: [12, 4], sipi_vector: [16, 4], flags: [20, 4], smi: [24, 4],
    triple_fault: [28, 1], reserved: [29, 26], exception_has_payload: [55, 1], exception_payload: [56, 8],
  }),
  kvm_debugregs: layout(128, { db: [0, 32], dr6: [32, 8], dr7: [40, 8], flags: [48, 8], reserved: [56, 72] }),
  // KVM_GET_XSAVE's 4 KiB; KVM_GET_XSAVE2 writes KVM_CAP_XSAVE2's size, the part past 4 KiB into `extra`.
  kvm_xsave: layout(4096, { region: [0, 4096], extra: [4096, 0] }),
  kvm_xcrs: layout(392, { nr_xcrs: [0, 4], flags: [4, 4], xcrs: [8, 256], padding: [264, 128] }),
  kvm_xcr: layout(16, { xcr: [0, 4], reserved: [4, 4], value: [8, 8] }),
  kvm_translation: layout(24, {
    linear_address: [0, 8], physical_address: [8, 8], valid: [16, 1], writeable: [17, 1], usermode: [18, 1],
  }),
} as const;

export type StructName = keyof typeof Layouts;

/** Offsets into kvm_run, flattened for the exit path (plain number reads, no lookups). */
export const RunOffset = {
  requestInterruptWindow: Layouts.kvm_run.fields.request_interrupt_window.offset,
  /** RFLAGS.IF of the guest as the run ended (KVM fills it in on every exit). */
  ifFlag: Layouts.kvm_run.fields.if_flag.offset,
  immediateExit: Layouts.kvm_run.fields.immediate_exit.offset,
  exitReason: Layouts.kvm_run.fields.exit_reason.offset,
  ioDirection: Layouts.kvm_run.fields['io.direction'].offset,
  ioSize: Layouts.kvm_run.fields['io.size'].offset,
  ioPort: Layouts.kvm_run.fields['io.port'].offset,
  ioCount: Layouts.kvm_run.fields['io.count'].offset,
  ioDataOffset: Layouts.kvm_run.fields['io.data_offset'].offset,
  mmioPhysAddr: Layouts.kvm_run.fields['mmio.phys_addr'].offset,
  mmioData: Layouts.kvm_run.fields['mmio.data'].offset,
  mmioLen: Layouts.kvm_run.fields['mmio.len'].offset,
  mmioIsWrite: Layouts.kvm_run.fields['mmio.is_write'].offset,
  failEntryReason: Layouts.kvm_run.fields['fail_entry.hardware_entry_failure_reason'].offset,
  failEntryCpu: Layouts.kvm_run.fields['fail_entry.cpu'].offset,
  internalSuberror: Layouts.kvm_run.fields['internal.suberror'].offset,
  internalNdata: Layouts.kvm_run.fields['internal.ndata'].offset,
  internalData: Layouts.kvm_run.fields['internal.data'].offset,
  systemEventType: Layouts.kvm_run.fields['system_event.type'].offset,
  systemEventNdata: Layouts.kvm_run.fields['system_event.ndata'].offset,
  systemEventData: Layouts.kvm_run.fields['system_event.data'].offset,
  debugException: Layouts.kvm_run.fields['debug.arch.exception'].offset,
  debugPc: Layouts.kvm_run.fields['debug.arch.pc'].offset,
  hardwareExitReason: Layouts.kvm_run.fields['hw.hardware_exit_reason'].offset,
} as const;
