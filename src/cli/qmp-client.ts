// A minimal QMP client for tsvmm's own commands (`tsvmm snapshot save`): it
// connects to a monitor, negotiates, and runs one command at a time.
import { connect, type Socket } from 'node:net';
import { InputError } from '../errors.ts';

type Reply = { return?: unknown; error?: { class: string; desc: string }; event?: string; data?: unknown };

/** An event the monitor sent, in arrival order. */
export interface QmpEvent {
  event: string;
  data?: unknown;
}

export class QmpClient {
  private buffered = '';
  private readonly waiting: ((reply: Reply) => void)[] = [];
  private closedWith: Error | null = null;
  /** Every event received so far. */
  readonly events: QmpEvent[] = [];

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (text: string) => {
      this.buffered += text;
      for (let end = this.buffered.indexOf('\n'); end >= 0; end = this.buffered.indexOf('\n')) {
        const line = this.buffered.slice(0, end).trim();
        this.buffered = this.buffered.slice(end + 1);
        if (!line) continue;
        const message = JSON.parse(line) as Reply;
        if (message.event) {
          this.events.push({ event: message.event, ...(message.data !== undefined ? { data: message.data } : {}) });
          continue;
        }
        this.waiting.shift()?.(message);
      }
    });
    const fail = (error: Error) => {
      this.closedWith = error;
      for (const resolve of this.waiting.splice(0)) resolve({ error: { class: 'GenericError', desc: error.message } });
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('the monitor closed the connection')));
  }

  /** Connects to `unix:PATH` or `tcp:HOST:PORT` (QEMU's spelling, options after a comma ignored) and negotiates. */
  static async open(endpoint: string): Promise<QmpClient> {
    const [address] = endpoint.split(',');
    const tcp = /^tcp:(.*):(\d+)$/.exec(address!);
    const unix = /^unix:(.+)$/.exec(address!);
    if (!tcp && !unix) throw new InputError(`--qmp ${endpoint}: expected unix:PATH or tcp:HOST:PORT`);
    const socket = tcp ? connect(Number(tcp[2]), tcp[1]) : connect(unix![1]!);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', (e: NodeJS.ErrnoException) => reject(new InputError(`--qmp ${endpoint}: cannot connect (${e.code ?? e.message})`)));
    });
    const client = new QmpClient(socket);
    await client.next(); // the greeting
    await client.execute('qmp_capabilities');
    return client;
  }

  private next(): Promise<Reply> {
    if (this.closedWith) return Promise.resolve({ error: { class: 'GenericError', desc: this.closedWith.message } });
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Runs a command; its `return`, or an Error with the monitor's desc. */
  async execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    const reply = this.next();
    this.socket.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}) })}\n`);
    const answer = await reply;
    if (answer.error) throw new Error(`${command}: ${answer.error.desc}`);
    return answer.return;
  }

  close(): void {
    this.socket.end();
  }
}
