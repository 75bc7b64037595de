// `tsvmm guest build`: the default Linux guest (guests/default), built from
// Debian packages into a cache keyed by the recipe's hash.
import { writeSync } from 'node:fs';

export interface BuiltGuest {
  dir: string;
  /** vmlinux (tsvmm boots it through its PVH entry). */
  kernel: string;
  /** The same kernel as a bzImage (the 64-bit boot protocol entry). */
  bzImage: string;
  initrd: string;
  systemMap: string;
  cached: boolean;
}

interface Recipe {
  buildDefaultGuest(options: { log?: (line: string) => void; jobs?: number }): Promise<BuiltGuest>;
}

async function recipe(): Promise<Recipe> {
  return (await import('../../guests/default/recipe.ts')) as Recipe;
}

/** Builds (or finds in the cache) the default guest, reporting progress on stderr. */
export async function defaultLinuxGuest(options: { quiet?: boolean } = {}): Promise<BuiltGuest> {
  const started = Date.now();
  let announced = false;
  const guest = await (await recipe()).buildDefaultGuest({
    log: (line) => {
      if (options.quiet) return;
      if (!announced) {
        writeSync(2, 'tsvmm: building the default guest (Linux 6.1 from linux-source-6.1 + busybox-static; about 6 minutes on 2 cores, once)\n');
        announced = true;
      }
      writeSync(2, `  ${line}\n`);
    },
  });
  if (!guest.cached && !options.quiet) writeSync(2, `tsvmm: default guest built in ${Math.round((Date.now() - started) / 1000)} s: ${guest.dir}\n`);
  return guest;
}

export async function guestBuildCommand(): Promise<number> {
  const guest = await defaultLinuxGuest();
  writeSync(1, `${guest.dir}\n  kernel:     ${guest.kernel}\n  initrd:     ${guest.initrd}\n  System.map: ${guest.systemMap}\n${guest.cached ? '(already built)\n' : ''}`);
  return 0;
}
