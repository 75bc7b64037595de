// Opt-in start-up timestamps, for `tsvmm bench startup`. With TSVMM_TIMING=<fd>
// every mark writes "tsvmm-timing <label> <ns>" to that fd, where ns is
// process.hrtime.bigint(): CLOCK_MONOTONIC, comparable across processes, so
// the bench can subtract the moment it spawned tsvmm. Without the variable a
// mark costs one comparison.
import { writeSync } from 'node:fs';

const fd = process.env.TSVMM_TIMING ? Number(process.env.TSVMM_TIMING) : -1;

export function markTime(label: string, ns: bigint = process.hrtime.bigint()): void {
  if (fd < 0) return;
  try {
    writeSync(fd, `tsvmm-timing ${label} ${ns}\n`);
  } catch {
    // A closed or bad fd must not change how the guest runs.
  }
}
