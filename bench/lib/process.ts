// Runs a VMM (or any program) as a child process and times it from outside:
// from just before spawn() to its first byte on stdout and to its exit. Every
// time is process.hrtime.bigint(), CLOCK_MONOTONIC, so the timestamps tsvmm
// itself reports with TSVMM_TIMING (src/machine/startup-timing.ts) line up.
import { spawn } from 'node:child_process';
import { closeSync, openSync, statSync } from 'node:fs';

export interface ProcessRun {
  /** ns from spawn to exit. */
  exitNs: number;
  /** ns from spawn to the first byte on stdout (null: it printed nothing, or stdout went to a file). */
  firstByteNs: number | null;
  stdoutBytes: number;
  status: number | null;
  signal: NodeJS.Signals | null;
  /** TSVMM_TIMING marks, ns from spawn (only with `timing`). */
  marks: Record<string, number>;
  /** The last few KiB of stderr, for error messages. */
  stderr: string;
  /** What `whileRunning` returned. */
  sample?: unknown;
}

export interface ProcessOptions {
  /** Pass TSVMM_TIMING=3 and collect the marks from fd 3. */
  timing?: boolean;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /**
   * Called once after the first byte on stdout, with the pid; the process is
   * killed (SIGKILL) when it resolves. For sampling a guest that never ends.
   */
  whileRunning?: (pid: number) => Promise<unknown>;
  /** Call whileRunning this long after spawn instead (for a program that buffers its output until it exits). */
  whileRunningAfterMs?: number;
  /**
   * Send stdout to this file instead of a pipe. A file never pushes back: a
   * UART model that drops bytes when its host side blocks (QEMU's does, and a
   * guest that never polls LSR cannot tell) keeps them all, and the bench's
   * own reading does not compete with the VMM for a CPU.
   */
  stdoutFile?: string;
}

const STDERR_KEEP = 4096;

export function runProcess(command: string, args: string[], options: ProcessOptions = {}): Promise<ProcessRun> {
  const outFd = options.stdoutFile ? openSync(options.stdoutFile, 'w') : null;
  const stdio: ('ignore' | 'pipe' | number)[] = ['ignore', outFd ?? 'pipe', 'pipe'];
  if (options.timing) stdio.push('pipe');
  const env = { ...process.env, ...options.env, ...(options.timing ? { TSVMM_TIMING: '3' } : {}) };
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const since = (t: bigint) => Number(t - started);
    const child = spawn(command, args, { stdio, env });
    if (outFd !== null) closeSync(outFd);
    let firstByteNs: number | null = null;
    let stdoutBytes = 0;
    let stderr = '';
    let timingText = '';
    let sample: unknown;
    let sampling: Promise<void> | null = null;
    const timer = options.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), options.timeoutMs) : null;
    const startSampling = () => {
      if (sampling || !options.whileRunning || child.pid === undefined) return;
      sampling = options.whileRunning(child.pid).then(
        (value) => { sample = value; child.kill('SIGKILL'); },
        (error: unknown) => { child.kill('SIGKILL'); reject(error instanceof Error ? error : new Error(String(error))); },
      );
    };
    const sampleTimer = options.whileRunningAfterMs !== undefined ? setTimeout(startSampling, options.whileRunningAfterMs) : null;
    child.stdout?.on('data', (chunk: Buffer) => {
      if (firstByteNs === null) {
        firstByteNs = since(process.hrtime.bigint());
        if (options.whileRunningAfterMs === undefined) startSampling();
      }
      stdoutBytes += chunk.length;
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString('utf8')).slice(-STDERR_KEEP);
    });
    if (options.timing) (child.stdio[3] as NodeJS.ReadableStream).on('data', (chunk: Buffer) => (timingText += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('close', (status, signal) => {
      const exitNs = since(process.hrtime.bigint());
      if (timer) clearTimeout(timer);
      if (sampleTimer) clearTimeout(sampleTimer);
      const finish = () => {
        if (options.stdoutFile) stdoutBytes = statSync(options.stdoutFile).size;
        const marks: Record<string, number> = {};
        for (const line of timingText.split('\n')) {
          const m = /^tsvmm-timing (\S+) (\d+)$/.exec(line);
          if (m && !(m[1]! in marks)) marks[m[1]!] = since(BigInt(m[2]!));
        }
        resolve({ exitNs, firstByteNs, stdoutBytes, status, signal, marks, stderr, ...(sample !== undefined ? { sample } : {}) });
      };
      // Wait for a running sampler so its sample is in the result; a failure in
      // either (a missing stdout file) rejects the run instead of leaving it pending.
      (sampling ?? Promise.resolve()).then(finish).catch(reject);
    });
  });
}

/** Why a run did not end the way the guest should: its last line on stderr, else how it ended. */
export function failureReason(run: ProcessRun): string {
  const last = run.stderr.trim().split('\n').at(-1)?.trim();
  if (last) return last;
  return `${run.signal ? `killed by ${run.signal}` : `status ${run.status}`}, nothing on stderr`;
}

/** The error for a run that did not end the way the guest should. */
export function describeFailure(what: string, run: ProcessRun): Error {
  const how = run.signal ? `signal ${run.signal}` : `status ${run.status}`;
  return new Error(`${what} ended with ${how}: ${run.stderr.trim().split('\n').slice(-3).join(' / ') || 'no message'}`);
}
