// The libc functions tsvmm needs, bound through koffi. This file and its
// siblings in src/kvm are the only code that knows koffi exists.
import koffi from 'koffi';

const libc = koffi.load('libc.so.6');

/** A native address, as koffi represents pointers. */
export type Address = bigint;

// ioctl(2) is variadic in C. Declaring its third argument with a fixed type is
// the usual FFI practice on x86-64 (integers and pointers travel in the same
// registers) and keeps koffi's fast path: no per-call type parsing.
const ioctlWithValue = libc.func('ioctl', 'int', ['int', 'unsigned long', 'unsigned long']);
const ioctlWithBuffer = libc.func('ioctl', 'int', ['int', 'unsigned long', 'void *']);

export const libcCalls = {
  open: libc.func('int open(const char *path, int flags, int mode)'),
  close: libc.func('int close(int fd)'),
  read: libc.func('long read(int fd, void *buf, unsigned long count)'),
  write: libc.func('long write(int fd, const void *buf, unsigned long count)'),
  mmap: libc.func('void *mmap(void *addr, unsigned long len, int prot, int flags, int fd, int64_t offset)'),
  munmap: libc.func('int munmap(void *addr, unsigned long len)'),
  eventfd: libc.func('int eventfd(unsigned int initval, int flags)'),
  poll: libc.func('int poll(void *fds, unsigned long nfds, int timeout)'),
  gettid: libc.func('int gettid(void)'),
  getpid: libc.func('int getpid(void)'),
  tgkill: libc.func('int tgkill(int tgid, int tid, int sig)'),
  strerror: libc.func('const char *strerror(int errnum)'),
  pthreadSigmask: libc.func('int pthread_sigmask(int how, const void *set, void *oldset)'),
  sigtimedwait: libc.func('int sigtimedwait(const void *set, void *info, const void *timeout)'),
  timerCreate: libc.func('int timer_create(int clockid, void *sevp, void *timerid)'),
  timerSettime: libc.func('int timer_settime(void *timerid, int flags, const void *newValue, void *oldValue)'),
  timerDelete: libc.func('int timer_delete(void *timerid)'),
  // fcntl(2) is variadic too; tsvmm only passes it a struct flock.
  fcntlWithBuffer: libc.func('int fcntl(int fd, int cmd, void *arg)') as (fd: number, cmd: number, arg: Uint8Array) => number,
  ioctlWithValue: ioctlWithValue as (fd: number, request: number, value: number | bigint) => number,
  ioctlWithBuffer: ioctlWithBuffer as (fd: number, request: number, buf: Uint8Array | null) => number,
};

/** fcntl(2) commands for open file description locks (<fcntl.h> with _GNU_SOURCE). */
export const FcntlCommand = { F_OFD_GETLK: 36, F_OFD_SETLK: 37 } as const;

/** struct flock's l_type values. */
export const FlockType = { F_RDLCK: 0, F_WRLCK: 1, F_UNLCK: 2 } as const;

/** struct flock on x86-64 (off_t is 64-bit); test/kvm-abi.test.ts checks it against <fcntl.h>. */
export const FlockLayout = {
  size: 32,
  fields: {
    l_type: { offset: 0, size: 2 },
    l_whence: { offset: 2, size: 2 },
    l_start: { offset: 8, size: 8 },
    l_len: { offset: 16, size: 8 },
    l_pid: { offset: 24, size: 4 },
  },
} as const;

/** errno of the last failed libc call on this thread. */
export function lastErrno(): number {
  return koffi.errno();
}

/** An ArrayBuffer over native memory (no copy); it stays valid until munmap. */
export function nativeView(address: Address, length: number): ArrayBuffer {
  return koffi.view(address, length);
}

/** errno values tsvmm distinguishes, from koffi's table for this OS. */
export const Errno = koffi.os.errno as Record<string, number>;

const errnoNames = new Map<number, string>();
for (const [name, value] of Object.entries(Errno)) {
  if (!errnoNames.has(value)) errnoNames.set(value, name);
}

/** "EACCES" for 13, "errno 9999" for anything unknown. */
export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `errno ${errno}`;
}

export function errnoMessage(errno: number): string {
  return String(libcCalls.strerror(errno));
}
