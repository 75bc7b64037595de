// QEMU's migration URIs, which name where a snapshot stream goes (migrate) or
// comes from (-incoming, migrate-incoming):
//   exec:CMD        a shell command: its stdin (outgoing) or its stdout (incoming)
//   tcp:HOST:PORT   the source connects; the destination listens for one connection
//   unix:PATH       the same over a unix socket
//   file:PATH       a file, written or read directly
import { InputError } from '../errors.ts';
import type { IncomingChannel, IncomingOptions, OpenOptions, OutgoingChannel } from './channel.ts';
import { execIncoming, execOutgoing } from './exec-channel.ts';
import { fileIncoming, fileOutgoing } from './file-channel.ts';
import { socketIncoming, socketOutgoing } from './socket-channel.ts';

export type MigrationUri =
  | { scheme: 'exec'; command: string }
  | { scheme: 'tcp'; host: string; port: number }
  | { scheme: 'unix'; path: string }
  | { scheme: 'file'; path: string };

/** Parses a migration URI; anything else is an InputError of one line. */
export function parseMigrationUri(uri: string): MigrationUri {
  const colon = uri.indexOf(':');
  const scheme = colon < 0 ? uri : uri.slice(0, colon);
  const rest = colon < 0 ? '' : uri.slice(colon + 1);
  switch (scheme) {
    case 'exec':
      if (rest.trim() === '') throw new InputError(`migrate: '${uri}' has no command (expected exec:COMMAND)`);
      return { scheme, command: rest };
    case 'unix':
    case 'file':
      if (rest === '') throw new InputError(`migrate: '${uri}' has no path (expected ${scheme}:PATH)`);
      return { scheme, path: rest };
    case 'tcp':
      return { scheme, ...parseHostPort(uri, rest) };
    default:
      throw new InputError(`migrate: unknown URI scheme '${scheme}' (expected exec:, tcp:, unix: or file:)`);
  }
}

/** HOST:PORT, [IPV6]:PORT, or :PORT (every address, when listening). */
function parseHostPort(uri: string, text: string): { host: string; port: number } {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) throw new InputError(`migrate: '${uri}' is not tcp:HOST:PORT`);
  return { host: match[1] ?? match[2]!, port };
}

/** Opens where `migrate` sends a snapshot stream. */
export async function openOutgoing(uri: string, options: OpenOptions = {}): Promise<OutgoingChannel> {
  const target = parseMigrationUri(uri);
  switch (target.scheme) {
    case 'exec': return execOutgoing(uri, target.command);
    case 'file': return fileOutgoing(uri, target.path);
    case 'unix': return socketOutgoing(uri, { path: target.path }, options);
    case 'tcp':
      if (target.host === '') throw new InputError(`migrate: '${uri}' has no host to connect to`);
      return socketOutgoing(uri, target, options);
  }
}

/**
 * Opens where an incoming snapshot stream comes from. For tcp: and unix:, it
 * listens and resolves once the source has connected (options.signal stops
 * the wait).
 */
export async function openIncoming(uri: string, options: IncomingOptions = {}): Promise<IncomingChannel> {
  const source = parseMigrationUri(uri);
  switch (source.scheme) {
    case 'exec': return execIncoming(uri, source.command);
    case 'file': return fileIncoming(uri, source.path);
    case 'unix': return socketIncoming(uri, { path: source.path }, options);
    case 'tcp': return socketIncoming(uri, source, options);
  }
}
