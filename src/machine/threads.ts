// How tsvmm starts its threads: where each thread's entry module is, starting
// the vCPU thread before its data exists (start-up time), and the one protocol
// every thread body follows: it posts `ready` once it serves, `stopped` with
// its result when it ends, or `failed` with the error that ended it.
//
// Entry modules are found for code that runs from the TypeScript sources (tsx,
// vitest), compiled into dist/src, or bundled into dist/bundle (the bin):
//
//   new Worker(workerUrl(import.meta.url, 'vcpu-thread-main'), { workerData })
//
// Compiled, the caller is a .js file and the entry is the .js beside it;
// bundled, the caller is a .cjs bundle and the entry is the bundle of that
// name beside it (src/cli/dist.mjs). From sources, the caller is a .ts file; a
// worker does not inherit its parent's TypeScript loader, so the entry is a
// two-line ES module (a data: URL) that registers tsx in the worker and then
// imports the .ts beside the caller. No per-worker shim file is needed.
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { parentPort, Worker, workerData, type WorkerOptions } from 'node:worker_threads';
import { markTime } from './startup-timing.ts';

/** True when the module at `importMetaUrl` is compiled (or bundled) JavaScript. */
export function isCompiled(importMetaUrl: string): boolean {
  return !importMetaUrl.endsWith('.ts');
}

/** A module beside the caller, with the caller's extension: `siblingModule(import.meta.url, './devices/null-sink')`. */
export function siblingModule(importMetaUrl: string, relativeName: string): URL {
  const extension = /\.(ts|js|cjs)$/.exec(importMetaUrl)?.[0];
  if (!extension) throw new Error(`siblingModule: ${importMetaUrl} is not a .ts, .js or .cjs module`);
  return new URL(`${relativeName}${extension}`, importMetaUrl);
}

let tsxApi: string | null = null;

/** The URL to start `new Worker()` with for the module `name` beside the caller (no extension). */
export function workerUrl(importMetaUrl: string, name: string): URL {
  const entry = siblingModule(importMetaUrl, `./${name}`);
  if (isCompiled(importMetaUrl)) return entry;
  tsxApi ??= pathToFileURL(createRequire(importMetaUrl).resolve('tsx/esm/api')).href;
  // createRequire resolves the CommonJS build; the ESM one sits beside it.
  const api = tsxApi.replace(/\.cjs$/, '.mjs');
  const source = `import { register } from ${JSON.stringify(api)};\nregister();\nawait import(${JSON.stringify(entry.href)});\n`;
  return new URL(`data:text/javascript,${encodeURIComponent(source)}`);
}

// ---- starting a worker before its data exists ----------------------------
// A worker's own start-up (a fresh isolate, Node's internals, then its module
// graph) costs tens of milliseconds here. The bin starts the vCPU worker first
// thing for `tsvmm run`, so that this overlaps the main thread's loading and
// VM creation; the machine later hands the waiting worker its data.

/** A prestarted worker's data: a flag it raises once its modules are loaded and it waits for its real data. */
interface PrestartMark {
  tsvmmPrestarted: SharedArrayBuffer;
}

function isPrestartMark(data: unknown): data is PrestartMark {
  return typeof data === 'object' && data !== null && (data as PrestartMark).tsvmmPrestarted instanceof SharedArrayBuffer;
}

interface Prestarted {
  worker: Worker;
  options: string;
  /** Becomes 1 when the worker is waiting for its data. */
  waiting: Int32Array;
  exited: Promise<void>;
}

const prestarted = new Map<string, Prestarted>();

/** What must match for a prestarted worker to be taken: its options, but for the ports handed over with its data. */
function optionsKey(options: Omit<WorkerOptions, 'workerData'>): string {
  return JSON.stringify({ ...options, transferList: undefined });
}

/** Starts a worker for `url` now; startWorker() with the same URL takes it. Unused, it does not keep the process alive. */
export function prestartWorker(url: URL, options: Omit<WorkerOptions, 'workerData'> = {}): void {
  if (prestarted.has(url.href)) return;
  const waiting = new Int32Array(new SharedArrayBuffer(4));
  const mark: PrestartMark = { tsvmmPrestarted: waiting.buffer as SharedArrayBuffer };
  const worker = new Worker(url, { ...options, workerData: mark });
  worker.unref();
  // Until taken, an error (the process is exiting) has no one to go to.
  worker.on('error', () => {});
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  prestarted.set(url.href, { worker, options: optionsKey(options), waiting, exited });
}

/** A worker running `url` with `init` as its data: the prestarted one when there is one with the same options, else a new one. */
export function startWorker(url: URL, init: unknown, options: Omit<WorkerOptions, 'workerData'> = {}): Worker {
  const waiting = prestarted.get(url.href);
  if (!waiting || waiting.options !== optionsKey(options)) return new Worker(url, { ...options, workerData: init });
  prestarted.delete(url.href);
  const { worker } = waiting;
  worker.ref();
  worker.postMessage({ init }, options.transferList ?? []);
  return worker;
}

/**
 * Ends the prestarted workers nobody took (the command failed before it
 * started a VM). Each is first let reach the point where it waits for its
 * data: ending a worker while it is still loading a native addon (koffi)
 * aborts the whole process.
 */
export async function releasePrestartedWorkers(): Promise<void> {
  for (const [href, p] of prestarted) {
    prestarted.delete(href);
    // Referenced again, it keeps the event loop (and this await) alive until it is done.
    p.worker.ref();
    const ready = Atomics.waitAsync(p.waiting, 0, 0, 10_000);
    await Promise.race([ready.async ? ready.value : Promise.resolve(), p.exited]);
    await p.worker.terminate();
  }
}

/** In a worker: its data, given at start or, for a prestarted worker, in its first message. */
export function workerInit<T>(): Promise<T> {
  if (!isPrestartMark(workerData)) return Promise.resolve(workerData as T);
  const message = new Promise<T>((resolve) => parentPort!.once('message', (m: { init: T }) => resolve(m.init)));
  // Whether the thread or the machine is late shows in `tsvmm bench startup`.
  markTime('worker-waiting');
  const waiting = new Int32Array(workerData.tsvmmPrestarted);
  Atomics.store(waiting, 0, 1);
  Atomics.notify(waiting, 0);
  return message;
}

// ---- the thread protocol ------------------------------------------------

/** What a thread body tells the thread that started it. */
export type ThreadMessage<Ready, Stopped> =
  | ({ kind: 'ready' } & Ready)
  | ({ kind: 'stopped' } & Stopped)
  | { kind: 'failed'; message: string; stack?: string };

/** In a thread: posts a protocol message to the thread that started this one. */
export function postToParent<Ready, Stopped>(message: ThreadMessage<Ready, Stopped>): void {
  parentPort!.postMessage(message);
}

/**
 * In a thread: runs its body with its data; an error that escapes the body
 * is posted as `failed` (the body posts `ready` and `stopped` itself).
 */
export function runThreadBody<T>(body: (init: T) => void | Promise<void>): void {
  workerInit<T>().then(body).catch((e: unknown) => {
    const error = e instanceof Error ? e : new Error(String(e));
    postToParent({ kind: 'failed', message: error.message, ...(error.stack ? { stack: error.stack } : {}) });
  });
}

/** The thread that started a worker: its `ready`, its `stopped`, or why it failed. */
export interface ThreadHandle<Ready, Stopped> {
  readonly worker: Worker;
  /** Resolves with the body's `ready` message. */
  readonly ready: Promise<Ready>;
  /** Resolves with the body's `stopped` message; rejects when the thread failed or exited without one. */
  readonly stopped: Promise<Stopped>;
}

/** Starts `url` with `init` (a prestarted worker when there is one) and follows its protocol. */
export function startThread<Ready, Stopped>(
  what: string, url: URL, init: unknown, options: Omit<WorkerOptions, 'workerData'> = {},
): ThreadHandle<Ready, Stopped> {
  const worker = startWorker(url, init, options);
  let onReady: (ready: Ready) => void = () => {};
  const ready = new Promise<Ready>((resolve) => (onReady = resolve));
  const stopped = new Promise<Stopped>((resolve, reject) => {
    worker.on('message', (message: ThreadMessage<Ready, Stopped>) => {
      if (message.kind === 'ready') onReady(message);
      else if (message.kind === 'stopped') resolve(message);
      else reject(new Error(`${what} failed: ${message.message}`));
    });
    worker.on('error', (error) => reject(new Error(`${what} failed: ${error.message}`)));
    worker.on('exit', (code) => reject(new Error(`${what} exited (code ${code}) without reporting why`)));
  });
  // A thread that fails before it is ready must still end the wait for it.
  stopped.catch(() => {});
  return { worker, ready: Promise.race([ready, stopped.then(() => new Promise<Ready>(() => {}))]), stopped };
}

// ---- the threads a machine starts ------------------------------------------

/**
 * V8's heap limits for the vCPU and virtio I/O threads. Their working sets are
 * small (device objects, a few MiB: guest RAM and rings are outside the heap),
 * and with explicit limits V8 commits less heap up front: ~2.5 MiB less
 * resident per thread (docs/architecture.md). The old generation's cap is far
 * above need (a distribution kernel's symbols are ~10 MiB): a thread that leaks
 * hits it and fails the VM with a message instead of growing without bound.
 * A vCPU thread's exit loop allocates next to nothing (no scavenge in 100,000
 * exits), so its young generation is small too; the I/O thread allocates per
 * request (descriptor chains, gathered buffers) and keeps V8's default.
 */
const VCPU_THREAD_HEAP = { maxYoungGenerationSizeMb: 2, maxOldGenerationSizeMb: 64 };
const VIRTIO_THREAD_HEAP = { maxOldGenerationSizeMb: 64 };

/** A vCPU thread's entry; it writes to the process's own stdout and stderr. */
export const VCPU_THREAD = workerUrl(import.meta.url, 'vcpu-thread-main');
export const VCPU_THREAD_OPTIONS = { stdout: false, stderr: false, resourceLimits: VCPU_THREAD_HEAP };
/** The virtio I/O thread's entry. */
export const VIRTIO_THREAD = workerUrl(import.meta.url, 'virtio-thread-main');
export const VIRTIO_THREAD_OPTIONS = { stdout: false, stderr: false, resourceLimits: VIRTIO_THREAD_HEAP };

/** Starts the first vCPU thread now (the bin does, for `tsvmm run`); Machine.run() hands it its VM. */
export function prestartVcpuThread(): void {
  prestartWorker(VCPU_THREAD, VCPU_THREAD_OPTIONS);
}

/** Starts the virtio I/O thread now (the bin does, for a `tsvmm run` with virtio devices): Machine.run() waits for it before the vCPUs start. */
export function prestartVirtioThread(): void {
  prestartWorker(VIRTIO_THREAD, VIRTIO_THREAD_OPTIONS);
}

/** Ends the prestarted threads that no machine took (the command failed first). */
export async function releasePrestartedThreads(): Promise<void> {
  await releasePrestartedWorkers();
}
