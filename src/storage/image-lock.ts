// Image locking as QEMU does it (block/file-posix.c, raw_apply_lock_bytes), so
// that two writers never share an image, whether they are two tsvmm disks,
// two tsvmm processes, or tsvmm and qemu-system / qemu-img.
//
// Every user of an image takes shared OFD locks (fcntl F_OFD_SETLK, F_RDLCK)
// on single bytes of the file: byte 100+i when it uses permission i, byte
// 200+i when it does not let others use permission i. A user conflicts with
// the others when it uses a permission someone else refuses to share, or
// refuses one someone else uses. Shared locks never block each other, so a
// user first takes all its bytes and then looks (F_OFD_GETLK) for the
// conflicting ones: of two users that open at the same moment, both may fail,
// never both succeed. OFD locks belong to the open file, not the process:
// two opens of one file conflict inside one process too, and closing the
// file descriptor drops its locks, also when the process is killed.
import * as fs from 'node:fs';
import { InputError } from '../errors.ts';
import { describeFsError, openNonBlocking } from './host-file.ts';
import { imageInfo, type DiskFormat } from './image-info.ts';

/** The fcntl(2) calls locking needs; src/kvm provides them (storage code does not call libc itself). */
export interface ByteLocks {
  /** Takes a shared lock on one byte; false when an exclusive lock is held there. */
  share(fd: number, byte: number): boolean;
  /** True when another open file, in this process or another, holds a lock on `byte`. */
  heldElsewhere(fd: number, byte: number): boolean;
}

/**
 * How an image is used: `write` by a writable disk or a convert destination;
 * `read` by a read-only disk, a backing file or a convert source, which want
 * the content not to change under them; `read-shared` by a reader that takes
 * that risk (qemu-img's -U, --force-share).
 */
export type ImageAccess = 'write' | 'read' | 'read-shared';

const PERMISSION_BASE = 100;
const UNSHARED_BASE = 200;

/** QEMU's BLK_PERM_* bits, by bit number, with the names its messages use. */
const Permission = { consistentRead: 0, write: 1, resize: 3 } as const;
const PERMISSION_NAMES: Record<number, string> = { 0: 'consistent read', 1: 'write', 3: 'resize' };

/** The bytes qemu-system and qemu-io lock on a qcow2 image, per use (seen in /proc/locks). */
const ACCESS_BYTES: Record<ImageAccess, { uses: number[]; refuses: number[] }> = {
  write: { uses: [Permission.consistentRead, Permission.write, Permission.resize], refuses: [Permission.write, Permission.resize] },
  read: { uses: [Permission.consistentRead], refuses: [Permission.write, Permission.resize] },
  'read-shared': { uses: [Permission.consistentRead], refuses: [] },
};

/** The locks this thread holds, by file identity, so a conflict with ourselves can say so. */
const heldHere = new Map<string, Set<ImageLock>>();

/** Device and inode: the same file under any name (symlink, hard link, /proc/self/fd/N). */
export function fileIdentity(stats: fs.Stats): string {
  return `${stats.dev}:${stats.ino}`;
}

export class ImageLock {
  private fd: number;

  private constructor(readonly path: string, readonly access: ImageAccess, readonly identity: string, fd: number, private readonly locks: ByteLocks) {
    this.fd = fd;
  }

  /**
   * Locks `path` for `access` on a file descriptor of its own, or throws a
   * InputError in QEMU's words: `Failed to get "write" lock`.
   */
  static acquire(path: string, access: ImageAccess, locks: ByteLocks): ImageLock {
    const fd = openNonBlocking(path, fs.constants.O_RDONLY);
    let lock: ImageLock;
    try {
      lock = new ImageLock(path, access, fileIdentity(fs.fstatSync(fd)), fd, locks);
    } catch (e) {
      fs.closeSync(fd);
      throw new InputError(`${path}: fstat failed: ${describeFsError(e)}`);
    }
    try {
      lock.take();
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
    let set = heldHere.get(lock.identity);
    if (!set) heldHere.set(lock.identity, set = new Set());
    set.add(lock);
    return lock;
  }

  private take(): void {
    const { uses, refuses } = ACCESS_BYTES[this.access];
    const bytes = [...uses.map((p) => PERMISSION_BASE + p), ...refuses.map((p) => UNSHARED_BASE + p)];
    for (const byte of bytes) {
      if (!this.call(() => this.locks.share(this.fd, byte))) throw this.conflict(`Failed to lock byte ${byte}`);
    }
    for (const permission of uses) {
      if (this.call(() => this.locks.heldElsewhere(this.fd, UNSHARED_BASE + permission))) {
        throw this.conflict(`Failed to get "${PERMISSION_NAMES[permission]}" lock`);
      }
    }
    for (const permission of refuses) {
      if (this.call(() => this.locks.heldElsewhere(this.fd, PERMISSION_BASE + permission))) {
        throw this.conflict(`Failed to get shared "${PERMISSION_NAMES[permission]}" lock`);
      }
    }
  }

  private call<T>(syscall: () => T): T {
    try {
      return syscall();
    } catch (e) {
      throw new InputError(`${this.path}: cannot lock the image: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  /** Names the holder where it can be known: OFD locks do not record a process (F_OFD_GETLK says l_pid -1). */
  private conflict(what: string): InputError {
    const mine = [...(heldHere.get(this.identity) ?? [])][0];
    const holder = mine
      ? `this tsvmm already has it open${mine.path === this.path ? '' : ` as ${mine.path}`} (${mine.access === 'write' ? 'writable' : 'read-only'})`
      : 'another process (tsvmm or QEMU) is using the image';
    return new InputError(`${this.path}: ${what}: ${holder}`);
  }

  /** Drops the locks (closing the descriptor drops them all at once). */
  release(): void {
    if (this.fd < 0) return;
    heldHere.get(this.identity)?.delete(this);
    if (heldHere.get(this.identity)?.size === 0) heldHere.delete(this.identity);
    const fd = this.fd;
    this.fd = -1;
    fs.closeSync(fd);
  }
}

/** The locks on an image and its backing files. */
export interface ImageLocks {
  /** The image first, then its backing chain in order. */
  readonly files: readonly ImageLock[];
  release(): void;
}

/** Longer chains are almost certainly a mistake; opening them is refused anyway (open-disk.ts). */
const MAX_CHAIN_LOCKS = 64;

/** Device and inode of `path`, or null when it cannot be stat'ed (opening it reports why). */
export function identityOf(path: string): string | null {
  try {
    return fileIdentity(fs.statSync(path));
  } catch {
    return null;
  }
}

/**
 * Locks an image (for writing unless `readOnly`) and every file of its
 * backing chain for reading, each before its header is read.
 */
export function lockImageChain(path: string, options: { format?: DiskFormat; readOnly: boolean; locks: ByteLocks; forceShare?: boolean }): ImageLocks {
  const reading: ImageAccess = options.forceShare ? 'read-shared' : 'read';
  const files: ImageLock[] = [];
  const release = () => { for (const lock of files.splice(0)) lock.release(); };
  let current: string | undefined = path;
  let format: DiskFormat | undefined = options.format;
  try {
    while (current !== undefined) {
      const parent = files.at(-1);
      const identity = identityOf(current);
      if (identity !== null && files.some((lock) => lock.identity === identity)) {
        throw new InputError(`${parent!.path}: the backing chain loops back to ${current}`);
      }
      if (files.length >= MAX_CHAIN_LOCKS) throw new InputError(`${path}: the backing chain is longer than ${MAX_CHAIN_LOCKS} images`);
      const access = parent === undefined && !options.readOnly ? 'write' : reading;
      let info;
      try {
        files.push(ImageLock.acquire(current, access, options.locks));
        info = imageInfo(current, format);
      } catch (e) {
        if (parent && e instanceof InputError) throw new InputError(`${parent.path}: backing file: ${e.message}`);
        throw e;
      }
      current = info['full-backing-filename'];
      const backingFormat = info['backing-filename-format'];
      format = backingFormat === 'raw' || backingFormat === 'qcow2' ? backingFormat : undefined;
    }
  } catch (e) {
    release();
    throw e;
  }
  return { files, release };
}
