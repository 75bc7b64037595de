// The benchmark suites of `tsvmm bench` and `npm run bench`, in the order they
// run. Adding a suite is one entry here (see bench/lib/suite.ts for the shape).
import { benchBlk, chartBlk, formatBlk } from './blk.ts';
import { benchBlkGuest, chartBlkGuest, formatBlkGuest } from './blk-guest.ts';
import { benchBoot, chartBoot, formatBoot } from './boot.ts';
import { benchExits, chartExits, formatExits } from './exits.ts';
import { exitsKutSuite } from './exits-kut.ts';
import { benchLifecycle, chartLifecycle, formatLifecycle } from './lifecycle.ts';
import { benchMemory, chartMemory, formatMemory } from './memory.ts';
import { benchPit, chartPit, formatPit } from './pit.ts';
import { benchSerialFlood, chartSerialFlood, formatSerialFlood } from './serial-flood.ts';
import { benchStartup, chartStartup, formatStartup } from './startup.ts';
import { defineSuite, type Suite } from './lib/suite.ts';

export const SUITES: readonly Suite[] = [
  defineSuite({
    name: 'exits',
    description: 'ns per PIO/MMIO exit (and per ioeventfd write), tsvmm against a C loop built here, guest rings 3 and 0',
    run: (options) => benchExits({ runs: options.runs, iterations: options.iterations, log: options.log }),
    format: formatExits,
    chart: chartExits,
  }),
  exitsKutSuite,
  defineSuite({
    name: 'serial-flood',
    description: 'COM1 bytes/s from a real-mode guest: tsvmm, kvmtool, QEMU and the C baseline',
    run: benchSerialFlood,
    format: formatSerialFlood,
    chart: chartSerialFlood,
  }),
  defineSuite({
    name: 'startup',
    description: 'process start to first KVM_RUN, first serial byte and exit: tsvmm, QEMU, kvmtool, C, and node -e 0',
    run: benchStartup,
    format: formatStartup,
    chart: chartStartup,
  }),
  defineSuite({
    name: 'memory',
    description: 'VMM resident memory beyond the guest RAM it touched: tsvmm, QEMU, kvmtool, C',
    run: benchMemory,
    format: formatMemory,
    chart: chartMemory,
  }),
  defineSuite({
    name: 'pit',
    description: "the TypeScript PIT against KVM's (--pit kernel) for the PIT calibration guest",
    run: benchPit,
    format: formatPit,
    chart: chartPit,
  }),
  defineSuite({
    name: 'blk',
    description: 'virtio-blk read throughput against pread(2) (in a VM and in-process), and the cost of a notify with and without ioeventfd',
    run: (options) => benchBlk({ runs: options.runs, log: options.log }),
    format: formatBlk,
    chart: chartBlk,
  }),
  defineSuite({
    name: 'blk-guest',
    description: 'virtio-blk in the default Linux guest (dd, raw and qcow2): tsvmm against QEMU microvm, one boot each',
    onlyWhenNamed: true,
    run: (options) => benchBlkGuest(options),
    format: formatBlkGuest,
    chart: chartBlkGuest,
  }),
  defineSuite({
    name: 'boot',
    description: "the default Linux guest from spawn to /init's banner and to the shell prompt: tsvmm against QEMU microvm",
    onlyWhenNamed: true,
    run: benchBoot,
    format: formatBoot,
    chart: chartBoot,
  }),
  defineSuite({
    name: 'lifecycle',
    description: 'snapshot save and restore against a cold start, live migration total time and downtime: tsvmm and QEMU, through QMP',
    run: benchLifecycle,
    format: formatLifecycle,
    chart: chartLifecycle,
  }),
];

export function findSuite(name: string): Suite | undefined {
  return SUITES.find((s) => s.name === name);
}

export { benchExits, formatExits, type ExitsRow } from './exits.ts';
export type { BenchOptions, ChartPanel, Suite } from './lib/suite.ts';
