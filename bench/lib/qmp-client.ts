// A small QMP client (QEMU's docs/interop/qmp-spec.rst) for the benchmarks:
// connect to a monitor's unix socket, negotiate capabilities, execute commands
// one at a time by id and keep the events. The same code drives QEMU and
// tsvmm, so both are measured through the one protocol.
import { createConnection, type Socket } from 'node:net';

export interface QmpEvent {
  event: string;
  data?: unknown;
  timestamp: { seconds: number; microseconds: number };
}

/** A command the monitor answered with {"error": ...}. */
export class QmpError extends Error {
  constructor(readonly command: string, readonly errorClass: string, readonly desc: string) {
    super(`QMP ${command}: ${errorClass}: ${desc}`);
  }
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class QmpClient {
  readonly events: QmpEvent[] = [];
  private buffered = '';
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private greeting: ((value: unknown) => void) | null = null;
  private closedError: Error | null = null;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.receive(chunk));
    socket.on('close', () => this.fail(new Error('QMP: the monitor closed the connection')));
    socket.on('error', (error) => this.fail(error));
  }

  /**
   * Connects to the monitor at a unix socket path, retrying while the VMM has
   * not created it yet, and negotiates capabilities.
   */
  static async connect(path: string, timeoutMs: number): Promise<QmpClient> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const socket = await new Promise<Socket>((resolve, reject) => {
          const s = createConnection({ path }, () => { s.off('error', reject); resolve(s); });
          s.once('error', reject);
        });
        const client = new QmpClient(socket);
        await client.negotiate(Math.max(1000, deadline - Date.now()));
        return client;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if ((code !== 'ENOENT' && code !== 'ECONNREFUSED') || Date.now() > deadline) {
          throw new Error(`QMP ${path}: ${(error as Error).message}`);
        }
        await sleep(20);
      }
    }
  }

  private async negotiate(timeoutMs: number): Promise<void> {
    await withTimeout(new Promise((resolve) => (this.greeting = resolve)), timeoutMs, 'the QMP greeting');
    await this.execute('qmp_capabilities');
  }

  /** Runs a command and resolves with its "return" value. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = 30_000): Promise<T> {
    if (this.closedError) return Promise.reject(this.closedError);
    const id = `bench-${this.nextId++}`;
    const reply = new Promise<unknown>((resolve, reject) => this.pending.set(id, { command, resolve, reject }));
    this.socket.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\r\n`);
    return withTimeout(reply, timeoutMs, `the reply to ${command}`) as Promise<T>;
  }

  /** Resolves with the first event of this name, already received or to come. */
  async waitForEvent(name: string, timeoutMs: number): Promise<QmpEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.events.find((e) => e.event === name);
      if (found) return found;
      if (this.closedError) throw this.closedError;
      if (Date.now() > deadline) throw new Error(`QMP: no ${name} event within ${timeoutMs} ms`);
      await sleep(10);
    }
  }

  close(): void {
    this.socket.destroy();
  }

  private receive(chunk: string): void {
    this.buffered += chunk;
    let newline: number;
    while ((newline = this.buffered.indexOf('\n')) >= 0) {
      const line = this.buffered.slice(0, newline).trim();
      this.buffered = this.buffered.slice(newline + 1);
      if (line) this.message(JSON.parse(line) as Record<string, unknown>);
    }
  }

  private message(message: Record<string, unknown>): void {
    if ('QMP' in message) {
      this.greeting?.(message.QMP);
      return;
    }
    if ('event' in message) {
      this.events.push(message as unknown as QmpEvent);
      return;
    }
    const id = typeof message.id === 'string' ? message.id : null;
    const pending = id ? this.pending.get(id) : undefined;
    if (!pending) return;
    this.pending.delete(id!);
    if ('error' in message) {
      const error = message.error as { class: string; desc: string };
      pending.reject(new QmpError(pending.command, error.class, error.desc));
    } else {
      pending.resolve(message.return);
    }
  }

  private fail(error: Error): void {
    this.closedError ??= error;
    for (const p of this.pending.values()) p.reject(error);
    this.pending.clear();
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`QMP: no ${what} within ${ms} ms`)), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
