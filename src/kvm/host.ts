// Host-side resources that are not KVM ioctls: anonymous memory for guest RAM,
// eventfds, and the thread identity and signal a vCPU kick needs.
import { KvmError } from './errors.ts';
import { lastErrno, libcCalls, nativeView, type Address } from './libc.ts';

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

export function unmap(mapping: HostMapping): void {
  libcCalls.munmap(mapping.address, mapping.size);
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

const EFD_CLOEXEC = 0o2000000;
const EFD_NONBLOCK = 0o4000;

export function createEventFd(): number {
  const fd = libcCalls.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) throw new KvmError('eventfd', lastErrno());
  return fd;
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
 */
export function signalThread(threadId: number, signal: number): void {
  if (libcCalls.tgkill(libcCalls.getpid(), threadId, signal) < 0) {
    throw new KvmError('tgkill', lastErrno(), `thread ${threadId}`);
  }
}
