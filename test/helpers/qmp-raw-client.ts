// A QMP client made of a bare socket, for probing the protocol's edges: it
// sends exactly the bytes a test gives and hands back each message the server
// sent, checking on the way that every one is a single JSON object on its own
// line ending in CRLF. Every wait is bounded.

import { createConnection, type Socket } from 'node:net';

const WAIT_MS = 5000;

export class RawQmpClient {
  private buffered = '';
  private readonly messages: Array<Record<string, unknown>> = [];
  private wake: (() => void) | null = null;
  private ended = false;
  /** A line that was not one JSON object ending in CRLF: the test fails on it. */
  readonly framingFaults: string[] = [];

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.receive(chunk));
    socket.on('close', () => { this.ended = true; this.wake?.(); });
    socket.on('error', () => {});
  }

  static connect(address: string | { host: string; port: number }): Promise<RawQmpClient> {
    return new Promise((resolve, reject) => {
      const socket = typeof address === 'string' ? createConnection(address) : createConnection(address);
      socket.once('connect', () => resolve(new RawQmpClient(socket)));
      socket.once('error', reject);
    });
  }

  /** Connects, reads the greeting and negotiates. */
  static async negotiated(address: string | { host: string; port: number }): Promise<RawQmpClient> {
    const client = await RawQmpClient.connect(address);
    await client.next();
    const reply = await client.command({ execute: 'qmp_capabilities' });
    if (!('return' in reply)) throw new Error(`negotiation failed: ${JSON.stringify(reply)}`);
    return client;
  }

  private receive(chunk: string): void {
    this.buffered += chunk;
    for (let end = this.buffered.indexOf('\n'); end >= 0; end = this.buffered.indexOf('\n')) {
      const line = this.buffered.slice(0, end + 1);
      this.buffered = this.buffered.slice(end + 1);
      if (!line.endsWith('\r\n')) this.framingFaults.push(line);
      try {
        const message: unknown = JSON.parse(line);
        if (typeof message !== 'object' || message === null || Array.isArray(message)) this.framingFaults.push(line);
        else this.messages.push(message as Record<string, unknown>);
      } catch {
        this.framingFaults.push(line);
      }
    }
    this.wake?.();
  }

  send(raw: string | Uint8Array): void {
    this.socket.write(raw);
  }

  /** The next message, event or reply. */
  async next(): Promise<Record<string, unknown>> {
    const deadline = Date.now() + WAIT_MS;
    while (this.messages.length === 0) {
      if (this.ended) throw new Error('the server closed the connection');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no QMP message within ${WAIT_MS} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => { clearTimeout(timer); resolve(); };
      });
      this.wake = null;
    }
    return this.messages.shift()!;
  }

  /** The next reply ({"return"} or {"error"}), collecting the events that came before it. */
  async reply(events: Array<Record<string, unknown>> = []): Promise<Record<string, unknown>> {
    for (;;) {
      const message = await this.next();
      if ('event' in message) events.push(message);
      else return message;
    }
  }

  /** Sends one request (an object, or raw text sent as it is) with CRLF and returns its reply. */
  async command(request: object | string, events?: Array<Record<string, unknown>>): Promise<Record<string, unknown>> {
    this.send(`${typeof request === 'string' ? request : JSON.stringify(request)}\r\n`);
    return this.reply(events);
  }

  /** Messages received but not yet read. */
  get unread(): number {
    return this.messages.length;
  }

  get closed(): boolean {
    return this.ended;
  }

  close(): void {
    this.socket.destroy();
  }
}
