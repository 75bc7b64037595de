// The compiled copy of tsvmm in dist/: how it is built and whether it is
// current. Plain JavaScript, because the bin (tsvmm.mjs) asks before any
// TypeScript loader exists.
//
// `npm install` / `npm ci` build it (the "prepare" script runs
// `node src/cli/dist.mjs`) in two steps:
//   dist/src, dist/bench, ...  tsc with tsconfig.build.json turns src/, bench/,
//       firmware/*.ts and guests/ into dist/ with the same layout and `.ts`
//       imports rewritten to `.js`; like tsx it only transpiles (--noCheck:
//       `npm run typecheck` checks types). `tsvmm bench` runs from here.
//   dist/bundle  esbuild (which tsx brings) bundles the bin's entries (the CLI,
//       and threads.ts to start the vCPU thread early) and each thread's entry
//       into a few files: Node then opens, resolves and compiles a handful of
//       modules instead of two hundred (start-up, docs/architecture.md).
//       Splitting keeps what several entries share in one chunk, so that a
//       module has one instance per thread, and keeps dynamic imports lazy.
//       The thread entries sit beside the chunks, where threads.ts looks for
//       them. koffi (a native addon) stays outside.
// The bin runs dist/ only while it is newer than every source it was built
// from; after an edit it runs the sources through tsx until the next `npm run
// build`, so a stale copy never runs.
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const DIST = join(ROOT, 'dist');
/** Written after a successful build: when it started and which sources it compiled (JSON). */
export const STAMP = join(DIST, 'built.json');
/** The bundled entries (see above). */
export const BUNDLE = join(DIST, 'bundle');
/** What tsconfig.build.json compiles (its "include"; a test keeps the two equal). */
export const SOURCE_DIRS = ['src', 'bench', 'firmware', 'guests'];
const BUILD_CONFIG = 'tsconfig.build.json';

/** The .ts files under `dir`, relative to ROOT. */
function tsFiles(dir, into = []) {
  for (const entry of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory()) {
      if (entry.name !== 'node_modules' && entry.name !== 'build' && entry.name[0] !== '.') tsFiles(path, into);
    } else if (entry.name.endsWith('.ts')) {
      into.push(path);
    }
  }
  return into;
}

/**
 * True when dist/ exists and no source it was built from changed since (~1 ms).
 * The stamp lists those sources; a stat of each is enough, because a source
 * added or removed since is only reached through an import in one that changed.
 */
export function compiledIsFresh() {
  let stamp;
  try {
    stamp = JSON.parse(readFileSync(STAMP, 'utf8'));
  } catch {
    return false;
  }
  const built = stamp.startedMs;
  for (const file of stamp.sources) {
    const stat = statSync(join(ROOT, file), { throwIfNoEntry: false });
    if (!stat || stat.mtimeMs > built) return false;
  }
  return true;
}

/** Compiles the sources into dist/; returns the exit status. */
export async function buildDist({ quiet = false } = {}) {
  const { spawnSync } = await import('node:child_process');
  const { createRequire } = await import('node:module');
  let tsc;
  try {
    tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  } catch {
    // An install without devDependencies: the bin runs the sources through tsx.
    if (!quiet) process.stderr.write('tsvmm: typescript is not installed; dist/ not built, tsvmm runs from its sources (slower start-up)\n');
    return 0;
  }
  // Sources saved while tsc runs are newer than this, so the next run sees dist/ as stale.
  const startedMs = Date.now();
  const sources = [BUILD_CONFIG, ...SOURCE_DIRS.flatMap((dir) => tsFiles(dir))];
  const result = spawnSync(process.execPath, [tsc, '-p', join(ROOT, BUILD_CONFIG), '--noCheck'], { stdio: 'inherit' });
  if (result.status !== 0) return result.status ?? 1;
  if (!(await bundle(quiet))) return 1;
  writeFileSync(STAMP, `${JSON.stringify({ startedMs, sources })}\n`);
  return 0;
}

/** What dist/bundle holds: output name → source. */
const BUNDLE_ENTRIES = {
  main: 'src/cli/main.ts',
  threads: 'src/machine/threads.ts',
  'vcpu-thread-main': 'src/machine/vcpu-thread-main.ts',
  'virtio-thread-main': 'src/machine/virtio-thread-main.ts',
};

/** Builds dist/bundle with esbuild; false when that failed (esbuild said why). */
async function bundle(quiet) {
  const { createRequire } = await import('node:module');
  const { pathToFileURL } = await import('node:url');
  const { rmSync } = await import('node:fs');
  // esbuild is tsx's dependency, not tsvmm's: found from tsx.
  const fromTsx = createRequire(createRequire(import.meta.url).resolve('tsx/package.json'));
  const esbuild = await import(pathToFileURL(fromTsx.resolve('esbuild')).href);
  rmSync(BUNDLE, { recursive: true, force: true });
  try {
    await esbuild.build({
      absWorkingDir: ROOT,
      entryPoints: BUNDLE_ENTRIES,
      outdir: BUNDLE,
      bundle: true,
      splitting: true,
      format: 'esm',
      platform: 'node',
      target: 'node20', // package.json's engines
      external: ['koffi'],
      // The CommonJS packages bundled in (commander, xmldom) call require() for Node's modules.
      banner: { js: "import { createRequire as tsvmmCreateRequire } from 'node:module'; const require = tsvmmCreateRequire(import.meta.url);" },
      logLevel: quiet ? 'silent' : 'warning',
    });
    return true;
  } catch (e) {
    if (quiet) process.stderr.write(`tsvmm: bundling dist/ failed: ${e instanceof Error ? e.message : String(e)}\n`);
    return false;
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.exitCode = await buildDist();
}
