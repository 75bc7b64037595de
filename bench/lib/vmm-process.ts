// A VMM process whose guest prints lines (the counter guest's `count N`),
// each line stamped with when it arrived, ns after spawn() on the
// CLOCK_MONOTONIC that TSVMM_TIMING also uses (see bench/lib/process.ts).
// For the benchmarks that act on a running guest and time what it prints
// after: snapshot, restore, migration.
import { spawn, type ChildProcess } from 'node:child_process';

export interface StampedLine {
  text: string;
  /** ns after spawn(). */
  atNs: number;
  index: number;
}

export interface VmmExit {
  status: number | null;
  signal: NodeJS.Signals | null;
}

const STDERR_KEEP = 4096;

export class VmmProcess {
  readonly lines: StampedLine[] = [];
  /** TSVMM_TIMING marks, ns after spawn() (only with `timing`). */
  readonly marks: Record<string, number> = {};
  readonly exited: Promise<VmmExit>;
  stderr = '';
  private exit: VmmExit | null = null;
  private partial = '';
  private readonly started: bigint;
  private readonly child: ChildProcess;
  private readonly waiters = new Set<() => void>();

  constructor(readonly what: string, command: string, args: string[], options: { timing?: boolean; env?: NodeJS.ProcessEnv } = {}) {
    const stdio: ('ignore' | 'pipe')[] = ['pipe', 'pipe', 'pipe'];
    if (options.timing) stdio.push('pipe');
    const env = { ...process.env, ...options.env, ...(options.timing ? { TSVMM_TIMING: '3' } : {}) };
    this.started = process.hrtime.bigint();
    this.child = spawn(command, args, { stdio, env });
    this.child.stdout!.setEncoding('latin1');
    this.child.stdout!.on('data', (chunk: string) => this.receive(chunk));
    this.child.stderr!.on('data', (chunk: Buffer) => (this.stderr = (this.stderr + chunk.toString('utf8')).slice(-STDERR_KEEP)));
    if (options.timing) {
      let text = '';
      (this.child.stdio[3] as NodeJS.ReadableStream).on('data', (chunk: Buffer) => {
        text += chunk.toString('utf8');
        for (const m of text.matchAll(/^tsvmm-timing (\S+) (\d+)$/gm)) {
          if (!(m[1]! in this.marks)) this.marks[m[1]!] = Number(BigInt(m[2]!) - this.started);
        }
      });
    }
    this.exited = new Promise((resolve) => {
      this.child.on('error', (error) => {
        this.stderr += `${error.message}\n`;
        this.exit = { status: null, signal: null };
        this.wake();
        resolve(this.exit);
      });
      this.child.on('close', (status, signal) => {
        this.exit = { status, signal };
        this.wake();
        resolve(this.exit);
      });
    });
  }

  /** ns since spawn(), now. */
  now(): number {
    return Number(process.hrtime.bigint() - this.started);
  }

  /** Types into the guest's console (the VMM's stdin). */
  type(text: string): void {
    this.child.stdin!.write(text);
  }

  /**
   * The first line from `fromIndex` on that `accept` takes. Rejects when the
   * process ends first or after `timeoutMs`, naming what it printed last.
   */
  async waitForLine(accept: (line: string) => boolean, timeoutMs: number, fromIndex = 0, what = 'the line awaited'): Promise<StampedLine> {
    const deadline = Date.now() + timeoutMs;
    for (let at = fromIndex; ;) {
      for (; at < this.lines.length; at++) if (accept(this.lines[at]!.text)) return this.lines[at]!;
      if (this.exit) throw this.failure(`ended (${this.describeExit()}) before ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw this.failure(`printed no ${what} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left);
        const waiters = this.waiters;
        function done() {
          clearTimeout(timer);
          waiters.delete(done);
          resolve();
        }
        waiters.add(done);
      });
    }
  }

  /** Kills the process (SIGKILL) unless it has ended, and waits for its end. */
  async kill(): Promise<VmmExit> {
    if (!this.exit) this.child.kill('SIGKILL');
    return this.exited;
  }

  /** Waits up to `timeoutMs` for the process to end by itself, then kills it. */
  async finish(timeoutMs: number): Promise<VmmExit> {
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  describeExit(): string {
    if (!this.exit) return 'running';
    return this.exit.signal ? `signal ${this.exit.signal}` : `status ${this.exit.status}`;
  }

  failure(message: string): Error {
    const lastLine = this.lines.at(-1)?.text ?? this.partial;
    const stderr = this.stderr.trim().split('\n').slice(-2).join(' / ');
    return new Error(`${this.what} ${message}${lastLine ? `; last line: ${JSON.stringify(lastLine)}` : ''}${stderr ? `; stderr: ${stderr}` : ''}`);
  }

  private receive(chunk: string): void {
    const atNs = this.now();
    const parts = (this.partial + chunk).split('\n');
    this.partial = parts.pop()!;
    for (const text of parts) this.lines.push({ text: text.replace(/\r$/, ''), atNs, index: this.lines.length });
    if (parts.length) this.wake();
    // A prompt does not end in a newline: let waiters see it too.
    if (this.partial) this.wake();
  }

  /** The unfinished last line (a shell prompt). */
  get pendingText(): string {
    return this.partial;
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}
