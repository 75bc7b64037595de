// The worker threads a machine starts, in one small module, so that the bin
// can start the vCPU thread before it loads anything else (see worker-url.ts).
import { prestartWorker, releasePrestartedWorkers, workerUrl } from './worker-url.ts';

/** The vCPU thread's entry; it writes to the process's own stdout and stderr. */
export const VCPU_THREAD = workerUrl(import.meta.url, 'vcpu-thread');
export const VCPU_THREAD_OPTIONS = { stdout: false, stderr: false };

/** Starts the vCPU thread now; Machine.run() hands it its VM. */
export function prestartVcpuThread(): void {
  prestartWorker(VCPU_THREAD, VCPU_THREAD_OPTIONS);
}

/** Ends a prestarted vCPU thread that no machine took (the command failed first). */
export async function releasePrestartedThreads(): Promise<void> {
  await releasePrestartedWorkers();
}
