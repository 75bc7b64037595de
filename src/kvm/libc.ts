// The libc functions tsvmm needs, bound through koffi. This file and its
// siblings in src/kvm are the only code that knows koffi exists.
import koffi from 'koffi';

const libc = koffi.load('libc.so.6');

/** A native address, as koffi represents pointers. */
export type Address = bigint;

/**
 * Binds a libc function and gives it its TypeScript signature: koffi's calls are
 * untyped, so each binding below states once what it takes and returns.
 */
function bind<Signature>(declaration: string): Signature;
function bind<Signature>(name: string, result: string, parameters: string[]): Signature;
function bind<Signature>(nameOrDeclaration: string, result?: string, parameters?: string[]): Signature {
  const func = result === undefined ? libc.func(nameOrDeclaration) : libc.func(nameOrDeclaration, result, parameters ?? []);
  return func as Signature;
}

type Fd = number;
/** A libc call's int result: -1 (or an errno, for pthread calls) on failure. */
type Status = number;

export const libcCalls = {
  open: bind<(path: string, flags: number, mode: number) => Fd>('int open(const char *path, int flags, int mode)'),
  close: bind<(fd: Fd) => Status>('int close(int fd)'),
  socket: bind<(domain: number, type: number, protocol: number) => Fd>('int socket(int domain, int type, int protocol)'),
  read: bind<(fd: Fd, buf: Uint8Array, count: number) => number>('long read(int fd, void *buf, unsigned long count)'),
  write: bind<(fd: Fd, buf: Uint8Array, count: number) => number>('long write(int fd, const void *buf, unsigned long count)'),
  mmap: bind<(addr: Address | null, len: number, prot: number, flags: number, fd: Fd, offset: number) => Address>(
    'void *mmap(void *addr, unsigned long len, int prot, int flags, int fd, int64_t offset)',
  ),
  munmap: bind<(addr: Address, len: number) => Status>('int munmap(void *addr, unsigned long len)'),
  mprotect: bind<(addr: Address, len: number, prot: number) => Status>('int mprotect(void *addr, unsigned long len, int prot)'),
  socketpair: bind<(domain: number, type: number, protocol: number, fds: Int32Array) => Status>(
    'int socketpair(int domain, int type, int protocol, int *fds)',
  ),
  pipe2: bind<(fds: Int32Array, flags: number) => Status>('int pipe2(int *fds, int flags)'),
  eventfd: bind<(initval: number, flags: number) => Fd>('int eventfd(unsigned int initval, int flags)'),
  poll: bind<(fds: Uint8Array, nfds: number, timeout: number) => number>('int poll(void *fds, unsigned long nfds, int timeout)'),
  gettid: bind<() => number>('int gettid(void)'),
  getpid: bind<() => number>('int getpid(void)'),
  tgkill: bind<(tgid: number, tid: number, sig: number) => Status>('int tgkill(int tgid, int tid, int sig)'),
  strerror: bind<(errnum: number) => string>('const char *strerror(int errnum)'),
  pthreadSigmask: bind<(how: number, set: Uint8Array | null, oldset: Uint8Array | null) => Status>(
    'int pthread_sigmask(int how, const void *set, void *oldset)',
  ),
  sigtimedwait: bind<(set: Uint8Array, info: Uint8Array | null, timeout: Uint8Array | null) => number>(
    'int sigtimedwait(const void *set, void *info, const void *timeout)',
  ),
  timerCreate: bind<(clockid: number, sevp: Uint8Array, timerid: Uint8Array) => Status>(
    'int timer_create(int clockid, void *sevp, void *timerid)',
  ),
  timerSettime: bind<(timerid: bigint, flags: number, newValue: Uint8Array, oldValue: Uint8Array | null) => Status>(
    'int timer_settime(void *timerid, int flags, const void *newValue, void *oldValue)',
  ),
  timerDelete: bind<(timerid: bigint) => Status>('int timer_delete(void *timerid)'),
  // fcntl(2) is variadic in C; tsvmm passes it a struct flock or an int (as ioctl below).
  fcntlWithBuffer: bind<(fd: Fd, cmd: number, arg: Uint8Array) => Status>('int fcntl(int fd, int cmd, void *arg)'),
  fcntlWithValue: bind<(fd: Fd, cmd: number, value: number) => Status>('fcntl', 'int', ['int', 'int', 'int']),
  // So is ioctl(2). Declaring its third argument with a fixed type is the usual
  // FFI practice on x86-64 (integers and pointers travel in the same registers)
  // and keeps koffi's fast path: no per-call type parsing.
  ioctlWithValue: bind<(fd: Fd, request: number, value: number | bigint) => number>('ioctl', 'int', ['int', 'unsigned long', 'unsigned long']),
  ioctlWithBuffer: bind<(fd: Fd, request: number, buf: Uint8Array | null) => number>('ioctl', 'int', ['int', 'unsigned long', 'void *']),
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

/** An ArrayBuffer over native memory (no copy); tsvmm never unmaps guest RAM or kvm_run, so it stays valid. */
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
