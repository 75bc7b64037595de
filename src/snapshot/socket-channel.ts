// tcp:HOST:PORT and unix:PATH. The source connects; the destination listens,
// takes the first connection and stops listening (one migration, one
// source), as QEMU's -incoming does.
import { lstatSync, unlinkSync } from 'node:fs';
import { createServer, connect, type Socket, type AddressInfo } from 'node:net';
import { InputError } from '../errors.ts';
import type { IncomingChannel, IncomingOptions, OpenOptions, OutgoingChannel } from './channel.ts';
import { systemErrorText } from './system-error.ts';

/** Where a socket channel goes: an IP host and port, or a unix socket path. */
export type SocketAddress = { host: string; port: number } | { path: string };

/** tcp:HOST:PORT (IPv6 hosts in brackets) or unix:PATH. */
export function socketUri(address: SocketAddress): string {
  if ('path' in address) return `unix:${address.path}`;
  return `tcp:${address.host.includes(':') ? `[${address.host}]` : address.host}:${address.port}`;
}

export async function socketOutgoing(uri: string, address: SocketAddress, options: OpenOptions = {}): Promise<OutgoingChannel> {
  const socket = 'path' in address ? connect({ path: address.path }) : connect({ host: address.host, port: address.port });
  let lost: Error | undefined;
  let aborted = false;
  await new Promise<void>((resolve, reject) => {
    const onAbort = (): void => {
      socket.destroy();
      reject(options.signal!.reason as Error);
    };
    if (options.signal?.aborted) return onAbort();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('connect', () => {
      options.signal?.removeEventListener('abort', onAbort);
      resolve();
    });
    socket.once('error', (e) => {
      options.signal?.removeEventListener('abort', onAbort);
      reject(new InputError(`${uri}: cannot connect: ${systemErrorText(e)}`));
    });
  });
  socket.on('error', (e) => { lost ??= e; });
  return {
    uri,
    stream: socket,
    async close() {
      if (!socket.writableEnded && !socket.destroyed) socket.end();
      await closed(socket);
      if (lost && !aborted) throw new InputError(`${uri}: connection lost: ${systemErrorText(lost)}`);
    },
    abort() {
      aborted = true;
      socket.destroy();
    },
  };
}

export async function socketIncoming(uri: string, address: SocketAddress, options: IncomingOptions = {}): Promise<IncomingChannel> {
  if ('path' in address) removeStaleSocket(uri, address.path);
  const server = createServer();
  let bound: string = uri;
  const socket = await new Promise<Socket>((resolve, reject) => {
    const stop = (error: Error): void => {
      options.signal?.removeEventListener('abort', onAbort);
      server.close();
      reject(error);
    };
    const onAbort = (): void => stop(options.signal!.reason as Error);
    if (options.signal?.aborted) return reject(options.signal.reason as Error);
    options.signal?.addEventListener('abort', onAbort, { once: true });
    server.once('error', (e) => stop(new InputError(`${uri}: cannot listen: ${systemErrorText(e)}`)));
    server.once('listening', () => {
      if (!('path' in address)) bound = socketUri({ host: address.host, port: (server.address() as AddressInfo).port });
      options.onListening?.(bound);
    });
    server.on('connection', (peer) => {
      if (!server.listening) return peer.destroy();
      options.signal?.removeEventListener('abort', onAbort);
      // One source: stop listening; a second connection that raced in is refused.
      server.close();
      resolve(peer);
    });
    if ('path' in address) server.listen(address.path);
    else server.listen(address.port, address.host || undefined);
  });
  // A reset connection reaches the reader as a read error; this keeps a late one from being uncaught.
  socket.on('error', () => {});
  return {
    uri: bound,
    stream: socket,
    async close() {
      // Read to the end: the source's half is closed, end ours. Stopped early: drop it.
      if (socket.readableEnded) socket.end();
      else socket.destroy();
      await closed(socket);
    },
    abort: () => socket.destroy(),
  };
}

function closed(socket: Socket): Promise<void> {
  return socket.closed ? Promise.resolve() : new Promise((resolve) => socket.once('close', () => resolve()));
}

/** A socket file left by an earlier listener is replaced (as QEMU does); any other file is not. */
function removeStaleSocket(uri: string, path: string): void {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return;
  }
  if (!isSocket) throw new InputError(`${uri}: ${path} exists and is not a socket`);
  unlinkSync(path);
}
