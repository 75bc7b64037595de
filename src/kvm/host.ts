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

/**
 * Replaces `size` bytes of memory at `address` (guest RAM not yet run) with
 * a private copy-on-write mapping of `fd` from `offset`: the pages are read
 * from the file when first touched, and writes stay in this process. This is
 * how a snapshot's RAM is restored without reading it (Firecracker's way).
 */
export function mapFilePrivateOver(address: Address, size: number, fd: number, offset: number): void {
  const MAP_FIXED = 0x10;
  const mapped = BigInt(libcCalls.mmap(address, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, fd, offset));
  if (mapped !== address) throw new KvmError('mmap', lastErrno(), `${size} bytes of a snapshot's RAM file over guest memory`);
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

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_CLOEXEC = 0o2000000;
const F_GETFL = 3;
const F_SETFL = 4;
const O_NONBLOCK = 0o4000;

/**
 * A connected pair of unix stream sockets, close-on-exec: `local` non-blocking
 * for tsvmm's poll loop, `remote` blocking, as a program handed it expects
 * (passt --fd).
 */
export function createStreamSocketPair(): { local: number; remote: number } {
  const fds = new Int32Array(2);
  if (libcCalls.socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0) throw new KvmError('socketpair', lastErrno());
  const [local, remote] = [fds[0]!, fds[1]!];
  const flags = libcCalls.fcntlWithValue(local, F_GETFL, 0);
  if (flags < 0 || libcCalls.fcntlWithValue(local, F_SETFL, flags | O_NONBLOCK) < 0) {
    const errno = lastErrno();
    libcCalls.close(local);
    libcCalls.close(remote);
    throw new KvmError('fcntl F_SETFL', errno, 'a non-blocking socket');
  }
  return { local, remote };
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
const POLLOUT = 4;
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
    return this.waitReady(fds, [], timeoutMs).readable;
  }

  /**
   * Waits until one of `readFds` is readable or one of `writeFds` writable
   * (an error or hang-up counts as either, so its owner finds out).
   */
  waitReady(readFds: readonly number[], writeFds: readonly number[], timeoutMs: number): { readable: number[]; writable: number[] } {
    const total = readFds.length + writeFds.length;
    if (this.buffer.length < total * POLLFD_SIZE) {
      this.buffer = new Uint8Array(total * POLLFD_SIZE * 2);
      this.view = new DataView(this.buffer.buffer);
    }
    for (let i = 0; i < total; i++) {
      const reading = i < readFds.length;
      this.view.setInt32(i * POLLFD_SIZE, reading ? readFds[i]! : writeFds[i - readFds.length]!, true);
      this.view.setInt16(i * POLLFD_SIZE + 4, reading ? POLLIN : POLLOUT, true);
      this.view.setInt16(i * POLLFD_SIZE + 6, 0, true);
    }
    const readable: number[] = [];
    const writable: number[] = [];
    const count = libcCalls.poll(this.buffer, total, timeoutMs);
    if (count < 0) {
      const errno = lastErrno();
      if (errno === Errno.EINTR) return { readable, writable };
      throw new KvmError('poll', errno);
    }
    for (let i = 0, found = 0; i < total && found < count; i++) {
      if (this.view.getInt16(i * POLLFD_SIZE + 6, true) === 0) continue;
      found++;
      if (i < readFds.length) readable.push(readFds[i]!);
      else writable.push(writeFds[i - readFds.length]!);
    }
    return { readable, writable };
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
