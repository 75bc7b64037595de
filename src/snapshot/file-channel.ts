// file:PATH, a convenience beside exec:cat: the snapshot goes straight into a
// file (created or truncated) and comes straight out of one.
import { open } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import { InputError } from '../errors.ts';
import type { IncomingChannel, OutgoingChannel } from './channel.ts';
import { RAM_RECORD_MAX_BYTES } from './format.ts';
import { systemErrorText } from './system-error.ts';

export async function fileOutgoing(uri: string, path: string): Promise<OutgoingChannel> {
  const handle = await open(path, 'w').catch((e: unknown) => {
    throw new InputError(`${uri}: cannot create: ${systemErrorText(e)}`);
  });
  const stream = handle.createWriteStream();
  const failed = watchErrors(stream);
  let aborted = false;
  return {
    uri,
    stream,
    async close() {
      if (!stream.writableEnded && !stream.destroyed) stream.end();
      await closed(stream);
      if (failed.error && !aborted) throw new InputError(`${uri}: write failed: ${systemErrorText(failed.error)}`);
    },
    abort() {
      aborted = true;
      stream.destroy();
    },
  };
}

export async function fileIncoming(uri: string, path: string): Promise<IncomingChannel> {
  const handle = await open(path, 'r').catch((e: unknown) => {
    throw new InputError(`${uri}: cannot open: ${systemErrorText(e)}`);
  });
  // Reads of four whole RAM records: a record never straddles two reads (which
  // cost a copy of it), and 64 KiB reads took 2-3 times as long to restore 256 MiB.
  const stream = handle.createReadStream({ highWaterMark: 4 * RAM_RECORD_MAX_BYTES });
  watchErrors(stream);
  return {
    uri,
    stream,
    async close() {
      stream.destroy();
      await closed(stream);
    },
    abort: () => stream.destroy(),
  };
}

/** Keeps the first error a stream reports (the writer or reader reports it too; this keeps it from going uncaught). */
function watchErrors(stream: Readable | Writable): { error: Error | undefined } {
  const seen: { error: Error | undefined } = { error: undefined };
  stream.on('error', (e) => { seen.error ??= e; });
  return seen;
}

function closed(stream: Readable | Writable): Promise<void> {
  return stream.closed ? Promise.resolve() : new Promise((resolve) => stream.once('close', () => resolve()));
}
