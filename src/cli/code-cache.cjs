// Loads tsvmm's CommonJS bundles (dist/bundle, see dist.mjs) with V8's code
// cache, as Node 22's module.enableCompileCache() would (Node 20 has none):
// the first run of a bundle saves what V8 compiled beside it
// (NAME.bundle.cjs.code-cache), and later runs deserialize that instead of
// parsing and compiling again (start-up, docs/architecture.md). The main
// thread saves it as the process exits, with every function the command
// compiled; a worker once its bundle has run (a worker that is terminated
// sees no exit event, and the vCPU loop never yields to a timer). A cache that does not match the bundle or this V8
// is rejected by V8 and written again; one that cannot be written is skipped.
'use strict';
const { readFileSync, renameSync, writeFileSync } = require('node:fs');
const Module = require('node:module');
const { dirname } = require('node:path');
const vm = require('node:vm');
const { isMainThread, threadId } = require('node:worker_threads');

function saveCache(script, cacheFile) {
  const partial = `${cacheFile}.${process.pid}.${threadId}`;
  try {
    writeFileSync(partial, script.createCachedData());
    renameSync(partial, cacheFile);
  } catch {
    // A read-only install runs without the cache.
  }
}

/** require(file) for a bundle, compiled through its code cache; returns its exports. */
function requireBundle(file) {
  const cacheFile = `${file}.code-cache`;
  let cachedData;
  try {
    cachedData = readFileSync(cacheFile);
  } catch {
    cachedData = undefined;
  }
  const script = new vm.Script(Module.wrap(readFileSync(file, 'utf8')), {
    filename: file,
    cachedData,
    importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
  });
  const module = { exports: {} };
  script.runInThisContext().call(module.exports, module.exports, Module.createRequire(file), module, file, dirname(file));
  if (!cachedData || script.cachedDataRejected) {
    if (isMainThread) process.once('exit', () => saveCache(script, cacheFile));
    else saveCache(script, cacheFile);
  }
  return module.exports;
}

module.exports = { requireBundle };
