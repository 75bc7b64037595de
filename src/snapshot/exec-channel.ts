// exec:CMD, QEMU's way to put a snapshot anywhere a shell command can: the
// command runs under `sh -c`; an outgoing stream is its stdin ("exec:cat >
// FILE"), an incoming one its stdout ("exec:cat FILE"). It runs in a process
// group of its own so that an abort stops the whole pipeline, not only sh.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { InputError } from '../errors.ts';
import type { IncomingChannel, OutgoingChannel } from './channel.ts';
import { systemErrorText } from './system-error.ts';

/** How much of the command's stderr is kept for its failure message. */
const STDERR_TAIL_BYTES = 4096;

/** A running command and what the channel needs to know of its end. */
class Command {
  private stderrTail = '';
  private abortedByUs = false;
  /** Settles with the command's failure (undefined when it exited 0) once it has exited and closed its stdio. */
  readonly outcome: Promise<string | undefined>;

  private constructor(readonly uri: string, private readonly child: ChildProcess) {
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (text: string) => { this.stderrTail = (this.stderrTail + text).slice(-STDERR_TAIL_BYTES); });
    this.outcome = new Promise((resolve) => {
      child.once('close', (code, signal) => {
        if (code === 0) resolve(undefined);
        else resolve(signal ? `killed by ${signal}` : `exit status ${code}`);
      });
    });
  }

  /** Starts `sh -c command`; rejects if it could not start at all. */
  static async start(uri: string, command: string, stdio: 'stdin' | 'stdout'): Promise<Command> {
    const child = spawn('sh', ['-c', command], {
      stdio: stdio === 'stdin' ? ['pipe', 'ignore', 'pipe'] : ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (e) => reject(new InputError(`${uri}: cannot start sh: ${systemErrorText(e)}`)));
    });
    return new Command(uri, child);
  }

  get stdin(): Writable {
    return this.child.stdin!;
  }

  get stdout(): Readable {
    return this.child.stdout!;
  }

  /** Waits for the command to end; throws its failure unless abort() stopped it. */
  async finished(): Promise<void> {
    const failure = await this.outcome;
    if (failure === undefined || this.abortedByUs) return;
    const lastLine = this.stderrTail.trim().split('\n').pop()?.trim();
    throw new InputError(`${this.uri}: the command failed with ${failure}${lastLine ? ` (${lastLine})` : ''}`);
  }

  abort(): void {
    this.abortedByUs = true;
    this.child.stdin?.destroy();
    this.child.stdout?.destroy();
    if (this.child.exitCode === null && this.child.signalCode === null) {
      try {
        process.kill(-this.child.pid!, 'SIGTERM');
      } catch {
        // The group is already gone.
      }
    }
  }
}

export async function execOutgoing(uri: string, command: string): Promise<OutgoingChannel> {
  const cmd = await Command.start(uri, command, 'stdin');
  // The writer reports write errors (EPIPE when the command stops reading); this keeps one
  // that comes after the writer is done from being an uncaught 'error' event.
  cmd.stdin.on('error', () => {});
  return {
    uri,
    stream: cmd.stdin,
    async close() {
      if (!cmd.stdin.writableEnded && !cmd.stdin.destroyed) cmd.stdin.end();
      await cmd.finished();
    },
    abort: () => cmd.abort(),
  };
}

export async function execIncoming(uri: string, command: string): Promise<IncomingChannel> {
  const cmd = await Command.start(uri, command, 'stdout');
  cmd.stdout.on('error', () => {});
  return {
    uri,
    stream: cmd.stdout,
    async close() {
      // A reader that stopped early (a damaged stream) does not wait for the rest,
      // and a command cut off that way has not failed by itself.
      if (!cmd.stdout.readableEnded) cmd.abort();
      await cmd.finished();
    },
    abort: () => cmd.abort(),
  };
}
