// What a migration URI opens: a byte stream in one direction plus the way to
// end it. The snapshot writer and reader see only the Node stream; the
// transport behind it (a command, a socket, a file) is the channel's.
import type { Readable, Writable } from 'node:stream';

interface Channel {
  /** The URI as opened (a tcp port 0 replaced by the port bound), for messages. */
  readonly uri: string;
  /**
   * Ends the channel and waits until it is over: for an outgoing stream, the
   * other side has every byte (the command exited, the peer closed, the file
   * is closed). Rejects with the transport's own failure, which explains
   * better than the stream's EPIPE: call it in a `finally`, so its error
   * replaces the stream's. A command that exits non-zero is such a failure,
   * named with its status and the last line it wrote to stderr.
   */
  close(): Promise<void>;
  /** Drops the channel at once (migrate_cancel): a command is killed, a socket destroyed. close() then reports nothing. */
  abort(): void;
}

export interface OutgoingChannel extends Channel {
  readonly stream: Writable;
}

export interface IncomingChannel extends Channel {
  readonly stream: Readable;
}

export interface OpenOptions {
  /** Cancels a connect (outgoing) or a wait for the source (incoming); the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

export interface IncomingOptions extends OpenOptions {
  /** Called once a tcp: or unix: listener is bound, with its URI (the real port when 0 was asked for). */
  onListening?: (uri: string) => void;
}
