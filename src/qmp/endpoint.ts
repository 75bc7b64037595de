// Where a QMP monitor listens, in QEMU's --qmp spelling:
//
//   unix:PATH[,server=on|off][,wait=on|off]
//   tcp:HOST:PORT[,server=on|off][,wait=on|off]     (HOST may be empty or [v6])
//
// with QEMU's short forms `server` and `nowait`, and `,,` for a comma inside
// PATH. As in QEMU, server defaults to off and wait to on: `unix:PATH,server`
// holds the guest until a client connects. tsvmm is always the server: a
// monitor that connects out (server=off) is refused in one line.
//
// Listening on a unix socket replaces a stale socket file (one nobody
// accepts on, left by a process that died) and refuses a live one.

import { lstatSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { InputError } from '../errors.ts';

export type QmpEndpoint =
  | { transport: 'unix'; path: string; wait: boolean; spec: string }
  | { transport: 'tcp'; host: string; port: number; wait: boolean; spec: string };

/** sun_path holds 108 bytes with the terminating NUL. */
const MAX_UNIX_PATH_BYTES = 107;

function parseBool(spec: string, name: string, value: string): boolean {
  if (['on', 'yes', 'true', 'y'].includes(value)) return true;
  if (['off', 'no', 'false', 'n'].includes(value)) return false;
  throw new InputError(`--qmp ${spec}: ${name}=${value}: use on or off`);
}

/** Splits on single commas; ",," is a literal comma (QemuOpts escaping). */
function splitOptions(spec: string): string[] {
  const parts: string[] = [''];
  for (let i = 0; i < spec.length; i++) {
    if (spec[i] === ',' && spec[i + 1] === ',') {
      parts[parts.length - 1] += ',';
      i++;
    } else if (spec[i] === ',') parts.push('');
    else parts[parts.length - 1] += spec[i];
  }
  return parts;
}

export function parseQmpEndpoint(spec: string): QmpEndpoint {
  const [address = '', ...options] = splitOptions(spec);
  let server = false;
  let wait = true;
  for (const option of options) {
    const equals = option.indexOf('=');
    const name = equals < 0 ? option : option.slice(0, equals);
    const value = equals < 0 ? 'on' : option.slice(equals + 1);
    if (name === 'server') server = parseBool(spec, name, value);
    else if (name === 'wait') wait = parseBool(spec, name, value);
    else if (name === 'nowait' && equals < 0) wait = false;
    else throw new InputError(`--qmp ${spec}: unknown option '${option}' (tsvmm knows server=on|off and wait=on|off)`);
  }
  if (!server) {
    throw new InputError(`--qmp ${spec}: tsvmm only listens for QMP clients: add server=on (QEMU's client mode, server=off, is not supported)`);
  }
  if (address.startsWith('unix:')) {
    const path = address.slice('unix:'.length);
    if (path === '') throw new InputError(`--qmp ${spec}: unix: needs a socket path`);
    if (Buffer.byteLength(path) > MAX_UNIX_PATH_BYTES) {
      throw new InputError(`--qmp ${spec}: the socket path is longer than ${MAX_UNIX_PATH_BYTES} bytes, the most a unix socket address holds`);
    }
    return { transport: 'unix', path, wait, spec };
  }
  if (address.startsWith('tcp:')) {
    const match = /^tcp:(\[[^\]]*\]|[^:]*):([0-9]+)$/.exec(address);
    const port = match ? Number(match[2]) : NaN;
    if (!match || port > 65535) throw new InputError(`--qmp ${spec}: use tcp:HOST:PORT with a port from 0 to 65535`);
    const host = match[1]!.replace(/^\[(.*)\]$/, '$1');
    return { transport: 'tcp', host, port, wait, spec };
  }
  throw new InputError(`--qmp ${spec}: tsvmm's QMP monitor listens on unix:PATH or tcp:HOST:PORT`);
}

function connectsTo(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe: Socket = createConnection(path);
    probe.once('connect', () => { probe.destroy(); resolve(true); });
    probe.once('error', () => resolve(false));
  });
}

async function clearStaleSocket(endpoint: QmpEndpoint & { transport: 'unix' }, option: string): Promise<void> {
  let stat;
  try {
    stat = lstatSync(endpoint.path);
  } catch {
    return;
  }
  if (!stat.isSocket()) throw new InputError(`${option} ${endpoint.spec}: ${endpoint.path} exists and is not a socket`);
  if (await connectsTo(endpoint.path)) {
    throw new InputError(`${option} ${endpoint.spec}: another process is listening on ${endpoint.path}`);
  }
  unlinkSync(endpoint.path);
}

/**
 * Listens on the endpoint; every accepted connection goes to onConnection.
 * `option` names the endpoint's flag in errors (the serial console's socket listens the same way).
 */
export async function listenOn(endpoint: QmpEndpoint, onConnection: (socket: Socket) => void, option = '--qmp'): Promise<Server> {
  if (endpoint.transport === 'unix') await clearStaleSocket(endpoint, option);
  const server = createServer(onConnection);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => {
      reject(new InputError(`${option} ${endpoint.spec}: cannot listen: ${e.code ?? e.message}`));
    });
    if (endpoint.transport === 'unix') server.listen(endpoint.path, resolve);
    else server.listen({ host: endpoint.host === '' ? undefined : endpoint.host, port: endpoint.port }, resolve);
  });
  return server;
}

/** Where the server really listens, in --qmp spelling (a tcp port 0 becomes the port chosen). */
export function describeListening(endpoint: QmpEndpoint, server: Server): string {
  if (endpoint.transport === 'unix') return `unix:${endpoint.path}`;
  const address = server.address();
  if (address === null || typeof address === 'string') return `tcp:${endpoint.host}:${endpoint.port}`;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `tcp:${host}:${address.port}`;
}
