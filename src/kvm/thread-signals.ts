// Signals and timers of the calling thread: how a vCPU thread arranges to be
// interrupted inside KVM_RUN, by another thread's kick or by its own timer.
import { KvmError } from './errors.ts';
import { lastErrno, libcCalls } from './libc.ts';

const SIG_BLOCK = 0;
/** glibc's sigset_t is 128 bytes; the kernel's (and KVM's) is the first 8. */
const SIGSET_BYTES = 128;

const bitOf = (signal: number) => 1n << BigInt(signal - 1);

/** Blocks `signal` in the calling thread; returns the thread's mask as it was (kernel 64-bit form). */
export function blockSignalInThisThread(signal: number): bigint {
  const set = new Uint8Array(SIGSET_BYTES);
  const old = new Uint8Array(SIGSET_BYTES);
  new DataView(set.buffer).setBigUint64(0, bitOf(signal), true);
  const rc = libcCalls.pthreadSigmask(SIG_BLOCK, set, old);
  if (rc !== 0) throw new KvmError('pthread_sigmask', rc);
  return new DataView(old.buffer).getBigUint64(0, true);
}

const consumeSet = new Uint8Array(SIGSET_BYTES);
const consumeInfo = new Uint8Array(128); // siginfo_t
const zeroTimeout = new Uint8Array(16);

/**
 * Takes a blocked, pending `signal` off the calling thread. KVM leaves the
 * kick pending when KVM_RUN returns EINTR (the thread's mask blocks it again),
 * so without this every later KVM_RUN would return EINTR at once.
 */
export function consumePendingSignal(signal: number): number {
  new DataView(consumeSet.buffer).setBigUint64(0, bitOf(signal), true);
  let consumed = 0;
  while (libcCalls.sigtimedwait(consumeSet, consumeInfo, zeroTimeout) === signal) consumed++;
  return consumed;
}

export function withoutSignal(mask: bigint, signal: number): bigint {
  return mask & ~bitOf(signal);
}

const CLOCK_MONOTONIC = 1;
const SIGEV_THREAD_ID = 4;
const TIMER_ABSTIME = 1;

/**
 * A one-shot CLOCK_MONOTONIC timer that sends `signal` to the calling thread
 * (timer_create with SIGEV_THREAD_ID). A vCPU thread arms it for the next
 * device deadline so that KVM_RUN returns when, say, the PIT is due to tick.
 */
export class ThreadTimer {
  private readonly id = new Uint8Array(8);
  private readonly spec = new Uint8Array(32);
  private readonly specView = new DataView(this.spec.buffer);
  private readonly timerId: bigint;
  /** The absolute CLOCK_MONOTONIC time it is armed for, in ns (0 = disarmed). */
  armedForNs = 0;

  constructor(signal: number, threadId: number) {
    const event = new Uint8Array(64); // struct sigevent
    const view = new DataView(event.buffer);
    view.setInt32(8, signal, true); // sigev_signo
    view.setInt32(12, SIGEV_THREAD_ID, true); // sigev_notify
    view.setInt32(16, threadId, true); // sigev_notify_thread_id
    if (libcCalls.timerCreate(CLOCK_MONOTONIC, event, this.id) !== 0) throw new KvmError('timer_create', lastErrno());
    this.timerId = new DataView(this.id.buffer).getBigUint64(0, true);
  }

  /** Fires once at `monotonicNs` (CLOCK_MONOTONIC, as process.hrtime); 0 disarms. */
  armAt(monotonicNs: number): void {
    const v = this.specView;
    const sec = Math.floor(monotonicNs / 1e9);
    v.setBigInt64(16, BigInt(sec), true); // it_value.tv_sec
    v.setBigInt64(24, BigInt(monotonicNs - sec * 1e9), true); // it_value.tv_nsec
    if (libcCalls.timerSettime(this.timerId, TIMER_ABSTIME, this.spec, null) !== 0) throw new KvmError('timer_settime', lastErrno());
    this.armedForNs = monotonicNs;
  }

  close(): void {
    libcCalls.timerDelete(this.timerId);
  }
}
