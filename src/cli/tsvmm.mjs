#!/usr/bin/env node
// The tsvmm command. It runs the compiled JavaScript in dist/ (built by
// `npm install`, see dist.mjs) when that is current, so start-up is Node's own
// plus tsvmm's; otherwise it registers tsx and runs the TypeScript sources.
// TSVMM_SOURCES=1 forces the sources.
//
// Compiled, commands run from the bundle (dist/bundle: a few CommonJS files
// instead of two hundred modules), except `tsvmm bench`: the suites in
// dist/bench import dist/src, and must share its modules (one InputError
// class, one machine) with the command that runs them.
import { existsSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { compiledIsFresh } from './dist.mjs';

// TSVMM_TIMING=<fd>: start-up timestamps for `tsvmm bench startup` (src/machine/startup-timing.ts).
const timingFd = process.env.TSVMM_TIMING ? Number(process.env.TSVMM_TIMING) : -1;
const mark = (label) => timingFd >= 0 && writeSync(timingFd, `tsvmm-timing ${label} ${process.hrtime.bigint()}\n`);
mark('bin');

const command = process.argv[2];
const requireCommonJs = createRequire(import.meta.url);
const BUNDLED_THREADS = '../../dist/bundle/threads.cjs';
/**
 * The vCPU thread, and the virtio I/O thread when the command line seems to
 * ask for a virtio device (the machine waits for that thread before its
 * vCPUs start). A wrong guess costs a thread started for nothing, or one
 * started later; run.ts's parsing decides what the machine has.
 */
function prestartThreads(module) {
  // Optional calls: a stale bundle (see below) may predate one of them.
  module.prestartVcpuThread?.();
  const args = process.argv.slice(3);
  const value = (i) => (args[i].includes('=') ? args[i].slice(args[i].indexOf('=') + 1) : args[i + 1] ?? '');
  const virtio = args.some((arg, i) => /^--(disk|net)(=|$)/.test(arg)
    || (/^--device(=|$)/.test(arg) && value(i).startsWith('virtio-'))
    || (/^--console(=|$)/.test(arg) && value(i) === 'virtio'));
  if (virtio) module.prestartVirtioThread?.();
}

// `tsvmm run`: start the vCPU thread first, so that Node's start-up of the
// worker overlaps the loading of everything else. From the bundle when there
// is one, before knowing whether it is current (~200 stats): a stale bundle's
// thread is ended again below, which only an edited checkout ever pays.
let threads = null;
if (command === 'run' && !process.env.TSVMM_SOURCES && existsSync(new URL(BUNDLED_THREADS, import.meta.url))) {
  threads = requireCommonJs(BUNDLED_THREADS);
  prestartThreads(threads);
}
const compiled = !process.env.TSVMM_SOURCES && compiledIsFresh();
if (threads && !compiled) {
  await threads.releasePrestartedThreads?.();
  threads = null;
}
if (!compiled) (await import('tsx/esm/api')).register();
const from = !compiled ? 'sources' : command === 'bench' ? 'compiled' : 'bundle';
const load = {
  sources: { threads: () => import('../machine/threads.ts'), main: () => import('./main.ts') },
  compiled: { threads: () => import('../../dist/src/machine/threads.js'), main: () => import('../../dist/src/cli/main.js') },
  bundle: { threads: () => requireCommonJs(BUNDLED_THREADS), main: () => requireCommonJs('../../dist/bundle/main.cjs') },
}[from];
if (command === 'run' && !threads) {
  threads = await load.threads();
  prestartThreads(threads);
}
const { main } = await load.main();
mark(`loaded-${from}`);
const status = await main(process.argv.slice(2));
// A vCPU thread still starting when the command failed must not be cut off mid-way.
await threads?.releasePrestartedThreads();
process.exitCode = status;
