// One snapshot stream sent to, or received from, a migration URI, start to
// end: open the channel, write or read the stream, close the channel. The
// channel is closed whatever happens, and its failure wins over the stream's:
// "exec:cat > /x: the command failed with exit status 1 (...)" says more
// than the EPIPE the writer saw when the command died.
import type { IncomingChannel, IncomingOptions, OpenOptions, OutgoingChannel } from './channel.ts';
import { SnapshotReader } from './reader.ts';
import { openIncoming, openOutgoing } from './uri.ts';
import { SnapshotWriter } from './writer.ts';

/**
 * Sends a stream with this machine `config` to `uri`; `write` adds the
 * sections and RAM, sendSnapshot() the end. Resolves once the other side has
 * it all (the command exited, the peer closed). options.signal drops the
 * channel (migrate_cancel): the promise rejects with the signal's reason.
 * Returns the bytes sent.
 */
export async function sendSnapshot(
  uri: string,
  config: unknown,
  write: (writer: SnapshotWriter) => Promise<void>,
  options: OpenOptions = {},
): Promise<number> {
  return withChannel(await openOutgoing(uri, options), options.signal, async (channel) => {
    const writer = await SnapshotWriter.start(channel.stream, config, uri);
    await write(writer);
    await writer.finish();
    return writer.bytesWritten;
  });
}

/**
 * Receives a stream from `uri` and hands the open reader to `read`, which
 * checks reader.config and goes through reader.records(). Resolves once the
 * whole stream, up to its end record, was read and the channel closed.
 */
export async function receiveSnapshot(
  uri: string,
  read: (reader: SnapshotReader) => Promise<void>,
  options: IncomingOptions = {},
): Promise<void> {
  await withChannel(await openIncoming(uri, options), options.signal, async (channel) => {
    const reader = await SnapshotReader.open(channel.stream, channel.uri);
    await read(reader);
    if (!reader.complete) throw new Error(`${channel.uri}: the stream was not read to its end record`);
  });
}

/**
 * Runs `use` over an open channel and closes it whatever happens; `signal`
 * drops the channel at once, and its reason is then the failure reported.
 */
async function withChannel<C extends OutgoingChannel | IncomingChannel, T>(channel: C, signal: AbortSignal | undefined, use: (channel: C) => Promise<T>): Promise<T> {
  const onAbort = (): void => channel.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    signal?.throwIfAborted();
    return await use(channel);
  } catch (e) {
    signal?.throwIfAborted();
    throw e;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    await channel.close();
  }
}
