// What a benchmark suite is. `tsvmm bench` knows the suites only through this
// shape (the registry is bench/index.ts): adding a suite is one entry there.
//
//   defineSuite({
//     name: 'blk',
//     description: 'virtio-blk read throughput against pread(2)',
//     run: (options) => benchBlk({ runs: options.runs, log: options.log }),
//     format: formatBlk,                  // the terminal table
//     chart: (result) => [ ...panels ],   // optional: SVG chart panels
//   })
//
// `run` gets the common options and returns plain data (it goes into --json
// as it is); `format` turns that data into the table; `chart` into zero or
// more chart panels (bench/lib/chart.ts draws them).

export interface BenchOptions {
  /** Measurements per figure: each figure is the median of `runs`, with min and max. */
  runs: number;
  /** Guest loop iterations per run (exits). */
  iterations: number;
  /** Bytes the serial-flood guest writes per run. */
  bytes: number;
  /** Progress lines (stderr). */
  log: (line: string) => void;
}

/** One bar of a chart: a median with its min–max range. */
export interface ChartBar {
  /** The series, e.g. "tsvmm", "C", "QEMU": one colour per series across the chart. */
  series: string;
  value: number;
  min?: number;
  max?: number;
  /** Drawn instead of a bar, e.g. "not installed". */
  missing?: string;
}

/** A labelled group of bars, e.g. one exit kind with its C and tsvmm bars. */
export interface ChartGroup {
  label: string;
  bars: ChartBar[];
}

/** One panel: a title, a unit and horizontal bar groups on one axis starting at 0. */
export interface ChartPanel {
  title: string;
  /** The axis unit, e.g. "µs per exit". */
  unit: string;
  /** Which way is better, shown beside the unit. */
  better: 'lower' | 'higher';
  groups: ChartGroup[];
}

export interface Suite<R = unknown> {
  /** The name `tsvmm bench NAME` takes. */
  name: string;
  /** One line for `tsvmm bench --help` and the report. */
  description: string;
  /** Left out of a plain `tsvmm bench`, run only when named (suites that boot Linux: minutes per run). */
  onlyWhenNamed?: boolean;
  run(options: BenchOptions): Promise<R>;
  format(result: R): string;
  chart?(result: R): ChartPanel[];
}

/** Identity, for type inference of R across the three functions. */
export function defineSuite<R>(suite: Suite<R>): Suite<R> {
  return suite;
}
