// Suites that run the tsvmm bin as a process measure what a user gets after
// `npm install`: the compiled copy in dist/. When the sources changed since
// it was built, build it again first (a few seconds), saying so.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { PROJECT_ROOT } from '../../src/project-root.ts';
import type * as Dist from '../../src/cli/dist.mjs';

type DistModule = typeof Dist;

/** src/cli/dist.mjs, found from the project root: this module may itself run from dist/, where no .mjs is copied. */
async function distModule(): Promise<DistModule> {
  return (await import(pathToFileURL(join(PROJECT_ROOT, 'src', 'cli', 'dist.mjs')).href)) as DistModule;
}

export async function ensureCompiled(log: (line: string) => void): Promise<void> {
  const dist = await distModule();
  if (dist.compiledIsFresh()) return;
  log('  dist/ is missing or older than the sources: building it (npm run build)');
  const status = await dist.buildDist({ quiet: true });
  if (status !== 0 || !dist.compiledIsFresh()) {
    throw new Error('could not build dist/ (is typescript installed? npm run build): the bin would run from its sources, slower than what users run');
  }
}
