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
//       into one CommonJS file each, NAME.bundle.cjs: Node then opens and
//       resolves a few files instead of two hundred, and a worker needs no ES
//       module loader (start-up, docs/architecture.md). A command's modules
//       stay lazy: esbuild defers a dynamically imported module's evaluation.
//       Each is required through a two-line NAME.cjs that compiles it with
//       V8's code cache (code-cache.cjs). The thread entries sit beside
//       threads.cjs, where it looks for them. koffi (a native addon) stays
//       outside, required by its path (koffiByPath).
// The bin runs dist/ only while it is newer than every source it was built
// from; after an edit it runs the sources through tsx until the next `npm run
// build`, so a stale copy never runs.
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
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

/** What dist/bundle holds: bundle name → entry source. */
const BUNDLE_ENTRIES = {
  threads: 'src/machine/threads.ts',
  main: 'src/cli/main.ts',
  'vcpu-thread-main': 'src/machine/vcpu-thread-main.ts',
  'virtio-thread-main': 'src/machine/virtio-thread-main.ts',
};
const THREADS_SOURCE = join(ROOT, BUNDLE_ENTRIES.threads);

/**
 * The other bundles require threads.cjs rather than each holding a copy: the
 * bin starts the vCPU thread through it before main.cjs is loaded, and the
 * machine must then find that thread in the same module.
 */
const threadsApart = {
  name: 'threads-apart',
  setup(build) {
    build.onResolve({ filter: /\/threads(\.ts)?$/ }, (args) => {
      if (args.kind === 'entry-point' || join(args.resolveDir, args.path.replace(/(\.ts)?$/, '.ts')) !== THREADS_SOURCE) return undefined;
      return { path: './threads.cjs', external: true };
    });
  },
};

/**
 * koffi (external: a native addon) is found once, at build time: each bundle
 * requires its entry by a path relative to the bundle, because Node's package
 * lookup (node_modules folders, then koffi's exports map) costs several ms
 * per thread. Should node_modules have moved since the build, it falls back to
 * that lookup.
 */
function koffiByPath(entry) {
  const path = relative(BUNDLE, entry);
  const fromBundle = path.startsWith('.') ? path : `./${path}`;
  return {
    name: 'koffi-by-path',
    setup(build) {
      build.onResolve({ filter: /^koffi$/, namespace: 'file' }, () => ({ path: 'koffi', namespace: 'koffi-by-path' }));
      build.onResolve({ filter: /.*/, namespace: 'koffi-by-path' }, (args) => ({ path: args.path, external: true }));
      build.onLoad({ filter: /.*/, namespace: 'koffi-by-path' }, () => ({
        loader: 'js',
        contents: [
          'try {',
          `  module.exports = require(${JSON.stringify(fromBundle)});`,
          '} catch (e) {',
          "  if (e.code !== 'MODULE_NOT_FOUND') throw e;",
          "  module.exports = require('koffi');",
          '}',
        ].join('\n'),
      }));
    },
  };
}

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
      entryPoints: Object.fromEntries(Object.entries(BUNDLE_ENTRIES).map(([name, source]) => [`${name}.bundle`, source])),
      outdir: BUNDLE,
      outExtension: { '.js': '.cjs' },
      bundle: true,
      format: 'cjs',
      platform: 'node',
      target: 'node20', // package.json's engines
      plugins: [threadsApart, koffiByPath(createRequire(join(BUNDLE, 'entry.cjs')).resolve('koffi'))],
      // CommonJS has no import.meta: each bundle's own URL stands in for it.
      define: { 'import.meta.url': 'tsvmmBundleUrl' },
      banner: { js: "const tsvmmBundleUrl = require('node:url').pathToFileURL(__filename).href;" },
      logLevel: quiet ? 'silent' : 'warning',
    });
    const loader = relative(BUNDLE, join(ROOT, 'src', 'cli', 'code-cache.cjs'));
    for (const name of Object.keys(BUNDLE_ENTRIES)) {
      writeFileSync(join(BUNDLE, `${name}.cjs`), [
        '// Written by src/cli/dist.mjs: the bundle beside, compiled through V8\'s code cache.',
        `module.exports = require(${JSON.stringify(loader)}).requireBundle(require('node:path').join(__dirname, ${JSON.stringify(`${name}.bundle.cjs`)}));`,
        '',
      ].join('\n'));
    }
    return true;
  } catch (e) {
    if (quiet) process.stderr.write(`tsvmm: bundling dist/ failed: ${e instanceof Error ? e.message : String(e)}\n`);
    return false;
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.exitCode = await buildDist();
}
