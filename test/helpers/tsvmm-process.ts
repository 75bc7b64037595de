// A tsvmm process a test drives while it runs: its output as it arrives, its
// QMP monitor, and its end. Every wait is bounded.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { QmpClient } from '../../src/cli/qmp-client.ts';
import { TSVMM } from './kvm.ts';

export class TsvmmProcess {
  stdout = '';
  stderr = '';
  readonly exited: Promise<number | null>;
  private readonly child: ChildProcess;

  /**
   * With `input`, what `type` writes reaches tsvmm's stdin (the guest's console); else stdin is empty.
   * `inherit` are fds tsvmm gets as 3, 4, ... (as a domain's run lock comes).
   */
  constructor(args: string[], { input = false, inherit = [] as number[] } = {}) {
    this.child = spawn(process.execPath, [TSVMM, ...args], { stdio: [input ? 'pipe' : 'ignore', 'pipe', 'pipe', ...inherit], env: { ...process.env, NODE_NO_WARNINGS: '1' } });
    this.child.stdout!.setEncoding('utf8').on('data', (text: string) => (this.stdout += text));
    this.child.stderr!.setEncoding('utf8').on('data', (text: string) => (this.stderr += text));
    // Keys typed after tsvmm ended are lost, as on a terminal, not an error of the test's own.
    this.child.stdin?.on('error', () => {});
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }

  /** Waits until `test` holds for the output so far (polling), or fails after `timeoutMs` saying what it saw. */
  async waitFor(what: string, test: (stdout: string) => boolean, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let ended = false;
    void this.exited.then(() => (ended = true));
    while (!test(this.stdout)) {
      if (Date.now() > deadline || ended) {
        throw new Error(`waiting for ${what}: ${ended ? 'tsvmm ended' : 'timed out'}; stdout: ${this.stdout.slice(-400)}; stderr: ${this.stderr.slice(-400)}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Connects to its QMP monitor once the socket exists. */
  async monitor(endpoint: string, timeoutMs = 30_000): Promise<QmpClient> {
    const path = /^unix:([^,]+)/.exec(endpoint)?.[1];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (!path || existsSync(path)) {
        try {
          return await QmpClient.open(endpoint);
        } catch (e) {
          if (Date.now() > deadline) throw e;
        }
      }
      if (Date.now() > deadline) throw new Error(`no monitor at ${endpoint} after ${timeoutMs} ms; stderr: ${this.stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Its exit status, killing it if it has not ended within `timeoutMs`. */
  async end(timeoutMs = 30_000): Promise<number | null> {
    let timer: NodeJS.Timeout | undefined;
    const killed = new Promise<number | null>((resolve) => {
      timer = setTimeout(() => {
        this.child.kill('SIGKILL');
        resolve(-1);
      }, timeoutMs);
    });
    try {
      return await Promise.race([this.exited, killed]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Keystrokes into tsvmm's stdin (made with `input`). */
  type(text: string): void {
    if (!this.child.stdin) throw new Error('this tsvmm was started without input');
    this.child.stdin.write(text);
  }

  kill(): void {
    this.child.kill('SIGKILL');
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A TCP port on 127.0.0.1 free right now (a destination's --incoming). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Numbered QMP endpoints (unix sockets) in `folder`, one per call. */
export function qmpSockets(folder: string): () => string {
  let next = 0;
  return () => `unix:${join(folder, `qmp${next++}.sock`)},server=on,wait=off`;
}
