// The QMP monitor of one machine: every --qmp endpoint it listens on, every
// client connected to them, and the machine's events sent to each client that
// has negotiated, stamped as QEMU stamps them ({"seconds","microseconds"} of
// the host's real-time clock).
//
// The CLI's part:
//
//   const qmp = await QmpMonitor.listen(machine, endpoints.map(parseQmpEndpoint));
//   await qmp.waitForClients((where) => log(`waiting for a QMP client on ${where}`));
//   ...
//   await qmp.close();   // on quit and on every other way out
//
// MIGRATION events go out only while the "events" migration capability is
// on, as in QEMU.

import { unlinkSync } from 'node:fs';
import type { Server, Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { describeListening, listenOn, type QmpEndpoint } from './endpoint.ts';
import { QmpSession } from './session.ts';
import type { MachineControl, MachineEvent } from './target.ts';

/** How long close() lets a client's unread replies drain before the connection is cut. */
const CLOSE_GRACE_MS = 1000;

interface Listener {
  endpoint: QmpEndpoint;
  server: Server;
  /** Resolves at the first connection (or at close). */
  firstClient: Promise<void>;
}

/** QEMU's event timestamp: wall-clock time in seconds and microseconds. */
export function eventTimestamp(): { seconds: number; microseconds: number } {
  const micros = Math.round((performance.timeOrigin + performance.now()) * 1000);
  return { seconds: Math.floor(micros / 1e6), microseconds: micros % 1e6 };
}

export class QmpMonitor {
  private readonly sessions = new Map<Socket, QmpSession>();
  private readonly listeners: Listener[] = [];
  private closed = false;
  private releaseWaiters: () => void = () => {};
  private readonly closing = new Promise<void>((resolve) => { this.releaseWaiters = resolve; });

  private constructor(private readonly machine: MachineControl) {
    machine.onEvent((event) => this.broadcast(event));
  }

  /** Listens on every endpoint; throws InputError (and listens on none) if one cannot be used. */
  static async listen(machine: MachineControl, endpoints: QmpEndpoint[]): Promise<QmpMonitor> {
    const monitor = new QmpMonitor(machine);
    try {
      for (const endpoint of endpoints) await monitor.addListener(endpoint);
    } catch (e) {
      await monitor.close();
      throw e;
    }
    return monitor;
  }

  /** Where each endpoint listens, in --qmp spelling, in the order given. */
  get addresses(): string[] {
    return this.listeners.map(({ endpoint, server }) => describeListening(endpoint, server));
  }

  /** Resolves once every wait=on endpoint has had a client (QEMU holds the guest until then), or at close. */
  async waitForClients(onWaiting?: (address: string) => void): Promise<void> {
    for (const listener of this.listeners) {
      if (!listener.endpoint.wait) continue;
      onWaiting?.(describeListening(listener.endpoint, listener.server));
      await listener.firstClient;
    }
  }

  /** Stops listening, lets clients read what was sent to them, disconnects them, removes the unix sockets. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.releaseWaiters();
    const serversClosed = this.listeners.map(({ server }) => new Promise<void>((resolve) => server.close(() => resolve())));
    for (const { endpoint } of this.listeners) {
      if (endpoint.transport === 'unix') {
        try { unlinkSync(endpoint.path); } catch { /* already gone */ }
      }
    }
    await Promise.all([...this.sessions.keys()].map((socket) => endGracefully(socket)));
    await Promise.all(serversClosed);
  }

  private async addListener(endpoint: QmpEndpoint): Promise<void> {
    let firstConnection: () => void = () => {};
    const firstClient = new Promise<void>((resolve) => { firstConnection = resolve; });
    const server = await listenOn(endpoint, (socket) => {
      firstConnection();
      this.accept(socket);
    });
    // Accept failures (EMFILE) must not end tsvmm; the client just does not get in.
    server.on('error', () => {});
    this.listeners.push({ endpoint, server, firstClient: Promise.race([firstClient, this.closing]) });
  }

  private accept(socket: Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    const session = new QmpSession(socket, this.machine);
    this.sessions.set(socket, session);
    socket.on('close', () => this.sessions.delete(socket));
    session.start();
  }

  private broadcast(event: MachineEvent): void {
    if (this.closed) return;
    if (event.event === 'MIGRATION' && this.machine.migrationCapabilities()['events'] !== true) return;
    const message: Record<string, unknown> = { timestamp: eventTimestamp(), event: event.event };
    if ('data' in event) message['data'] = event.data;
    for (const session of this.sessions.values()) session.sendEvent(message);
  }
}

function endGracefully(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed) {
      resolve();
      return;
    }
    const cut = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS);
    socket.once('close', () => {
      clearTimeout(cut);
      resolve();
    });
    socket.end();
  });
}
