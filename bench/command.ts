// `tsvmm bench [suite...]`: runs benchmark suites from bench/ (the registry is
// bench/index.ts), prints each one's table as it completes, and writes the
// results as JSON (--json) and as an SVG chart (--chart). src/cli declares the
// command and loads this module when it runs (see benchModule in main.ts):
// the product does not depend on bench/.
import { existsSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { SUITES, type ChartPanel } from './index.ts';
import { renderChart } from './lib/chart.ts';
import { describeMachine, machineInfo } from './lib/machine-info.ts';
import { markdownTables } from './lib/stats.ts';
import type { BenchOptions } from '../src/cli/main.ts';
import { InputError } from '../src/errors.ts';


function positiveInteger(flag: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new InputError(`${flag} ${text}: expected a positive whole number`);
  return n;
}

/** An output file must be writable where it is going, checked before minutes of measuring. */
function outputPath(flag: string, path: string): string {
  const full = resolve(path);
  const dir = dirname(full);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new InputError(`${flag} ${path}: no directory ${dir}`);
  if (existsSync(full) && statSync(full).isDirectory()) throw new InputError(`${flag} ${path}: is a directory`);
  return full;
}

/** The suites to run, in registry order (none named: all but those run only when named); an unknown name is a usage error. */
export function selectSuites(names: string[]): string[] {
  const known = SUITES.map((s) => s.name);
  for (const name of names) {
    if (!known.includes(name)) throw new InputError(`unknown bench suite "${name}" (known: ${known.join(', ')})`);
  }
  return names.length ? known.filter((n) => names.includes(n)) : SUITES.filter((s) => !s.onlyWhenNamed).map((s) => s.name);
}

/** `tsvmm bench --list`. */
export function listSuites(): number {
  const width = Math.max(...SUITES.map((s) => s.name.length));
  writeSync(1, `${SUITES.map((s) => `${s.name.padEnd(width)}  ${s.description}${s.onlyWhenNamed ? ' (run only when named)' : ''}`).join('\n')}\n`);
  return 0;
}

export async function benchCommand(names: string[], options: BenchOptions): Promise<number> {
  const selected = selectSuites(names);
  const runs = positiveInteger('--runs', options.runs);
  const iterations = positiveInteger('--iterations', options.iterations);
  const bytes = positiveInteger('--bytes', options.bytes);
  const jsonPath = options.json ? outputPath('--json', options.json) : null;
  const chartPath = options.chart ? outputPath('--chart', options.chart) : null;
  const markdownPath = options.markdown ? outputPath('--markdown', options.markdown) : null;

  const log = (line: string) => writeSync(2, `${line}\n`);
  const machine = machineInfo();
  const started = new Date();
  log(`tsvmm bench ${selected.join(' ')}: ${runs} runs per figure (median, min–max)`);
  log(`machine: ${describeMachine(machine)}`);
  const results: Record<string, unknown> = {};
  const panels: ChartPanel[] = [];
  const tables: string[] = [];
  for (const name of selected) {
    const suite = SUITES.find((s) => s.name === name)!;
    log(`\n${suite.name}: ${suite.description}`);
    const t0 = Date.now();
    const result = await suite.run({ runs, iterations, bytes, log });
    results[name] = result;
    panels.push(...(suite.chart?.(result) ?? []));
    const text = suite.format(result);
    tables.push(`### ${suite.name}\n\n${markdownTables(text)}\n`);
    writeSync(1, `\n## ${suite.name} (${((Date.now() - t0) / 1000).toFixed(0)} s)\n\n${text}\n`);
  }

  const report = { date: started.toISOString(), machine, options: { suites: selected, runs, iterations, bytes }, results };
  if (jsonPath) writeFileSync(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
  if (markdownPath) writeFileSync(markdownPath, `${describeMachine(machine)}; ${started.toISOString().slice(0, 10)}; ${runs} runs per figure\n\n${tables.join('\n')}`);
  if (chartPath) {
    const subtitle = [describeMachine(machine), `${started.toISOString().slice(0, 10)} · ${runs} runs per figure, alternating VMMs run by run · tsvmm bench ${selected.join(' ')}`];
    writeFileSync(chartPath, renderChart(panels, { title: `tsvmm bench: ${selected.join(', ')}`, subtitle }));
  }
  return 0;
}
