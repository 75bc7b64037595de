// `tsvmm run --serial unix:PATH,server=on,wait=off` (QEMU's -serial spelling):
// the guest's console on a unix socket instead of the terminal, so a VM
// running in the background can be attached to and detached from
// (`tsvmm console NAME`). The machine writes console bytes to the write end
// of a pipe, as it would to stdout; this end reads them, hands them to every
// client connected, and appends them to a log file when asked.
import { createReadStream, createWriteStream, existsSync, unlinkSync, type WriteStream } from 'node:fs';
import type { Server, Socket } from 'node:net';
import { InputError } from '../errors.ts';
import { closeFd, createPipe } from '../kvm/index.ts';
import { listenOn } from '../qmp/endpoint.ts';

export interface SerialSocketSpec {
  path: string;
  /** Where every console byte is also written (appended). */
  logFile?: string;
}

/** `unix:PATH[,server=on][,wait=off][,logfile=FILE]`; only a listening socket that does not wait is supported. */
export function parseSerialSpec(text: string): SerialSocketSpec {
  const [address, ...options] = text.split(',');
  const unix = /^unix:(.+)$/.exec(address!);
  if (!unix) throw new InputError(`--serial ${text}: expected unix:PATH,server=on,wait=off`);
  const spec: SerialSocketSpec = { path: unix[1]! };
  for (const option of options) {
    const [key, value] = option.split('=');
    if ((key === 'server' && (value === undefined || value === 'on')) || key === 'nowait' || (key === 'wait' && value === 'off')) continue;
    if (key === 'logfile' && value) spec.logFile = value;
    else throw new InputError(`--serial ${text}: unsupported option '${option}' (tsvmm listens and does not wait: server=on,wait=off)`);
  }
  return spec;
}

export class SerialSocket {
  /** The fd the machine writes console bytes to (its consoleFd). */
  readonly consoleFd: number;
  private readonly clients = new Set<Socket>();
  private readonly log: WriteStream | null;
  private readonly reading: Promise<void>;
  private readonly onInput: (bytes: Uint8Array) => void;

  private constructor(private readonly server: Server, private readonly spec: SerialSocketSpec, onInput: (bytes: Uint8Array) => void) {
    const pipe = createPipe();
    this.consoleFd = pipe.write;
    this.log = spec.logFile ? createWriteStream(spec.logFile, { flags: 'a' }) : null;
    const output = createReadStream('', { fd: pipe.read, autoClose: true });
    this.reading = new Promise((resolve) => output.on('close', resolve).on('error', () => resolve()));
    output.on('data', (chunk: string | Buffer) => {
      this.log?.write(chunk);
      for (const client of this.clients) client.write(chunk);
    });
    this.onInput = onInput;
  }

  private accept(client: Socket): void {
    this.clients.add(client);
    client.on('data', (bytes: Buffer) => this.onInput(new Uint8Array(bytes)));
    const gone = () => this.clients.delete(client);
    client.on('close', gone).on('error', gone);
  }

  /** Listens at the spec's path (a stale socket file is replaced, a live one refused); `onInput` takes what clients type. */
  static async listen(spec: SerialSocketSpec, onInput: (bytes: Uint8Array) => void): Promise<SerialSocket> {
    let accept: (client: Socket) => void = () => {};
    const server = await listenOn({ transport: 'unix', path: spec.path, wait: false, spec: `unix:${spec.path}` }, (client) => accept(client), '--serial');
    const serial = new SerialSocket(server, spec, onInput);
    accept = (client) => serial.accept(client);
    return serial;
  }

  /** Stops listening, ends every client, and lets the last console bytes through. */
  async close(): Promise<void> {
    closeFd(this.consoleFd);
    await this.reading;
    for (const client of this.clients) client.end();
    await new Promise((resolve) => this.server.close(resolve));
    if (existsSync(this.spec.path)) unlinkSync(this.spec.path);
    await new Promise((resolve) => (this.log ? this.log.end(resolve) : resolve(undefined)));
  }
}
