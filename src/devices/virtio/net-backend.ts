// Where a virtio-net device's frames go on the host: the device deals in
// buffers that start with the 12-byte virtio-net header; a backend moves them
// across one host fd. The TAP backend is here; the stream backend (passt) is
// in net-stream.ts.
import { readvSync, writevSync } from 'node:fs';

export interface NetBackend {
  /** The fd to watch: readable when a frame may be waiting, writable when held-back output may go. */
  readonly fd: number;
  /**
   * Moves the next frame into `views` (header first), which hold `capacity`
   * bytes. Returns its length, header included; 0 when no frame is waiting
   * (or the backend failed: see `failure`); a negative number when a frame
   * did not fit and was dropped.
   */
  receive(views: Uint8Array[], capacity: number): number;
  /** Sends one frame, `length` bytes in `views` (header first); returns why it was lost, or null. */
  send(views: readonly Uint8Array[], length: number): string | null;
  /** Output waits for the fd to become writable: send nothing more until `flush` empties it. */
  readonly blocked: boolean;
  /** Writes what output waits, as far as the fd takes it. */
  flush(): void;
  /** Why the backend stopped (the peer went away, a read failed), or null while it works. */
  readonly failure: string | null;
  /**
   * Before the device goes away (a reset builds the next one on the same
   * fd): leaves the fd where the next backend can start, waiting for it at
   * most `timeoutMs`. A TAP is always between frames and has none.
   */
  settle?(timeoutMs: number): void;
}

export function errorCode(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? (e instanceof Error ? e.message : String(e));
}

export function wouldBlock(code: string): boolean {
  return code === 'EAGAIN' || code === 'EWOULDBLOCK' || code === 'EINTR';
}

/**
 * The last iovec of every receive: the TAP returns only the bytes that fit,
 * so a frame longer than the guest's buffer shows as a byte landing here.
 */
const overflowByte = new Uint8Array(1);

/**
 * A TAP fd opened non-blocking with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR and a
 * 12-byte vnet header (src/kvm openTap). It speaks the same header as a
 * virtio 1.x driver, so a frame crosses it with one readv or writev straight
 * from or to guest memory. The backend does not close the fd.
 */
export class TapBackend implements NetBackend {
  readonly blocked = false;
  failure: string | null = null;

  constructor(readonly fd: number) {}

  receive(views: Uint8Array[], capacity: number): number {
    if (this.failure) return 0;
    let length: number;
    views.push(overflowByte);
    try {
      length = readvSync(this.fd, views);
    } catch (e) {
      const code = errorCode(e);
      if (!wouldBlock(code)) this.failure = `reading the TAP device: ${code}`;
      return 0;
    } finally {
      views.pop();
    }
    // End of file: a TAP never says that; whatever this fd is, stop watching it rather than spin.
    if (length === 0) this.failure = 'the TAP device returned end of file';
    return length > capacity ? -length : length;
  }

  send(views: readonly Uint8Array[], length: number): string | null {
    try {
      const written = writevSync(this.fd, views as Uint8Array[]);
      return written === length ? null : `writing to the TAP device: wrote ${written} of ${length} bytes`;
    } catch (e) {
      // The TAP refused the frame (interface down: EIO; a header it rejects: EINVAL): the frame is lost, as on a wire.
      return `writing to the TAP device: ${errorCode(e)}`;
    }
  }

  flush(): void {}
}
