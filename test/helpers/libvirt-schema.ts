// libvirt's own schemas as the judge of the XML tsvmm writes: virt-xml-validate
// (Debian libvirt-clients), which runs xmllint (libxml2-utils). Where they are
// not installed the schema checks are skipped, with one warning per file.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const hasValidator = ['virt-xml-validate', 'xmllint'].every((tool) => spawnSync(tool, ['--version'], { encoding: 'utf8' }).error === undefined);

/** Warns once for the test file `what` when the schema checks will be skipped. */
export function warnIfNoValidator(what: string): void {
  if (!hasValidator) console.warn(`${what}: virt-xml-validate is not installed (Debian packages libvirt-clients and libxml2-utils): skipping the schema checks`);
}

/** virt-xml-validate's verdict on `xml` as libvirt's `kind` (domain, network, storagepool, storagevol, domainsnapshot). */
export function validateXml(xml: string, kind: string): { status: number | null; output: string } {
  const folder = mkdtempSync(join(tmpdir(), 'tsvmm-schema-'));
  try {
    const file = join(folder, `${kind}.xml`);
    writeFileSync(file, xml);
    const result = spawnSync('virt-xml-validate', [file, kind], { encoding: 'utf8', timeout: 30_000 });
    return { status: result.status, output: result.stdout + result.stderr };
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
}
