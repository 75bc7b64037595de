// Open file description locks (fcntl F_OFD_SETLK / F_OFD_GETLK) on single
// bytes of a file: what src/storage's image locking is given to call. OFD
// locks belong to the open file, not the process, so two opens of one image
// conflict even inside one process, and closing the descriptor drops them.
import { KvmError } from './errors.ts';
import { Errno, FcntlCommand, FlockLayout, FlockType, lastErrno, libcCalls } from './libc.ts';

const SEEK_SET = 0;

function flock(type: number, byte: number): Uint8Array {
  const buffer = new Uint8Array(FlockLayout.size);
  const view = new DataView(buffer.buffer);
  const { fields } = FlockLayout;
  view.setInt16(fields.l_type.offset, type, true);
  view.setInt16(fields.l_whence.offset, SEEK_SET, true);
  view.setBigInt64(fields.l_start.offset, BigInt(byte), true);
  view.setBigInt64(fields.l_len.offset, 1n, true);
  return buffer;
}

function setLock(fd: number, type: number, byte: number): boolean {
  if (libcCalls.fcntlWithBuffer(fd, FcntlCommand.F_OFD_SETLK, flock(type, byte)) === 0) return true;
  const errno = lastErrno();
  if (errno === Errno.EAGAIN || errno === Errno.EACCES) return false;
  throw new KvmError('fcntl(F_OFD_SETLK)', errno, `byte ${byte}`);
}

export const ofdByteLocks = {
  /** Takes a shared lock on `byte`; false when another open file holds an exclusive one there. */
  share: (fd: number, byte: number): boolean => setLock(fd, FlockType.F_RDLCK, byte),
  /** Takes an exclusive lock on `byte`; false when another open file holds any lock there. */
  exclusive: (fd: number, byte: number): boolean => setLock(fd, FlockType.F_WRLCK, byte),
  /** True when another open file (in this process or another) holds any lock on `byte`. */
  heldElsewhere(fd: number, byte: number): boolean {
    const request = flock(FlockType.F_WRLCK, byte);
    if (libcCalls.fcntlWithBuffer(fd, FcntlCommand.F_OFD_GETLK, request) !== 0) {
      throw new KvmError('fcntl(F_OFD_GETLK)', lastErrno(), `byte ${byte}`);
    }
    return new DataView(request.buffer).getInt16(FlockLayout.fields.l_type.offset, true) !== FlockType.F_UNLCK;
  },
};
