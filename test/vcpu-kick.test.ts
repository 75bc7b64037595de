// Stopping a VM never throws: a kick that finds its vCPU thread gone has
// nothing left to do, and the stop sequence silences its timers before it
// lets the threads go.
import { closeSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { describe, expect, it, vi } from 'vitest';
import { firmwarePath } from '../bench/lib/artifacts.ts';
import { signalThread, SIGUSR2 } from '../src/kvm/index.ts';
import { Machine } from '../src/machine/machine.ts';
import { VirtioIoThread } from '../src/machine/virtio-io-thread.ts';
import { hasKvm } from './helpers/kvm.ts';

/** The kernel thread id of a worker thread that has run to its end. */
async function exitedThreadId(): Promise<number> {
  const koffi = createRequire(import.meta.url).resolve('koffi');
  const worker = new Worker(`
    const koffi = require(${JSON.stringify(koffi)});
    const gettid = koffi.load('libc.so.6').func('int gettid()');
    require('node:worker_threads').parentPort.postMessage(gettid());
  `, { eval: true });
  const threadId = await new Promise<number>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  // 'exit' comes once the thread has been joined: its id names no thread any more.
  await new Promise((resolve) => worker.once('exit', resolve));
  return threadId;
}

describe('kicking a vCPU thread', () => {
  it('a kick of a thread that has exited returns quietly (ESRCH is not an error)', async () => {
    process.on('SIGUSR2', () => {});
    const threadId = await exitedThreadId();
    expect(signalThread(threadId, SIGUSR2)).toBe(false);
  });

  it('a kick of a live thread reaches it', () => {
    process.on('SIGUSR2', () => {});
    // This thread (vitest's worker) handles SIGUSR2 through Node's handler.
    expect(signalThread(createRequire(import.meta.url)('koffi').load('libc.so.6').func('int gettid()')(), SIGUSR2)).toBe(true);
  });
});

describe.skipIf(!hasKvm)('stopping a machine', () => {
  it('an I/O thread slow to stop, with the halt watchdog firing every millisecond, never gets a kick to an exited vCPU thread', async () => {
    // A guest that ends at once, with the irqchip (so the watchdog runs) and a
    // virtio device (so the teardown waits for the I/O thread). The I/O thread
    // takes 200 ms to hand in its reports, as under load: long enough for the
    // vCPU thread to be gone while the watchdog keeps firing.
    // The original, called with the spied instance as `this` below.
    // eslint-disable-next-line @typescript-eslint/unbound-method
    const stopIoThread = VirtioIoThread.prototype.stop;
    const slowStop = vi.spyOn(VirtioIoThread.prototype, 'stop').mockImplementation(async function (this: VirtioIoThread) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      return stopIoThread.call(this);
    });
    try {
      const machine = Machine.create({
        memoryBytes: 16 << 20,
        flat: { path: firmwarePath('exitcode') },
        irqchip: true,
        virtio: [{ kind: 'rng' }],
        consoleFd: 2,
      });
      try {
        const result = await machine.run({ haltCheckIntervalMs: 1 });
        expect(result.stop).toMatchObject({ cause: 'debug-exit', status: 85 });
      } finally {
        machine.close();
      }
      expect(slowStop).toHaveBeenCalledOnce();
    } finally {
      slowStop.mockRestore();
    }
  });

  it('an I/O thread that fails while the guest sleeps in KVM_RUN ends the run with its error (the vCPU is stopped, not left blocking terminate())', async () => {
    // uart-echo with the irqchip halts inside KVM_RUN waiting for input that
    // never comes; with KVM's PIT no device timer of tsvmm's interrupts it
    // either. The I/O thread then fails (here: is made to report failure).
    // Before the fix, worker.terminate() waited forever for that KVM_RUN.
    // The original, called with the class as `this` below.
    // eslint-disable-next-line @typescript-eslint/unbound-method
    const startIoThread = VirtioIoThread.start;
    const failingStart = vi.spyOn(VirtioIoThread, 'start').mockImplementation(async (options) => {
      const thread = await startIoThread.call(VirtioIoThread, options);
      thread.failed = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('virtio I/O thread failed (test)')), 1000));
      thread.failed.catch(() => {});
      return thread;
    });
    const devNull = openSync('/dev/null', 'w');
    try {
      const machine = Machine.create({
        memoryBytes: 16 << 20,
        flat: { path: firmwarePath('uart-echo') },
        irqchip: true,
        pit: 'kernel',
        virtio: [{ kind: 'rng' }],
        consoleFd: devNull,
      });
      try {
        await expect(machine.run()).rejects.toThrow('virtio I/O thread failed (test)');
      } finally {
        machine.close();
      }
    } finally {
      failingStart.mockRestore();
      closeSync(devNull);
    }
  }, 20_000);
});
