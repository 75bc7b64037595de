// The vCPU run loop: KVM_RUN, decode why it returned, hand the access to the
// PIO or MMIO bus, put the result back into kvm_run, and enter again.
//
// This is the product's hot path. It reads kvm_run through one DataView over
// the mmap'd page, with precomputed offsets, and allocates nothing for PIO
// and 1/2/4-byte MMIO exits.
import {
  ExitReason, InternalError, IoDirection, MpState, RunOffset, SystemEvent, exitReasonName, internalErrorDescription,
  systemEventName, type VcpuFd,
} from '../kvm/index.ts';
import type { AddressSpace } from '../bus/index.ts';
import type { GuestMemory } from '../memory/index.ts';
import type { ExitTracer } from './exit-trace.ts';
import { instructionName } from './instruction-names.ts';
import type { KernelSymbols } from './kernel-symbols.ts';
import { VM_FAILURE_STATUS, type VcpuStop } from './stop.ts';
import type { DeviceLock } from './device-lock.ts';
import { hex } from '../hex.ts';

/** Words of the control block another thread uses to reach a running vCPU. */
export const Control = {
  /** A Command: run, stop at the next exit, or pause there (set before kicking the thread). */
  COMMAND: 0,
  /** The vCPU thread's kernel thread id, for tgkill. */
  THREAD_ID: 1,
  /**
   * Set (with a kick) by the main thread's watchdog to a new check number:
   * check for a halt nothing can end.
   */
  CHECK_HALT: 2,
  /** The last check number at which this vCPU found itself halted for good (0: not). */
  STUCK_AT_CHECK: 3,
  /** Where it was then, for the message: RIP's low and high words; -1 in both: never started. */
  STUCK_RIP_LOW: 4,
  STUCK_RIP_HIGH: 5,
  /** 1 while the vCPU thread is parked by Command.PAUSE, out of KVM_RUN: its vCPU's state may be read and written then. */
  PAUSED: 6,
  WORDS: 7,
} as const;

/** A control block per vCPU, in one SharedArrayBuffer: vCPU i's words start at i * Control.WORDS. */
export function createControlBlocks(cpus: number): SharedArrayBuffer {
  return new SharedArrayBuffer(cpus * Control.WORDS * 4);
}

/** vCPU `id`'s control block in `buffer`. */
export function controlBlock(buffer: SharedArrayBuffer, id: number): Int32Array {
  return new Int32Array(buffer, id * Control.WORDS * 4, Control.WORDS);
}

/**
 * What the main thread asks of a vCPU thread. PAUSE parks the thread outside
 * KVM_RUN (it raises Control.PAUSED) until the command changes back to RUN,
 * or to STOP.
 */
export const Command = { RUN: 0, STOP: 1, PAUSE: 2 } as const;

const {
  KVM_EXIT_IO, KVM_EXIT_MMIO, KVM_EXIT_HLT, KVM_EXIT_INTR, KVM_EXIT_SHUTDOWN, KVM_EXIT_FAIL_ENTRY,
  KVM_EXIT_INTERNAL_ERROR, KVM_EXIT_SYSTEM_EVENT, KVM_EXIT_DEBUG, KVM_EXIT_IRQ_WINDOW_OPEN,
} = ExitReason;
const IO_OUT = IoDirection.KVM_EXIT_IO_OUT;

export interface VcpuOptions {
  id: number;
  fd: VcpuFd;
  pio: AddressSpace;
  mmio: AddressSpace;
  memory: GuestMemory;
  /** Every vCPU's control block (see Control); this one's is `controls[id]`. */
  controls: readonly Int32Array[];
  /** Serialises device access between vCPU threads; null with one vCPU. */
  deviceLock?: DeviceLock | null;
  tracer?: ExitTracer | null;
  /** True when an in-kernel irqchip exists, so a halted vCPU can be woken by an interrupt. */
  hasIrqchip?: boolean;
  /** Kernel symbols, to name where a Linux guest stopped. */
  symbols?: KernelSymbols | null;
  /**
   * Runs when KVM_RUN was interrupted by a signal: another thread's kick (host
   * input waiting) or this thread's device timer. Host-side events reach the
   * guest here.
   */
  onKick?: (() => void) | null;
  /** Runs when the vCPU continues after a pause: guest time may have been restored meanwhile. */
  onResume?: (() => void) | null;
  /** The machine's sleep (ACPI S3), for a vCPU that may be put to sleep (requestSleep). */
  sleep?: VcpuSleep | null;
}

/** What a sleeping vCPU waits for, and how it wakes. */
export interface VcpuSleep {
  /** When the machine next wakes (host ms, as Date.now()); null: nothing can wake it. */
  wakeAtMs(): number | null;
  /** The machine wakes: the vCPU's state becomes firmware's resume, set through `fd`. */
  wake(fd: VcpuFd): void;
}

/** How long a sleeping vCPU waits at most between looks at its command (a pause has no notify). */
const SLEEP_POLL_MS = 100;

export class Vcpu {
  readonly id: number;
  readonly fd: VcpuFd;
  private readonly run: DataView;
  private readonly pio: AddressSpace;
  private readonly mmio: AddressSpace;
  private readonly memory: GuestMemory;
  private readonly control: Int32Array;
  private readonly controls: readonly Int32Array[];
  private readonly deviceLock: DeviceLock | null;
  private readonly tracer: ExitTracer | null;
  private readonly hasIrqchip: boolean;
  private readonly symbols: KernelSymbols | null;
  private readonly onKick: (() => void) | null;
  private readonly onResume: (() => void) | null;
  private readonly sleep: VcpuSleep | null;
  private pendingStop: VcpuStop | null = null;
  private sleepRequested = false;
  /** Exits handled, by any reason (cheap: one increment). */
  exits = 0;

  constructor(options: VcpuOptions) {
    this.id = options.id;
    this.fd = options.fd;
    this.run = options.fd.run;
    this.pio = options.pio;
    this.mmio = options.mmio;
    this.memory = options.memory;
    this.controls = options.controls;
    this.control = options.controls[options.id]!;
    this.deviceLock = options.deviceLock ?? null;
    this.tracer = options.tracer ?? null;
    this.hasIrqchip = options.hasIrqchip ?? false;
    this.symbols = options.symbols ?? null;
    this.onKick = options.onKick ?? null;
    this.onResume = options.onResume ?? null;
    this.sleep = options.sleep ?? null;
  }

  /** A device asks the VM to end (debug-exit, poweroff): the loop returns after this exit. */
  requestStop(stop: VcpuStop): void {
    if (this.pendingStop === null) this.pendingStop = stop;
  }

  /**
   * The guest put the machine to sleep (ACPI S3) with this exit: once the
   * exit's instruction is complete, the vCPU stops running the guest until
   * the machine wakes (see sleepUntilWake). False when it cannot sleep.
   */
  requestSleep(): boolean {
    if (this.sleep === null) return false;
    this.sleepRequested = true;
    return true;
  }

  /** Runs the guest until something ends it. A device that throws ends the VM with its message. */
  runUntilStop(): VcpuStop {
    try {
      // A machine started paused (-S, a restore) parks its vCPUs before their first KVM_RUN.
      const stop = this.parkWhilePaused();
      if (stop !== null) return stop;
      return this.loop();
    } catch (e) {
      const message = e instanceof Error ? e.message : String(e);
      return { cause: 'vmm-error', status: VM_FAILURE_STATUS, message: `tsvmm failed while running the guest: ${message} (at ${this.describeRip()})` };
    }
  }

  private loop(): VcpuStop {
    const run = this.run;
    const lock = this.deviceLock;
    for (;;) {
      const interrupted = this.fd.enter() < 0;
      const reason = interrupted ? KVM_EXIT_INTR : run.getUint32(RunOffset.exitReason, true);
      this.exits++;
      if (reason === KVM_EXIT_IO) {
        if (lock !== null) lock.acquire();
        this.handleIo(run);
        if (lock !== null) lock.release();
      } else if (reason === KVM_EXIT_MMIO) {
        if (lock !== null) lock.acquire();
        this.handleMmio(run);
        if (lock !== null) lock.release();
      } else {
        const stop = this.handleOtherExit(reason);
        if (stop !== null) this.requestStop(stop);
      }
      if (this.tracer !== null) this.tracer.record(run, reason);
      if (this.pendingStop !== null) return this.pendingStop;
      if (this.sleepRequested) {
        this.sleepRequested = false;
        const stop = this.sleepUntilWake();
        if (stop !== null) return stop;
      }
    }
  }

  /**
   * Asleep in S3: no KVM_RUN until the wake source's time (or for ever, if
   * none is enabled), still answering the main thread's stop and pause. Then
   * the vCPU resumes where firmware would.
   */
  private sleepUntilWake(): VcpuStop | null {
    const sleep = this.sleep!;
    // KVM completes an I/O exit's instruction on the next KVM_RUN; do that
    // first (immediate_exit makes it return at once) so the state set on
    // waking is not overwritten by it.
    this.run.setUint8(RunOffset.immediateExit, 1);
    this.fd.enter();
    this.run.setUint8(RunOffset.immediateExit, 0);
    // Nothing the guest does can move the wake time while it sleeps; a pause (a restore) may.
    let wakeAt = sleep.wakeAtMs();
    for (;;) {
      const command = Atomics.load(this.control, Control.COMMAND);
      if (command === Command.STOP) return { cause: 'stopped', status: 0 };
      if (command === Command.PAUSE) {
        const stop = this.parkWhilePaused();
        if (stop !== null) return stop;
        wakeAt = sleep.wakeAtMs();
        continue;
      }
      const left = wakeAt === null ? SLEEP_POLL_MS : wakeAt - Date.now();
      if (left <= 0) break;
      Atomics.wait(this.control, Control.COMMAND, command, Math.min(left, SLEEP_POLL_MS));
    }
    this.deviceLock?.acquire();
    try {
      sleep.wake(this.fd);
    } finally {
      this.deviceLock?.release();
    }
    return null;
  }

  private handleIo(run: DataView): void {
    const size = run.getUint8(RunOffset.ioSize);
    const port = run.getUint16(RunOffset.ioPort, true);
    const count = run.getUint32(RunOffset.ioCount, true);
    // data_offset is a u64 but always inside the first page of kvm_run.
    let at = run.getUint32(RunOffset.ioDataOffset, true);
    const pio = this.pio;
    if (run.getUint8(RunOffset.ioDirection) === IO_OUT) {
      for (let i = 0; i < count; i++, at += size) {
        pio.write(port, size, size === 1 ? run.getUint8(at) : size === 2 ? run.getUint16(at, true) : run.getUint32(at, true));
      }
    } else {
      for (let i = 0; i < count; i++, at += size) {
        const value = pio.read(port, size);
        if (size === 1) run.setUint8(at, value);
        else if (size === 2) run.setUint16(at, value, true);
        else run.setUint32(at, value, true);
      }
    }
  }

  private handleMmio(run: DataView): void {
    // Guest-physical addresses fit a double exactly (52 bits at most).
    const address = run.getUint32(RunOffset.mmioPhysAddr, true) + run.getUint32(RunOffset.mmioPhysAddr + 4, true) * 0x1_0000_0000;
    const len = run.getUint32(RunOffset.mmioLen, true);
    const write = run.getUint8(RunOffset.mmioIsWrite) !== 0;
    const data = RunOffset.mmioData;
    const mmio = this.mmio;
    if (len === 4) {
      if (write) mmio.write(address, 4, run.getUint32(data, true));
      else run.setUint32(data, mmio.read(address, 4), true);
    } else if (len === 1 || len === 2) {
      if (write) mmio.write(address, len, len === 1 ? run.getUint8(data) : run.getUint16(data, true));
      else if (len === 1) run.setUint8(data, mmio.read(address, 1));
      else run.setUint16(data, mmio.read(address, 2), true);
    } else if (len === 8) {
      if (write) mmio.write64(address, run.getBigUint64(data, true));
      else run.setBigUint64(data, mmio.read64(address), true);
    } else {
      // Odd widths (3, 5, 6, 7) are rare: deliver them a byte at a time.
      for (let i = 0; i < len && i < 8; i++) {
        if (write) mmio.write(address + i, 1, run.getUint8(data + i));
        else run.setUint8(data + i, mmio.read(address + i, 1));
      }
    }
  }

  /** Every exit other than PIO/MMIO: rare, so clarity wins over speed here. */
  private handleOtherExit(reason: number): VcpuStop | null {
    const run = this.run;
    switch (reason) {
      case KVM_EXIT_INTR:
        // A kick from another thread (or a stray signal): clear the kick and see why.
        run.setUint8(RunOffset.immediateExit, 0);
        if (Atomics.load(this.control, Control.COMMAND) === Command.STOP) {
          return { cause: 'stopped', status: 0 };
        }
        if (Atomics.load(this.control, Control.COMMAND) === Command.PAUSE) return this.parkWhilePaused();
        if (this.onKick !== null) {
          this.deviceLock?.acquire();
          try {
            this.onKick();
          } finally {
            this.deviceLock?.release();
          }
        }
        const check = Atomics.exchange(this.control, Control.CHECK_HALT, 0);
        return check !== 0 ? this.checkStuckHalt(check) : null;

      case KVM_EXIT_HLT: {
        const rip = this.describeRip();
        if (!this.hasIrqchip) {
          const interrupts = run.getUint8(RunOffset.ifFlag) ? 'enabled, but no interrupt controller exists to wake it' : 'disabled';
          return { cause: 'halt', status: VM_FAILURE_STATUS, message: `guest halted at ${rip} with interrupts ${interrupts}: nothing can wake it` };
        }
        return null;
      }

      case KVM_EXIT_SHUTDOWN:
        return { cause: 'shutdown', status: VM_FAILURE_STATUS, message: `guest triple-faulted at ${this.describeRip()} (KVM_EXIT_SHUTDOWN): the CPU reset itself` };

      case KVM_EXIT_FAIL_ENTRY: {
        const hwReason = run.getBigUint64(RunOffset.failEntryReason, true);
        const cpu = run.getUint32(RunOffset.failEntryCpu, true);
        return { cause: 'fail-entry', status: VM_FAILURE_STATUS, message: `KVM could not enter the guest (KVM_EXIT_FAIL_ENTRY, hardware reason ${hex(hwReason)} on host CPU ${cpu}): invalid guest state at ${this.describeRip()}` };
      }

      case KVM_EXIT_INTERNAL_ERROR:
        return { cause: 'internal-error', status: VM_FAILURE_STATUS, message: this.describeInternalError() };

      case KVM_EXIT_SYSTEM_EVENT: {
        const type = run.getUint32(RunOffset.systemEventType, true);
        if (type === SystemEvent.KVM_SYSTEM_EVENT_SHUTDOWN) return { cause: 'poweroff', status: 0, message: 'guest powered off' };
        if (type === SystemEvent.KVM_SYSTEM_EVENT_RESET) return { cause: 'reboot', status: 0, message: 'guest rebooted' };
        return { cause: 'system-event', status: VM_FAILURE_STATUS, message: `guest system event: ${systemEventName(type)}` };
      }

      case KVM_EXIT_DEBUG: {
        const exception = run.getUint32(RunOffset.debugException, true);
        const pc = run.getBigUint64(RunOffset.debugPc, true);
        return { cause: 'debug', status: VM_FAILURE_STATUS, message: `debug exit (exception ${exception}) at pc ${hex(pc)}: guest debugging is not enabled` };
      }

      case KVM_EXIT_IRQ_WINDOW_OPEN:
        // Only requested by a userspace interrupt controller; stop asking.
        run.setUint8(RunOffset.requestInterruptWindow, 0);
        return null;

      default:
        return { cause: 'unhandled-exit', status: VM_FAILURE_STATUS, message: `unhandled exit KVM_EXIT_${exitReasonName(reason)} (${reason}) at ${this.describeRip()}` };
    }
  }

  /**
   * While the command is PAUSE, waits outside KVM_RUN with Control.PAUSED
   * raised, so the main thread may read and write this vCPU's state (a
   * snapshot) knowing KVM is not running it. Returns the stop when the pause
   * ends in one, null when the vCPU is to run on.
   */
  private parkWhilePaused(): VcpuStop | null {
    const control = this.control;
    if (Atomics.load(control, Control.COMMAND) !== Command.PAUSE) return null;
    Atomics.store(control, Control.PAUSED, 1);
    Atomics.notify(control, Control.PAUSED);
    while (Atomics.load(control, Control.COMMAND) === Command.PAUSE) Atomics.wait(control, Control.COMMAND, Command.PAUSE);
    Atomics.store(control, Control.PAUSED, 0);
    Atomics.notify(control, Control.PAUSED);
    if (Atomics.load(control, Control.COMMAND) === Command.STOP) return { cause: 'stopped', status: 0 };
    if (this.onResume !== null) {
      this.deviceLock?.acquire();
      try {
        this.onResume();
      } finally {
        this.deviceLock?.release();
      }
    }
    return null;
  }

  /**
   * With an in-kernel irqchip a HLT never comes back to tsvmm. A vCPU halted
   * with interrupts disabled can never be woken (NMIs aside), and neither can
   * an AP still waiting for its start-up IPI once every other vCPU is in that
   * state: when all of them are, at the same check, end the VM and say so
   * instead of waiting for ever (a kernel's "System halted", say).
   */
  private checkStuckHalt(check: number): VcpuStop | null {
    const stuck = this.hasIrqchip ? this.haltedForGood() : null;
    if (stuck !== null) {
      Atomics.store(this.control, Control.STUCK_RIP_LOW, stuck === 'not started' ? -1 : Number(stuck & 0xffff_ffffn) | 0);
      Atomics.store(this.control, Control.STUCK_RIP_HIGH, stuck === 'not started' ? -1 : Number(stuck >> 32n) | 0);
    }
    Atomics.store(this.control, Control.STUCK_AT_CHECK, stuck !== null ? check : 0);
    if (stuck === null || this.controls.some((peer) => Atomics.load(peer, Control.STUCK_AT_CHECK) !== check)) return null;
    if (this.controls.length === 1) {
      return { cause: 'halt', status: VM_FAILURE_STATUS, message: `guest halted at ${this.describeRip()} with interrupts disabled: nothing can wake it` };
    }
    const where = this.controls.map((peer, id) => {
      const low = Atomics.load(peer, Control.STUCK_RIP_LOW);
      const high = Atomics.load(peer, Control.STUCK_RIP_HIGH);
      if (low === -1 && high === -1) return `vCPU ${id} never started`;
      const rip = (BigInt(high >>> 0) << 32n) | BigInt(low >>> 0);
      const symbol = this.symbols?.lookup(rip);
      return `vCPU ${id} at RIP ${hex(rip)}${symbol ? ` in ${symbol}` : ''}`;
    });
    return { cause: 'halt', status: VM_FAILURE_STATUS, message: `every vCPU is halted with interrupts disabled (${where.join(', ')}): nothing can wake the guest` };
  }

  /** RIP when halted with interrupts off, 'not started' for an AP still waiting for INIT/SIPI, null when it can still run. */
  private haltedForGood(): bigint | 'not started' | null {
    const state = this.fd.getMpState();
    if (this.id !== 0 && (state === MpState.KVM_MP_STATE_UNINITIALIZED || state === MpState.KVM_MP_STATE_INIT_RECEIVED)) return 'not started';
    if (state !== MpState.KVM_MP_STATE_HALTED) return null;
    const regs = this.fd.getRegisters();
    return (regs.rflags & 0x200n) === 0n ? regs.rip : null;
  }

  private describeInternalError(): string {
    const run = this.run;
    const suberror = run.getUint32(RunOffset.internalSuberror, true);
    const ndata = run.getUint32(RunOffset.internalNdata, true);
    const data: bigint[] = [];
    for (let i = 0; i < Math.min(ndata, 16); i++) data.push(run.getBigUint64(RunOffset.internalData + i * 8, true));
    let text = `KVM internal error: ${internalErrorDescription(suberror)} (KVM_EXIT_INTERNAL_ERROR suberror ${suberror}) at ${this.describeRip()}`;
    if (suberror === InternalError.KVM_INTERNAL_ERROR_EMULATION) {
      const bytes = this.instructionBytes();
      const name = bytes ? instructionName(bytes) : null;
      if (name) text += `; instruction: ${name}`;
      if (bytes) text += ` (bytes ${[...bytes].map((b) => b.toString(16).padStart(2, '0')).join(' ')})`;
    } else if (data.length) {
      text += `; data: ${data.map((d) => hex(d)).join(' ')}`;
    }
    return text;
  }

  /** "RIP 0x1234 (CS 0x1000, linear 0x11234)": where the guest is. */
  describeRip(): string {
    try {
      const regs = this.fd.getRegisters();
      const sregs = this.fd.getSpecialRegisters();
      const linear = sregs.cs.base + regs.rip;
      const symbol = this.symbols?.lookup(regs.rip);
      const where = symbol ? ` in ${symbol}` : '';
      return `RIP ${hex(regs.rip)}${where} (CS ${hex(sregs.cs.selector)}, linear ${hex(linear)})`;
    } catch (e) {
      return `an unknown RIP (${(e as Error).message})`;
    }
  }

  /** Up to 15 bytes at CS:RIP, read from guest RAM through the guest's page tables. */
  instructionBytes(): Uint8Array | null {
    try {
      const regs = this.fd.getRegisters();
      const sregs = this.fd.getSpecialRegisters();
      const linear = BigInt.asUintN(64, sregs.cs.base + regs.rip);
      const out: number[] = [];
      for (let i = 0n; i < 15n; i++) {
        const physical = this.fd.translate(linear + i);
        if (physical === null || physical > BigInt(Number.MAX_SAFE_INTEGER)) break;
        const address = Number(physical);
        if (!this.memory.contains(address, 1)) break;
        out.push(this.memory.readU8(address));
      }
      return out.length ? Uint8Array.from(out) : null;
    } catch {
      return null;
    }
  }
}
