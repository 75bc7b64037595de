// How tsvmm ends when the guest does not end it: on a signal, SIGINT with 130
// and SIGTERM with 143 (128 + the signal's number, as a shell reports a
// process killed by it), one line on stderr, and a terminal put back out of
// raw mode; when its console output is closed, with one line and status 4.
// Never with a stack trace.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { firmwarePath, serialFloodImage } from '../bench/lib/artifacts.ts';
import { hasKvm, TSVMM } from './helpers/kvm.ts';

const scratch = mkdtempSync(join(tmpdir(), 'tsvmm-run-signals-'));
// uart-echo with the in-kernel irqchip prints "ready" and then sleeps in HLT
// waiting for input, so a signal finds the vCPU inside KVM_RUN.
const GUEST = ['run', '--flat', firmwarePath('uart-echo'), '--irqchip'];
/** Bound on each wait: the guest's "ready", and tsvmm's end after the signal. */
const WAIT_MS = 60_000;

interface Ended {
  status: number | null;
  signal: NodeJS.Signals | null;
  output: string;
}

/**
 * Starts `command`, waits until its output matches `ready` (which yields the
 * pid to signal), sends `signal`, and collects the rest until it exits.
 */
function signalWhenReady(
  command: string, args: string[], ready: (output: string, childPid: number) => number | null, signal: NodeJS.Signals,
): Promise<Ended> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, NODE_NO_WARNINGS: '1' } });
    let output = '';
    let sent = false;
    const giveUp = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`no end within ${WAIT_MS} ms; output so far: ${JSON.stringify(output)}`));
    }, WAIT_MS);
    const take = (chunk: Buffer) => {
      output += chunk.toString('latin1');
      const pid = sent ? null : ready(output, child.pid!);
      if (pid !== null) {
        sent = true;
        process.kill(pid, signal);
      }
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('error', reject);
    child.on('close', (status, exitSignal) => {
      clearTimeout(giveUp);
      resolve({ status, signal: exitSignal, output });
    });
  });
}

describe.skipIf(!hasKvm)('run: ended by a signal', () => {
  for (const [signal, status] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    it(`${signal}: status ${status}, "tsvmm: stopped" and nothing else`, async () => {
      const ended = await signalWhenReady(process.execPath, [TSVMM, ...GUEST], (output, pid) => (output.includes('ready\n') ? pid : null), signal);
      expect(ended.output).toBe('ready\ntsvmm: stopped\n');
      expect(ended.status).toBe(status);
    });

    it(`${signal} on a terminal: status ${status}, and the terminal is back out of raw mode`, async () => {
      // script(1) gives tsvmm a pseudo-terminal, so it puts it in raw mode; the
      // shell inside reports tsvmm's status and then the terminal's settings.
      const inner = join(scratch, 'on-a-terminal.sh');
      writeFileSync(inner, [
        `sh -c 'echo "pid=$$"; exec "$0" "$@"' ${[process.execPath, TSVMM, ...GUEST].map((a) => `'${a}'`).join(' ')}`,
        'echo "status=$?"',
        'stty -a',
      ].join('\n'));
      const ended = await signalWhenReady('script', ['-qec', `sh ${inner}`, '/dev/null'], (output) => {
        const pid = /pid=(\d+)/.exec(output);
        return pid && /ready\r?\n/.test(output) ? Number(pid[1]) : null;
      }, signal);
      expect(ended.output).toMatch(/tsvmm: stopped\r?\n/);
      expect(ended.output).toMatch(new RegExp(`status=${status}\r?\n`));
      const settings = ended.output.slice(ended.output.indexOf('status='));
      // Raw mode is -icanon -echo -isig; the terminal script(1) made is canonical with echo.
      expect(settings).toMatch(/(^|\s)icanon(\s|$)/m);
      expect(settings).toMatch(/(^|\s)echo(\s|$)/m);
      expect(settings).toMatch(/(^|\s)isig(\s|$)/m);
    });
  }
});

describe.skipIf(!hasKvm)('run: the console output closed under a running guest', () => {
  it('stdout closed by its reader (`tsvmm run ... | head -c 10`): one line, status 4', async () => {
    // A guest that writes to COM1 without end.
    const flood = serialFloodImage(scratch, { count: 0xffffffff, end: 'spin' });
    const child = spawn(process.execPath, [TSVMM, 'run', '--flat', flood], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.once('data', () => child.stdout.destroy());
    const giveUp = setTimeout(() => child.kill('SIGKILL'), WAIT_MS);
    const status = await new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    clearTimeout(giveUp);
    expect(stderr).toMatch(/^tsvmm: the console's output \(fd 1\) can no longer be written \(EPIPE\): guest stopped\n$/);
    expect(status).toBe(4);
  });
});
