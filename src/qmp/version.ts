// What tsvmm tells a QMP client it is. The greeting and query-version carry
// QEMU's VersionInfo; tsvmm claims 7.2.0 because its commands and answers have
// QEMU 7.2's shapes (qapi/*.json of that release), and clients such as libvirt
// choose what to send by that number. `package`, free text in QEMU
// ("Debian 1:7.2+dfsg-7"), names tsvmm and its own version, so a client that
// cares can tell the two apart.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT_ROOT } from '../project-root.ts';

export const QEMU_VERSION = { major: 7, minor: 2, micro: 0 } as const;

function tsvmmVersion(): string {
  const manifest = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version?: unknown };
  return typeof manifest.version === 'string' ? manifest.version : 'unknown';
}

/** QEMU's VersionInfo, key order as QEMU sends it. */
export const VERSION_INFO = {
  qemu: { micro: QEMU_VERSION.micro, minor: QEMU_VERSION.minor, major: QEMU_VERSION.major },
  package: `tsvmm ${tsvmmVersion()}`,
} as const;
