// `tsvmm bench`: runs benchmark suites from bench/ and prints their tables.
import { writeFileSync, writeSync } from 'node:fs';
import { benchExits, formatExits } from '../../bench/index.ts';
import { UsageError } from './errors.ts';

const SUITES = ['exits'];

function positiveInteger(flag: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`${flag} ${text}: expected a positive whole number`);
  return n;
}

export async function benchCommand(suites: string[], options: { runs: string; iterations: string; json?: string }): Promise<number> {
  for (const suite of suites) if (!SUITES.includes(suite)) throw new UsageError(`unknown bench suite "${suite}" (known: ${SUITES.join(', ')})`);
  const runs = positiveInteger('--runs', options.runs);
  const iterations = positiveInteger('--iterations', options.iterations);
  const log = (line: string) => writeSync(2, `${line}\n`);
  const results: Record<string, unknown> = {};
  if (suites.includes('exits')) {
    log(`exits: ${iterations} guest loop iterations per run, ${runs} runs, C baseline and tsvmm alternating`);
    const rows = await benchExits({ runs, iterations, log });
    writeSync(1, `\n${formatExits(rows)}\n`);
    results.exits = rows;
  }
  if (options.json) writeFileSync(options.json, `${JSON.stringify(results, null, 2)}\n`);
  return 0;
}
