// One QMP client connection, as docs/interop/qmp-spec.rst describes it:
//
//   1. the server greets: {"QMP":{"version":...,"capabilities":[]}}
//   2. the client negotiates with qmp_capabilities; until then every other
//      command is CommandNotFound "Expecting capabilities negotiation..."
//   3. commands {"execute","arguments"?,"id"?} get {"return"} or
//      {"error":{"class","desc"}}, with "id" echoed whatever its JSON type;
//      events reach the client only from here on.
//
// The envelope checks and their strings are QEMU 7.2's (qmp-dispatch.c).
// tsvmm offers no capabilities, so `exec-oob` is an unexpected member, as in
// a QEMU whose monitor does not offer oob. Commands from one client run one
// at a time, in order; a client that sends faster than they complete stops
// being read until the backlog drains, as QEMU's request queue does.

import type { Socket } from 'node:net';
import { checkArguments, isObject } from './arguments.ts';
import { COMMANDS, runCommand, type CommandContext } from './commands.ts';
import { JsonSplitter, type SplitResult } from './json-splitter.ts';
import { MonitorError, type MachineControl } from './target.ts';
import { VERSION_INFO } from './version.ts';

/** Requests waiting behind a running one before the socket stops being read (QEMU's QMP_REQ_QUEUE_LEN_MAX). */
const MAX_QUEUED_REQUESTS = 8;
/** A client that lets this much output pile up unread is dropped rather than fill tsvmm's memory. */
const MAX_UNREAD_OUTPUT = 16 * 1024 * 1024;

const COMMAND_NAMES = ['qmp_capabilities', ...Object.keys(COMMANDS)];

type Reply = Record<string, unknown>;

export class QmpSession {
  /** True once qmp_capabilities succeeded: from then on the client receives events. */
  negotiated = false;
  private readonly splitter = new JsonSplitter();
  private readonly backlog: SplitResult[] = [];
  private running = false;
  private readonly context: CommandContext;

  constructor(private readonly socket: Socket, machine: MachineControl) {
    this.context = { machine, commandNames: COMMAND_NAMES };
  }

  start(): void {
    this.send({ QMP: { version: VERSION_INFO, capabilities: [] } });
    this.socket.on('data', (chunk: Buffer) => {
      this.backlog.push(...this.splitter.push(chunk));
      if (this.backlog.length > MAX_QUEUED_REQUESTS) this.socket.pause();
      void this.drain();
    });
    // The socket's 'close' follows an error; the monitor forgets the session there.
    this.socket.on('error', () => {});
  }

  /** Sends an event (already shaped) if the client has negotiated. */
  sendEvent(message: Reply): void {
    if (this.negotiated) this.send(message);
  }

  private async drain(): Promise<void> {
    if (this.running) return;
    this.running = true;
    for (let request = this.backlog.shift(); request !== undefined; request = this.backlog.shift()) {
      await this.handle(request);
      if (this.backlog.length <= MAX_QUEUED_REQUESTS) this.socket.resume();
    }
    this.running = false;
  }

  private async handle(request: SplitResult): Promise<void> {
    if ('error' in request) {
      this.send(errorReply(new MonitorError(request.error), undefined));
      return;
    }
    let message: unknown;
    try {
      message = JSON.parse(request.text);
    } catch (e) {
      // Node's text names the token and quotes the input; keep the first part.
      const reason = (e as Error).message.split(', "')[0];
      this.send(errorReply(new MonitorError(`JSON parse error, ${reason}`), undefined));
      return;
    }
    if (!isObject(message)) {
      this.send(errorReply(new MonitorError('QMP input must be a JSON object'), undefined));
      return;
    }
    const id = Object.hasOwn(message, 'id') ? { id: message['id'] } : undefined;
    let afterReply: (() => void) | undefined;
    let reply: Reply;
    try {
      const { name, args } = checkEnvelope(message);
      const result = await this.execute(name, args);
      reply = { return: result, ...id };
      const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
      if (command?.afterReply) afterReply = () => command.afterReply!(this.context);
    } catch (e) {
      reply = errorReply(e, id);
    }
    this.send(reply, afterReply);
  }

  private async execute(name: string, args: Record<string, unknown>): Promise<unknown> {
    if (name === 'qmp_capabilities') {
      const { enable } = checkArguments(args, { '*enable': { list: { enum: ['oob'] } } }) as { enable?: string[] };
      if (this.negotiated) {
        throw new MonitorError('Capabilities negotiation is already complete, command ignored', 'CommandNotFound');
      }
      // tsvmm offers no capability, so any that is asked for is unavailable.
      if (enable !== undefined && enable.length > 0) {
        throw new MonitorError(`Capability ${enable.join(', ')} not available`);
      }
      this.negotiated = true;
      return {};
    }
    if (!this.negotiated) {
      throw new MonitorError("Expecting capabilities negotiation with 'qmp_capabilities'", 'CommandNotFound');
    }
    if (!Object.hasOwn(COMMANDS, name)) throw new MonitorError(`The command ${name} has not been found`, 'CommandNotFound');
    return runCommand(name, args, this.context);
  }

  private send(message: Reply, afterWrite?: () => void): void {
    if (this.socket.destroyed || !this.socket.writable) {
      afterWrite?.();
      return;
    }
    this.socket.write(`${JSON.stringify(message)}\r\n`, () => afterWrite?.());
    if (this.socket.writableLength > MAX_UNREAD_OUTPUT) this.socket.destroy();
  }
}

/** QEMU's qmp_dispatch_check_obj: the members a request may have, checked in the order it gives them. */
function checkEnvelope(message: Record<string, unknown>): { name: string; args: Record<string, unknown> } {
  for (const [key, value] of Object.entries(message)) {
    if (key === 'id') continue;
    if (key === 'execute') {
      if (typeof value !== 'string') throw new MonitorError("QMP input member 'execute' must be a string");
    } else if (key === 'arguments') {
      if (!isObject(value)) throw new MonitorError("QMP input member 'arguments' must be an object");
    } else {
      throw new MonitorError(`QMP input member '${key}' is unexpected`);
    }
  }
  if (!Object.hasOwn(message, 'execute')) throw new MonitorError("QMP input lacks member 'execute'");
  const args = message['arguments'];
  return { name: message['execute'] as string, args: isObject(args) ? args : {} };
}

function errorReply(error: unknown, id: { id: unknown } | undefined): Reply {
  const monitorError = error instanceof MonitorError ? error : new MonitorError(String((error as Error)?.message ?? error));
  return { ...id, error: { class: monitorError.errorClass, desc: monitorError.message } };
}
