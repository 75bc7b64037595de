// The project's root directory (the one with package.json), found from this
// module's own location, so that it is the same from the TypeScript sources
// (src/project-root.ts) and from the compiled copy (dist/src/project-root.js).
// Code that reads files shipped beside the sources (firmware, the guest recipe)
// starts from here rather than from its own import.meta.url.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('tsvmm: cannot find the project root (no package.json above src/)');
    dir = up;
  }
}

export const PROJECT_ROOT = findRoot();
