// File-descriptor wrappers for /dev/kvm, a VM and a vCPU: one method per
// ioctl, each throwing a KvmError that names the ioctl and the errno.
import {
  decodeCpuidEntry, decodeRegisters, decodeSpecialRegisters, encodeCpuidEntry, encodeRegisters,
  encodeSpecialRegisters, encodeStruct, type CpuidEntry, type MsrEntry, type Registers, type SpecialRegisters,
} from './codec.ts';
import { KvmError } from './errors.ts';
import { Capability, Ioctl, type CapabilityName, type IoctlName } from './ioctls.ts';
import { Errno, lastErrno, libcCalls } from './libc.ts';
import { closeFd, mapAnonymous, mapShared, signalThread, SIGUSR2, unmap, viewOf, type HostMapping } from './host.ts';
import { Layouts } from './structs.ts';

const O_RDWR = 0o2;
const O_CLOEXEC = 0o2000000;

function check(result: number, name: IoctlName, detail?: string): number {
  if (result < 0) throw new KvmError(name, lastErrno(), detail);
  return result;
}

// A signal (a profiler's SIGPROF, a kick) can interrupt any ioctl; only
// KVM_RUN gives EINTR a meaning. The others are simply asked again.
function ioctlValue(fd: number, name: IoctlName, value: number | bigint = 0, detail?: string): number {
  let result: number;
  do result = libcCalls.ioctlWithValue(fd, Ioctl[name], value);
  while (result < 0 && lastErrno() === Errno.EINTR);
  return check(result, name, detail);
}

function ioctlBuffer(fd: number, name: IoctlName, buf: Uint8Array, detail?: string): number {
  let result: number;
  do result = libcCalls.ioctlWithBuffer(fd, Ioctl[name], buf);
  while (result < 0 && lastErrno() === Errno.EINTR);
  return check(result, name, detail);
}

function viewOfBytes(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A struct that tsvmm only saves and restores, read whole. */
function getStruct(fd: number, name: IoctlName, size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  ioctlBuffer(fd, name, bytes);
  return bytes;
}

/** Writes back what getStruct read; a buffer of another size is not that struct. */
function setStruct(fd: number, name: IoctlName, bytes: Uint8Array, size: number): void {
  if (bytes.length !== size) throw new Error(`${name}: the state is ${bytes.length} bytes, KVM's struct is ${size}`);
  ioctlBuffer(fd, name, bytes);
}

/** What KVM_GET_MSRS made of a list of MSRs: the values it read, and the MSRs it refused. */
export interface MsrRead {
  entries: MsrEntry[];
  unreadable: number[];
}

/** kvmclock as KVM_GET_CLOCK reports it (kvm_clock_data). */
export interface ClockData {
  /** The guest's kvmclock, in nanoseconds. */
  clock: bigint;
  /** ClockFlag bits: which of the fields below are valid, and whether the clock is stable across vCPUs. */
  flags: number;
  /** The host's CLOCK_REALTIME in nanoseconds at the same instant (KVM_CLOCK_REALTIME). */
  realtime: bigint;
  /** The host's TSC at the same instant (KVM_CLOCK_HOST_TSC). */
  hostTsc: bigint;
}

export const KVM_API_VERSION = 12;

/** /dev/kvm: the system-wide KVM handle. */
export class KvmSystem {
  private constructor(readonly fd: number, readonly path: string) {}

  static open(path = '/dev/kvm'): KvmSystem {
    const fd = libcCalls.open(path, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0) throw new KvmError(`open ${path}`, lastErrno());
    const kvm = new KvmSystem(fd, path);
    const version = kvm.apiVersion();
    if (version !== KVM_API_VERSION) {
      kvm.close();
      throw new Error(`${path}: KVM API version ${version}, tsvmm needs ${KVM_API_VERSION}`);
    }
    return kvm;
  }

  apiVersion(): number {
    return ioctlValue(this.fd, 'KVM_GET_API_VERSION');
  }

  /** KVM_CHECK_EXTENSION: 0 when absent, otherwise a capability-specific value (often 1). */
  checkExtension(cap: CapabilityName): number {
    return ioctlValue(this.fd, 'KVM_CHECK_EXTENSION', Capability[cap], cap);
  }

  vcpuMmapSize(): number {
    return ioctlValue(this.fd, 'KVM_GET_VCPU_MMAP_SIZE');
  }

  /**
   * KVM_GET_MSR_INDEX_LIST: the MSRs a VMM should save and restore. Asked
   * twice: with room for none, KVM fails with E2BIG and says how many.
   */
  msrIndexList(): number[] {
    const header = Layouts.kvm_msr_list.size;
    const probe = new Uint8Array(header);
    if (libcCalls.ioctlWithBuffer(this.fd, Ioctl.KVM_GET_MSR_INDEX_LIST, probe) === 0) return [];
    if (lastErrno() !== Errno.E2BIG) throw new KvmError('KVM_GET_MSR_INDEX_LIST', lastErrno());
    const count = viewOfBytes(probe).getUint32(0, true);
    const bytes = new Uint8Array(header + count * 4);
    const view = viewOfBytes(bytes);
    view.setUint32(0, count, true);
    ioctlBuffer(this.fd, 'KVM_GET_MSR_INDEX_LIST', bytes);
    const indices: number[] = [];
    for (let i = 0; i < view.getUint32(0, true); i++) indices.push(view.getUint32(header + i * 4, true));
    return indices;
  }

  /** The CPUID leaves this host's KVM can present to a guest. */
  supportedCpuid(): CpuidEntry[] {
    // Ask with a generous buffer; KVM fails with E2BIG if it is too small.
    for (let capacity = 128; ; capacity *= 2) {
      const bytes = new Uint8Array(Layouts.kvm_cpuid2.size + capacity * Layouts.kvm_cpuid_entry2.size);
      const view = viewOfBytes(bytes);
      view.setUint32(0, capacity, true);
      const result = libcCalls.ioctlWithBuffer(this.fd, Ioctl.KVM_GET_SUPPORTED_CPUID, bytes);
      if (result < 0) {
        const errno = lastErrno();
        if (errno === Errno.E2BIG && capacity < 4096) continue;
        throw new KvmError('KVM_GET_SUPPORTED_CPUID', errno);
      }
      const count = view.getUint32(0, true);
      const entries: CpuidEntry[] = [];
      for (let i = 0; i < count; i++) {
        entries.push(decodeCpuidEntry(view, Layouts.kvm_cpuid2.size + i * Layouts.kvm_cpuid_entry2.size));
      }
      return entries;
    }
  }

  createVm(): VmFd {
    return new VmFd(ioctlValue(this.fd, 'KVM_CREATE_VM', 0), this.vcpuMmapSize());
  }

  close(): void {
    closeFd(this.fd);
  }
}

export interface IoEventFdRequest {
  /** Guest-physical address (MMIO) or port (PIO). */
  address: bigint | number;
  /** Access width that triggers it: 1, 2, 4 or 8 (0 = any, MMIO only). */
  length: number;
  fd: number;
  pio: boolean;
  /** Trigger only on writes of this value. */
  datamatch?: bigint | number;
  deassign?: boolean;
}

const KVM_IOEVENTFD_FLAG_DATAMATCH = 1 << 0;
const KVM_IOEVENTFD_FLAG_PIO = 1 << 1;
const KVM_IOEVENTFD_FLAG_DEASSIGN = 1 << 2;
const KVM_IRQFD_FLAG_DEASSIGN = 1 << 0;
const KVM_PIT_SPEAKER_DUMMY = 1;
/** KVM_GET/SET_IRQCHIP chip_id of the IOAPIC. */
const IOAPIC_CHIP = 2;

/** A VM: memory slots, the in-kernel interrupt controllers, vCPU creation. */
export class VmFd {
  private readonly irqLevel = new Uint8Array(Layouts.kvm_irq_level.size);
  private readonly irqLevelView = viewOfBytes(this.irqLevel);
  private readonly msi = new Uint8Array(Layouts.kvm_msi.size);
  private readonly msiView = viewOfBytes(this.msi);
  /** Native memory KVM_GET_DIRTY_LOG writes a slot's bitmap into (the struct holds a pointer). */
  private dirtyBitmap: HostMapping | null = null;

  constructor(readonly fd: number, readonly vcpuMmapSize: number) {}

  /** Another thread's handle on the VM (fds are process-wide). */
  static attach(fd: number): VmFd {
    return new VmFd(fd, 0);
  }

  /** KVM_CHECK_EXTENSION on the VM: what this VM (not only the host) supports. */
  checkExtension(cap: CapabilityName): number {
    return ioctlValue(this.fd, 'KVM_CHECK_EXTENSION', Capability[cap], cap);
  }

  setUserMemoryRegion(slot: number, guestPhysAddr: number, size: number, hostAddress: bigint, flags = 0): void {
    const region = encodeStruct(Layouts.kvm_userspace_memory_region, {
      slot, flags, guest_phys_addr: BigInt(guestPhysAddr), memory_size: BigInt(size), userspace_addr: hostAddress,
    });
    ioctlBuffer(this.fd, 'KVM_SET_USER_MEMORY_REGION', region, `slot ${slot} at 0x${guestPhysAddr.toString(16)}`);
  }

  /** Three pages of guest-physical space that Intel VT-x needs for real-mode emulation. */
  setTssAddress(address: number): void {
    ioctlValue(this.fd, 'KVM_SET_TSS_ADDR', address);
  }

  setIdentityMapAddress(address: number): void {
    const bytes = new Uint8Array(8);
    viewOfBytes(bytes).setBigUint64(0, BigInt(address), true);
    ioctlBuffer(this.fd, 'KVM_SET_IDENTITY_MAP_ADDR', bytes);
  }

  createIrqchip(): void {
    ioctlValue(this.fd, 'KVM_CREATE_IRQCHIP');
  }

  /** The state of an in-kernel interrupt controller (KVM_GET_IRQCHIP): `chip` 0/1 = master/slave PIC, 2 = IOAPIC. */
  getIrqchip(chip: number): Uint8Array {
    const bytes = new Uint8Array(Layouts.kvm_irqchip.size);
    viewOfBytes(bytes).setUint32(Layouts.kvm_irqchip.fields.chip_id.offset, chip, true);
    ioctlBuffer(this.fd, 'KVM_GET_IRQCHIP', bytes);
    return bytes.slice(Layouts.kvm_irqchip.fields.chip.offset);
  }

  setIrqchip(chip: number, state: Uint8Array): void {
    const bytes = new Uint8Array(Layouts.kvm_irqchip.size);
    viewOfBytes(bytes).setUint32(Layouts.kvm_irqchip.fields.chip_id.offset, chip, true);
    bytes.set(state.subarray(0, Layouts.kvm_irqchip.fields.chip.size), Layouts.kvm_irqchip.fields.chip.offset);
    ioctlBuffer(this.fd, 'KVM_SET_IRQCHIP', bytes);
  }

  /** Sets an interrupt line of the in-kernel PIC/IOAPIC; callable from any thread. */
  setIrqLine(irq: number, level: boolean): void {
    this.irqLevelView.setUint32(0, irq, true);
    this.irqLevelView.setUint32(4, level ? 1 : 0, true);
    ioctlBuffer(this.fd, 'KVM_IRQ_LINE', this.irqLevel, `irq ${irq}`);
  }

  /**
   * setIrqLine that also says what the interrupt controllers made of it
   * (KVM_IRQ_LINE_STATUS, KVM_CAP_IRQ_INJECT_STATUS): > 0 a new request,
   * delivered to that many CPUs; 0 coalesced (the line's previous request is
   * still pending, not yet acknowledged by the guest); < 0 ignored (masked).
   */
  setIrqLineStatus(irq: number, level: boolean): number {
    this.irqLevelView.setUint32(0, irq, true);
    this.irqLevelView.setUint32(4, level ? 1 : 0, true);
    ioctlBuffer(this.fd, 'KVM_IRQ_LINE_STATUS', this.irqLevel, `irq ${irq}`);
    // The kernel writes the status over the irq number (a union).
    return this.irqLevelView.getInt32(0, true);
  }

  /**
   * The redirection table entry of IOAPIC input `pin`, as the guest last
   * programmed it (KVM_GET_IRQCHIP of the IOAPIC): all 64 bits, including the
   * ones KVM's IOAPIC does not interpret (an interrupt-remapping index).
   */
  ioapicRedirection(pin: number): bigint {
    const ioapic = Layouts.kvm_ioapic_state.fields;
    const state = this.getIrqchip(IOAPIC_CHIP);
    return viewOfBytes(state).getBigUint64(ioapic.redirtbl.offset + 8 * pin, true);
  }

  /**
   * Delivers one message-signalled interrupt (KVM_SIGNAL_MSI), as a device's
   * write of `data` to `address` in the 0xFEExxxxx window would; callable from
   * any thread. Returns > 0 when delivered, 0 when the guest blocked it.
   */
  signalMsi(address: number, data: number): number {
    this.msiView.setUint32(0, address >>> 0, true);
    this.msiView.setUint32(4, Math.floor(address / 2 ** 32) >>> 0, true);
    this.msiView.setUint32(8, data >>> 0, true);
    return ioctlBuffer(this.fd, 'KVM_SIGNAL_MSI', this.msi, `address 0x${address.toString(16)} data 0x${data.toString(16)}`);
  }

  /**
   * KVM's in-kernel i8254. KVM_PIT_SPEAKER_DUMMY, despite its name, is what
   * makes KVM also serve port 0x61 (channel 2's gate and OUT): without it a
   * guest could not time anything with channel 2.
   */
  createPit2(): void {
    ioctlBuffer(this.fd, 'KVM_CREATE_PIT2', encodeStruct(Layouts.kvm_pit_config, { flags: KVM_PIT_SPEAKER_DUMMY }));
  }

  ioeventfd(request: IoEventFdRequest): void {
    let flags = 0;
    if (request.datamatch !== undefined) flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
    if (request.pio) flags |= KVM_IOEVENTFD_FLAG_PIO;
    if (request.deassign) flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
    const bytes = encodeStruct(Layouts.kvm_ioeventfd, {
      datamatch: BigInt(request.datamatch ?? 0), addr: BigInt(request.address), len: request.length, fd: request.fd, flags,
    });
    ioctlBuffer(this.fd, 'KVM_IOEVENTFD', bytes, `${request.pio ? 'port' : 'address'} 0x${request.address.toString(16)}`);
  }

  irqfd(fd: number, gsi: number, deassign = false): void {
    const bytes = encodeStruct(Layouts.kvm_irqfd, { fd, gsi, flags: deassign ? KVM_IRQFD_FLAG_DEASSIGN : 0 });
    ioctlBuffer(this.fd, 'KVM_IRQFD', bytes, `gsi ${gsi}`);
  }

  /** KVM_GET_CLOCK: the guest's kvmclock (the same for every vCPU of the VM). */
  getClock(): ClockData {
    const bytes = getStruct(this.fd, 'KVM_GET_CLOCK', Layouts.kvm_clock_data.size);
    const view = viewOfBytes(bytes);
    const f = Layouts.kvm_clock_data.fields;
    return {
      clock: view.getBigUint64(f.clock.offset, true),
      flags: view.getUint32(f.flags.offset, true),
      realtime: view.getBigUint64(f.realtime.offset, true),
      hostTsc: view.getBigUint64(f.host_tsc.offset, true),
    };
  }

  /**
   * KVM_SET_CLOCK. KVM reads only `clock`, and `realtime` when `flags` has
   * KVM_CLOCK_REALTIME (it then adds the wall time elapsed since); kernels
   * before 5.16 refuse any flag.
   */
  setClock(clock: bigint, flags = 0, realtime = 0n): void {
    ioctlBuffer(this.fd, 'KVM_SET_CLOCK', encodeStruct(Layouts.kvm_clock_data, { clock, flags, realtime }));
  }

  /** KVM_GET_PIT2: the in-kernel i8254's state (kvm_pit_state2), for saving only. */
  getPit2(): Uint8Array {
    return getStruct(this.fd, 'KVM_GET_PIT2', Layouts.kvm_pit_state2.size);
  }

  setPit2(state: Uint8Array): void {
    setStruct(this.fd, 'KVM_SET_PIT2', state, Layouts.kvm_pit_state2.size);
  }

  /**
   * KVM_GET_DIRTY_LOG: one bit per page of memory slot `slot` (`pages` long),
   * set for each page the guest wrote since the last call, which clears them.
   * The slot must have been added with KVM_MEM_LOG_DIRTY_PAGES. Writes by
   * tsvmm itself through its own view of RAM are not in it.
   */
  getDirtyLog(slot: number, pages: number): Uint8Array {
    // KVM writes whole longs: the bitmap is rounded up to 64 pages.
    const size = Math.ceil(pages / 64) * 8;
    if (this.dirtyBitmap === null || this.dirtyBitmap.size < size) {
      if (this.dirtyBitmap !== null) unmap(this.dirtyBitmap);
      this.dirtyBitmap = mapAnonymous(Math.max(size, 4096));
    }
    const request = encodeStruct(Layouts.kvm_dirty_log, { slot, dirty_bitmap: this.dirtyBitmap.address });
    ioctlBuffer(this.fd, 'KVM_GET_DIRTY_LOG', request, `slot ${slot}`);
    return new Uint8Array(viewOf(this.dirtyBitmap.address, size)).slice();
  }

  createVcpu(id: number): VcpuFd {
    const fd = ioctlValue(this.fd, 'KVM_CREATE_VCPU', id, `vCPU ${id}`);
    return VcpuFd.attach(fd, this.vcpuMmapSize);
  }

  close(): void {
    if (this.dirtyBitmap !== null) unmap(this.dirtyBitmap);
    this.dirtyBitmap = null;
    closeFd(this.fd);
  }
}

/** A vCPU: its registers, its CPUID, and KVM_RUN with its shared kvm_run page. */
export class VcpuFd {
  private readonly regsBytes = new Uint8Array(Layouts.kvm_regs.size);
  private readonly sregsBytes = new Uint8Array(Layouts.kvm_sregs.size);
  private readonly runRequest = Ioctl.KVM_RUN;

  private constructor(
    readonly fd: number,
    /** The mmap'd kvm_run page. Valid in the thread that attached it; other threads attach their own view. */
    readonly runMapping: HostMapping,
    readonly run: DataView,
    readonly runBytes: Uint8Array,
  ) {}

  /**
   * Wraps a vCPU fd and maps its kvm_run page. A worker thread calls this
   * with the fd number the main thread created (fds are process-wide).
   */
  static attach(fd: number, mmapSize: number): VcpuFd {
    const mapping = mapShared(fd, mmapSize, 'kvm_run page');
    return VcpuFd.fromMapping(fd, mapping.address, mmapSize);
  }

  /** Another thread's handle on a vCPU: same fd, its own view of the same kvm_run page. */
  static fromMapping(fd: number, runPageAddress: bigint, runPageSize: number): VcpuFd {
    const buffer = viewOf(runPageAddress, runPageSize);
    return new VcpuFd(fd, { address: runPageAddress, size: runPageSize }, new DataView(buffer), new Uint8Array(buffer));
  }

  /**
   * Makes the vCPU leave KVM_RUN (or not enter it): set immediate_exit, then
   * signal its thread. Either alone has a race; together, the next or the
   * current KVM_RUN returns EINTR. Callable from any thread. Returns false
   * when the vCPU thread has already exited (nothing left to interrupt).
   */
  kick(threadId: number): boolean {
    this.run.setUint8(Layouts.kvm_run.fields.immediate_exit.offset, 1);
    return signalThread(threadId, SIGUSR2);
  }

  /**
   * KVM_RUN. Returns 0, or -1 when a signal interrupted it (EINTR: the
   * exit_reason is then KVM_EXIT_INTR). Any other failure throws.
   */
  enter(): number {
    for (;;) {
      if (libcCalls.ioctlWithValue(this.fd, this.runRequest, 0) === 0) return 0;
      const errno = lastErrno();
      if (errno === Errno.EINTR) return -1;
      // An AP waiting for its start-up IPI returns EAGAIN once INIT/SIPI woke
      // it (KVM's kvm_arch_vcpu_ioctl_run): enter again, now to run it.
      if (errno !== Errno.EAGAIN) throw new KvmError('KVM_RUN', errno);
    }
  }

  getRegisters(): Registers {
    ioctlBuffer(this.fd, 'KVM_GET_REGS', this.regsBytes);
    return decodeRegisters(viewOfBytes(this.regsBytes));
  }

  setRegisters(regs: Registers): void {
    encodeRegisters(viewOfBytes(this.regsBytes), regs);
    ioctlBuffer(this.fd, 'KVM_SET_REGS', this.regsBytes);
  }

  getSpecialRegisters(): SpecialRegisters {
    ioctlBuffer(this.fd, 'KVM_GET_SREGS', this.sregsBytes);
    return decodeSpecialRegisters(viewOfBytes(this.sregsBytes));
  }

  setSpecialRegisters(sregs: SpecialRegisters): void {
    encodeSpecialRegisters(viewOfBytes(this.sregsBytes), sregs);
    ioctlBuffer(this.fd, 'KVM_SET_SREGS', this.sregsBytes);
  }

  /**
   * KVM_TRANSLATE: a guest-virtual (linear) address through the vCPU's
   * current page tables, or null when it is not mapped.
   */
  translate(linearAddress: bigint): bigint | null {
    const bytes = encodeStruct(Layouts.kvm_translation, { linear_address: linearAddress });
    ioctlBuffer(this.fd, 'KVM_TRANSLATE', bytes);
    const view = viewOfBytes(bytes);
    if (view.getUint8(Layouts.kvm_translation.fields.valid.offset) === 0) return null;
    return view.getBigUint64(Layouts.kvm_translation.fields.physical_address.offset, true);
  }

  /**
   * KVM_SET_SIGNAL_MASK: the signal mask in force while this vCPU is inside
   * KVM_RUN. With the kick signal blocked in the thread but not in this mask,
   * a kick that arrives between two KVM_RUNs stays pending and ends the next
   * one at once, instead of being lost (what QEMU does with SIG_IPI).
   */
  setSignalMask(kernelSigset: bigint): void {
    const bytes = new Uint8Array(Layouts.kvm_signal_mask.size + 8);
    const view = viewOfBytes(bytes);
    view.setUint32(0, 8, true);
    view.setBigUint64(4, kernelSigset, true);
    ioctlBuffer(this.fd, 'KVM_SET_SIGNAL_MASK', bytes);
  }

  /** KVM_GET_MP_STATE: 0 runnable, 3 halted (waiting for an interrupt), ... */
  getMpState(): number {
    const bytes = new Uint8Array(Layouts.kvm_mp_state.size);
    ioctlBuffer(this.fd, 'KVM_GET_MP_STATE', bytes);
    return viewOfBytes(bytes).getUint32(0, true);
  }

  setMpState(state: number): void {
    ioctlBuffer(this.fd, 'KVM_SET_MP_STATE', encodeStruct(Layouts.kvm_mp_state, { mp_state: state }), `mp_state ${state}`);
  }

  /**
   * Completes the exit KVM_RUN last returned without running the guest on: a
   * PIO or MMIO read's data goes into the guest's register and RIP moves past
   * the instruction only at the next KVM_RUN, so a state read before that
   * would replay it. KVM_RUN with immediate_exit set does just that and
   * returns EINTR (the KVM API doc's advice before saving a vCPU). Returns
   * false when the completion went on into another exit instead (the next
   * batch of a string instruction, now in kvm_run): serve it, then ask again.
   */
  completePendingExit(): boolean {
    const immediateExit = Layouts.kvm_run.fields.immediate_exit.offset;
    this.run.setUint8(immediateExit, 1);
    try {
      return this.enter() < 0;
    } finally {
      this.run.setUint8(immediateExit, 0);
    }
  }

  /** KVM_GET_FPU: x87 and SSE state (kvm_fpu), where KVM has no XSAVE. */
  getFpu(): Uint8Array {
    return getStruct(this.fd, 'KVM_GET_FPU', Layouts.kvm_fpu.size);
  }

  setFpu(state: Uint8Array): void {
    setStruct(this.fd, 'KVM_SET_FPU', state, Layouts.kvm_fpu.size);
  }

  /**
   * The XSAVE area (x87, SSE, AVX, ...). `size` is KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2):
   * above 4 KiB (AMX's state, say) only KVM_GET_XSAVE2 returns all of it.
   */
  getXsave(size: number = Layouts.kvm_xsave.size): Uint8Array {
    if (size > Layouts.kvm_xsave.size) return getStruct(this.fd, 'KVM_GET_XSAVE2', size);
    return getStruct(this.fd, 'KVM_GET_XSAVE', Layouts.kvm_xsave.size);
  }

  /** KVM_SET_XSAVE takes either size: KVM reads as many bytes as KVM_CAP_XSAVE2 says. */
  setXsave(state: Uint8Array): void {
    if (state.length < Layouts.kvm_xsave.size) throw new Error(`KVM_SET_XSAVE: the state is ${state.length} bytes, at least ${Layouts.kvm_xsave.size} expected`);
    ioctlBuffer(this.fd, 'KVM_SET_XSAVE', state);
  }

  /** KVM_GET_XCRS: the extended control registers (XCR0), with KVM_CAP_XCRS. */
  getXcrs(): Uint8Array {
    return getStruct(this.fd, 'KVM_GET_XCRS', Layouts.kvm_xcrs.size);
  }

  setXcrs(state: Uint8Array): void {
    setStruct(this.fd, 'KVM_SET_XCRS', state, Layouts.kvm_xcrs.size);
  }

  /** KVM_GET_VCPU_EVENTS: pending or injected exceptions, interrupts, NMIs and SIPIs, the interrupt shadow. */
  getVcpuEvents(): Uint8Array {
    return getStruct(this.fd, 'KVM_GET_VCPU_EVENTS', Layouts.kvm_vcpu_events.size);
  }

  setVcpuEvents(state: Uint8Array): void {
    setStruct(this.fd, 'KVM_SET_VCPU_EVENTS', state, Layouts.kvm_vcpu_events.size);
  }

  /** KVM_GET_DEBUGREGS: DR0-DR3, DR6, DR7. */
  getDebugRegs(): Uint8Array {
    return getStruct(this.fd, 'KVM_GET_DEBUGREGS', Layouts.kvm_debugregs.size);
  }

  setDebugRegs(state: Uint8Array): void {
    setStruct(this.fd, 'KVM_SET_DEBUGREGS', state, Layouts.kvm_debugregs.size);
  }

  /** KVM_GET_TSC_KHZ: the guest TSC's frequency (KVM_CAP_GET_TSC_KHZ). */
  getTscKhz(): number {
    return ioctlValue(this.fd, 'KVM_GET_TSC_KHZ');
  }

  /** KVM_SET_TSC_KHZ: scales the guest TSC to `khz` (KVM_CAP_TSC_CONTROL; hardware TSC scaling). */
  setTscKhz(khz: number): void {
    ioctlValue(this.fd, 'KVM_SET_TSC_KHZ', khz, `${khz} kHz`);
  }

  /** KVM_GET_CPUID2: the CPUID table this vCPU was given. */
  getCpuid(): CpuidEntry[] {
    const header = Layouts.kvm_cpuid2.size;
    const stride = Layouts.kvm_cpuid_entry2.size;
    for (let capacity = 128; ; capacity *= 2) {
      const bytes = new Uint8Array(header + capacity * stride);
      const view = viewOfBytes(bytes);
      view.setUint32(0, capacity, true);
      if (libcCalls.ioctlWithBuffer(this.fd, Ioctl.KVM_GET_CPUID2, bytes) < 0) {
        const errno = lastErrno();
        if (errno === Errno.E2BIG && capacity < 4096) continue;
        throw new KvmError('KVM_GET_CPUID2', errno);
      }
      const entries: CpuidEntry[] = [];
      for (let i = 0; i < view.getUint32(0, true); i++) entries.push(decodeCpuidEntry(view, header + i * stride));
      return entries;
    }
  }

  /** The in-kernel local APIC's register page (KVM_GET_LAPIC), 1 KiB. */
  getLapic(): Uint8Array {
    const bytes = new Uint8Array(Layouts.kvm_lapic_state.size);
    ioctlBuffer(this.fd, 'KVM_GET_LAPIC', bytes);
    return bytes;
  }

  setLapic(bytes: Uint8Array): void {
    ioctlBuffer(this.fd, 'KVM_SET_LAPIC', bytes);
  }

  setCpuid(entries: readonly CpuidEntry[]): void {
    const header = Layouts.kvm_cpuid2.size;
    const stride = Layouts.kvm_cpuid_entry2.size;
    const bytes = new Uint8Array(header + entries.length * stride);
    const view = viewOfBytes(bytes);
    view.setUint32(0, entries.length, true);
    entries.forEach((entry, i) => encodeCpuidEntry(view, header + i * stride, entry));
    ioctlBuffer(this.fd, 'KVM_SET_CPUID2', bytes);
  }

  setMsrs(entries: readonly MsrEntry[]): void {
    const bytes = this.msrBuffer(entries);
    const written = ioctlBuffer(this.fd, 'KVM_SET_MSRS', bytes);
    if (written !== entries.length) {
      const failed = entries[written]!;
      throw new Error(`KVM_SET_MSRS: KVM refused MSR 0x${failed.index.toString(16)} (${written} of ${entries.length} set)`);
    }
  }

  /**
   * KVM_GET_MSRS. KVM stops at the first MSR it cannot read; this asks again
   * after it, so every readable MSR is read and each refused one is named.
   */
  getMsrs(indices: readonly number[]): MsrRead {
    const out: MsrRead = { entries: [], unreadable: [] };
    for (let start = 0; start < indices.length;) {
      const bytes = this.msrBuffer(indices.slice(start).map((index) => ({ index, data: 0n })));
      const read = ioctlBuffer(this.fd, 'KVM_GET_MSRS', bytes);
      const view = viewOfBytes(bytes);
      for (let i = 0; i < read; i++) {
        const at = Layouts.kvm_msrs.size + i * Layouts.kvm_msr_entry.size;
        out.entries.push({ index: view.getUint32(at, true), data: view.getBigUint64(at + 8, true) });
      }
      if (start + read < indices.length) out.unreadable.push(indices[start + read]!);
      start += read + 1;
    }
    return out;
  }

  private msrBuffer(entries: readonly MsrEntry[]): Uint8Array {
    const header = Layouts.kvm_msrs.size;
    const stride = Layouts.kvm_msr_entry.size;
    const bytes = new Uint8Array(header + entries.length * stride);
    const view = viewOfBytes(bytes);
    view.setUint32(0, entries.length, true);
    entries.forEach((entry, i) => {
      view.setUint32(header + i * stride, entry.index, true);
      view.setBigUint64(header + i * stride + 8, entry.data, true);
    });
    return bytes;
  }

  close(): void {
    closeFd(this.fd);
  }
}
