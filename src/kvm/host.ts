// Host-side resources that are not KVM ioctls: anonymous memory for guest RAM,
// eventfds, and the thread identity and signal a vCPU kick needs.
import { KvmError } from './errors.ts';
import { Errno, lastErrno, libcCalls, nativeView, type Address } from './libc.ts';

const PROT_READ = 0x1;
const PROT_WRITE = 0x2;
const MAP_PRIVATE = 0x02;
const MAP_ANONYMOUS = 0x20;
const MAP_NORESERVE = 0x4000;
const MAP_FAILED = 0xffff_ffff_ffff_ffffn;

export interface HostMapping {
  /** Native address of the first byte: what KVM_SET_USER_MEMORY_REGION takes. */
  readonly address: Address;
  readonly size: number;
}

/**
 * Reserves `size` bytes of zeroed, private, anonymous memory. MAP_NORESERVE:
 * the host commits a page only when the guest or tsvmm first touches it.
 */
export function mapAnonymous(size: number): HostMapping {
  const address = BigInt(libcCalls.mmap(null, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  if (address === MAP_FAILED || address === 0n) throw new KvmError('mmap', lastErrno(), `${size} bytes of guest memory`);
  return { address, size };
}

/** Returns a mapping's memory to the host; nothing may use its views afterwards. */
export function unmap(mapping: HostMapping): void {
  if (libcCalls.munmap(mapping.address, mapping.size) !== 0) throw new KvmError('munmap', lastErrno());
}

/**
 * Makes KVM drop its mapping of one host page of guest RAM: taking the page's
 * access away and giving it back goes through the kernel's MMU notifiers, so
 * the guest's next touch of the page faults into KVM again (QEMU's
 * pc-testdev flush-page does the same). The page's contents stay.
 */
export function dropGuestMappingOfPage(pageAddress: Address): void {
  const PROT_NONE = 0;
  if (libcCalls.mprotect(pageAddress, 4096, PROT_NONE) !== 0) throw new KvmError('mprotect', lastErrno(), 'a guest page, to drop its mapping');
  if (libcCalls.mprotect(pageAddress, 4096, PROT_READ | PROT_WRITE) !== 0) throw new KvmError('mprotect', lastErrno(), 'a guest page, to map it again');
}

/** Maps a file descriptor shared (the vCPU's kvm_run page). */
export function mapShared(fd: number, size: number, what: string): HostMapping {
  const MAP_SHARED = 0x01;
  const address = BigInt(libcCalls.mmap(null, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
  if (address === MAP_FAILED || address === 0n) throw new KvmError('mmap', lastErrno(), what);
  return { address, size };
}

/**
 * An ArrayBuffer over native memory, usable from any thread of the process:
 * each thread makes its own view of the same address.
 */
export function viewOf(address: Address, length: number): ArrayBuffer {
  return nativeView(address, length);
}

export function closeFd(fd: number): void {
  libcCalls.close(fd);
}

const O_CLOEXEC = 0o2000000;

/** A pipe(2): bytes written to `write` come out of `read`, for a thread that writes an fd and a reader that is a stream. */
export function createPipe(): { read: number; write: number } {
  const fds = new Int32Array(2);
  if (libcCalls.pipe2(fds, O_CLOEXEC) < 0) throw new KvmError('pipe2', lastErrno());
  return { read: fds[0]!, write: fds[1]! };
}

const EFD_CLOEXEC = 0o2000000;
const EFD_NONBLOCK = 0o4000;

export function createEventFd(): number {
  const fd = libcCalls.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) throw new KvmError('eventfd', lastErrno());
  return fd;
}

const eventFdValue = new BigUint64Array(1);
const eventFdBytes = new Uint8Array(eventFdValue.buffer);

/** Adds 1 to an eventfd's counter: wakes whoever polls it (KVM for an irqfd, the I/O thread for a notify fd). */
export function signalEventFd(fd: number): void {
  eventFdValue[0] = 1n;
  if (libcCalls.write(fd, eventFdBytes, 8) !== 8) {
    const errno = lastErrno();
    // EAGAIN: the counter is at its maximum, so the reader is woken anyway.
    if (errno !== Errno.EAGAIN) throw new KvmError('write eventfd', errno);
  }
}

/** Reads and zeroes an eventfd's counter; 0 when it was not signalled. */
export function drainEventFd(fd: number): number {
  if (libcCalls.read(fd, eventFdBytes, 8) !== 8) return 0;
  return Number(eventFdValue[0]);
}

const POLLIN = 1;
const POLLFD_SIZE = 8;

/**
 * Waits until one of `fds` is readable (poll(2)), at most `timeoutMs`
 * (-1: forever). Returns the readable ones. The calling thread blocks: this is
 * for threads that do nothing else (the virtio I/O thread).
 */
export class ReadableWaiter {
  private buffer = new Uint8Array(0);
  private view = new DataView(this.buffer.buffer);

  wait(fds: readonly number[], timeoutMs: number): number[] {
    if (this.buffer.length < fds.length * POLLFD_SIZE) {
      this.buffer = new Uint8Array(fds.length * POLLFD_SIZE * 2);
      this.view = new DataView(this.buffer.buffer);
    }
    for (let i = 0; i < fds.length; i++) {
      this.view.setInt32(i * POLLFD_SIZE, fds[i]!, true);
      this.view.setInt16(i * POLLFD_SIZE + 4, POLLIN, true);
      this.view.setInt16(i * POLLFD_SIZE + 6, 0, true);
    }
    const count = libcCalls.poll(this.buffer, fds.length, timeoutMs);
    if (count < 0) {
      const errno = lastErrno();
      if (errno === Errno.EINTR) return [];
      throw new KvmError('poll', errno);
    }
    const ready: number[] = [];
    for (let i = 0; i < fds.length && ready.length < count; i++) {
      if (this.view.getInt16(i * POLLFD_SIZE + 6, true) !== 0) ready.push(fds[i]!);
    }
    return ready;
  }
}

/** The kernel's id of the calling thread (for tgkill). */
export function currentThreadId(): number {
  return libcCalls.gettid();
}

export const SIGUSR2 = 12;

/**
 * Sends `signal` to one thread of this process. A vCPU thread inside KVM_RUN
 * returns from it with EINTR; the signal needs a handler in the process
 * (process.on('SIGUSR2')) or the default action would kill tsvmm.
 * Returns false when the thread has already exited (ESRCH): a signal meant to
 * interrupt it has nothing left to do, so that is not an error.
 */
export function signalThread(threadId: number, signal: number): boolean {
  if (libcCalls.tgkill(libcCalls.getpid(), threadId, signal) === 0) return true;
  const errno = lastErrno();
  if (errno === Errno.ESRCH) return false;
  throw new KvmError('tgkill', errno, `thread ${threadId}`);
}
