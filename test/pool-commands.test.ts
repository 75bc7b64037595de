// The storage verbs through real tsvmm processes, as a virsh user drives them:
// define, build and start a directory pool; create, list, inspect, upload to,
// download from, clone, resize and delete its volumes; autostart; and the
// errors. Output is compared with virsh's own (its test driver, from Debian's
// libvirt-clients) where the content can be the same, the images with
// qemu-img, the XML with libvirt's schemas.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { counterKernel } from '../bench/lib/counter-guest.ts';
import { hasKvm, tsvmm, type CliResult } from './helpers/kvm.ts';
import { hasQemu, pattern, qemuImg, qemuIo } from './storage/helpers/images.ts';
import { hasValidator, validateXml, warnIfNoValidator } from './helpers/libvirt-schema.ts';

const stateDir = mkdtempSync(join(tmpdir(), 'tsvmm-pool-verbs-'));
const folder = join(stateDir, 'images');
afterAll(() => rmSync(stateDir, { recursive: true, force: true }));

/** Each test runs a dozen tsvmm processes of a few seconds each (more on a busy host). */
const VERBS_TIMEOUT_MS = 300_000;

const runs = (tool: string) => spawnSync(tool, ['--version'], { encoding: 'utf8' }).error === undefined;
warnIfNoValidator('pool verb tests');
const hasVirsh = runs('virsh');
if (!hasVirsh) console.warn('pool verb tests: virsh is not installed (Debian package libvirt-clients): skipping the comparisons with its output');

/** A tsvmm verb against this test's state folder (given right after the verb: a "--" may end the options). */
function virsh(verb: string, ...args: string[]): CliResult {
  return tsvmm([verb, '--state-dir', stateDir, ...args], { timeoutMs: 120_000 });
}

function ok(verb: string, ...args: string[]): string {
  const result = virsh(verb, ...args);
  expect(result.status, `tsvmm ${verb} ${args.join(' ')}: ${result.stderr}`).toBe(0);
  return result.stdout;
}

function refused(verb: string, ...args: string[]): string {
  const result = virsh(verb, ...args);
  expect(result.status, result.stdout).toBe(2);
  expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
  return result.stderr.trim();
}

/** What libvirt's virsh prints for the same commands against its test driver (which has an active default-pool). */
function libvirt(commands: string): string {
  const result = spawnSync('virsh', ['-c', 'test:///default', commands], { encoding: 'utf8', timeout: 30_000, input: '' });
  expect(result.status, result.stderr).toBe(0);
  return result.stdout;
}

function expectValid(xml: string, kind: string): void {
  if (!hasValidator) return;
  const result = validateXml(xml, kind);
  expect(result.status, result.output).toBe(0);
}

describe('storage pool and volume verbs', () => {
  it('pool-define-as, pool-build, pool-start; pool-list and pool-info as virsh prints them', () => {
    expect(ok('pool-define-as', 'default-pool', 'dir', '--target', folder)).toBe('Pool default-pool defined\n\n');
    expect(refused('pool-start', 'default-pool')).toMatch(/cannot open directory '.*images' of pool 'default-pool'/);
    const uuid = /UUID:\s+(\S+)/.exec(ok('pool-info', 'default-pool'))![1]!;
    if (hasVirsh) {
      const theirs = libvirt('pool-destroy default-pool; pool-info default-pool').replace(/^Pool default-pool destroyed\n\n/, '');
      expect(ok('pool-info', 'default-pool')).toBe(theirs.replace(/UUID: +\S+/, `UUID:           ${uuid}`));
    }
    expect(ok('pool-build', 'default-pool')).toBe('Pool default-pool built\n\n');
    expect(existsSync(folder)).toBe(true);
    expect(ok('pool-start', 'default-pool')).toBe('Pool default-pool started\n\n');
    const list = ok('pool-list', '--all');
    expect(list).toBe(' Name           State    Autostart\n------------------------------------\n default-pool   active   no\n\n');
    if (hasVirsh) expect(list).toBe(libvirt('pool-list --all'));
    expect(ok('pool-list', '--all', '--details')).toMatch(
      /^ Name {11}State {5}Autostart {3}Persistent {3}Capacity +Allocation +Available\n-+\n default-pool {3}running {3}no {10}yes {10}\d+\.\d\d [KMGT]iB/);
    expect(ok('pool-info', 'default-pool')).toMatch(/\nState: {10}running\n.*\nCapacity: {7}\d+\.\d\d [KMGT]iB\nAllocation: {5}\S+ \S+\nAvailable: {6}\S+ \S+\n\n$/s);
    const xml = ok('pool-dumpxml', 'default-pool');
    expect(xml).toContain(`<path>${folder}</path>`);
    expectValid(xml, 'storagepool');
    writeFileSync(join(stateDir, 'pool.xml'), xml);
  }, VERBS_TIMEOUT_MS);

  it('vol-create-as (raw, qcow2, an overlay), vol-list, vol-info, vol-path, vol-dumpxml, vol-create from that XML', () => {
    expect(ok('vol-create-as', 'default-pool', 'base.qcow2', '8M', '--format', 'qcow2')).toBe('Vol base.qcow2 created\n\n');
    if (hasQemu) qemuIo(join(folder, 'base.qcow2'), ['write -P 0x5a 0 1M', 'write -P 0xa5 7M 1M']);
    ok('vol-create-as', 'default-pool', 'top.qcow2', '16M', '--format', 'qcow2', '--backing-vol', 'base.qcow2');
    ok('vol-create-as', 'default-pool', 'data.raw', '1M');
    expect(refused('vol-create-as', 'default-pool', 'data.raw', '1M')).toBe("tsvmm: storage vol 'data.raw' already exists in pool 'default-pool'");
    if (hasQemu) {
      const info = JSON.parse(qemuImg(['info', '--output', 'json', join(folder, 'top.qcow2')]).stdout);
      expect(info).toMatchObject({ 'virtual-size': 16 * 2 ** 20, 'backing-filename': join(folder, 'base.qcow2'), 'backing-filename-format': 'qcow2' });
      expect(qemuImg(['check', join(folder, 'top.qcow2')]).stdout).toMatch(/No errors were found/);
    }
    const path = (name: string) => join(folder, name);
    const width = path('base.qcow2').length;
    expect(ok('vol-list', 'default-pool')).toBe([
      ` Name         ${'Path'.padEnd(width)}`.trimEnd(),
      '-'.repeat(13 + width + 3),
      ` base.qcow2   ${path('base.qcow2')}`,
      ` data.raw     ${path('data.raw')}`,
      ` top.qcow2    ${path('top.qcow2')}`,
      '', '',
    ].join('\n'));
    expect(ok('vol-list', 'default-pool', '--details')).toMatch(/\n top\.qcow2 +\S+top\.qcow2 +file +16\.00 MiB +\d+\.\d\d KiB\n\n$/);
    expect(ok('vol-info', 'top.qcow2', '--pool', 'default-pool')).toMatch(/^Name: {11}top\.qcow2\nType: {11}file\nCapacity: {7}16\.00 MiB\nAllocation: {5}\d+\.\d\d KiB\n\n$/);
    expect(ok('vol-info', path('data.raw'), '--bytes')).toMatch(/^Name: {11}data\.raw\nType: {11}file\nCapacity: {7}1048576 bytes\nAllocation: {5}\d+ bytes\n\n$/);
    expect(ok('vol-path', 'top.qcow2', '--pool', 'default-pool')).toBe(`${path('top.qcow2')}\n\n`);
    const xml = ok('vol-dumpxml', 'top.qcow2', '--pool', 'default-pool');
    expect(xml).toContain(`<backingStore>\n    <path>${path('base.qcow2')}</path>`);
    expectValid(xml, 'storagevol');
    const again = join(stateDir, 'again.xml');
    writeFileSync(again, xml.replace('<name>top.qcow2</name>', '<name>again.qcow2</name>'));
    expect(ok('vol-create', 'default-pool', again)).toBe(`Vol again.qcow2 created from ${again}\n\n`);
    expect(ok('vol-dumpxml', 'again.qcow2', '--pool', 'default-pool')).toContain(`<backingStore>\n    <path>${path('base.qcow2')}</path>`);
    expect(refused('vol-info', 'nothing', '--pool', 'default-pool')).toBe("tsvmm: failed to get vol 'nothing': no storage vol with matching name in pool 'default-pool'");
  }, VERBS_TIMEOUT_MS);

  it('vol-upload and vol-download move a volume\'s bytes; vol-clone copies it; vol-resize and vol-delete', () => {
    const upload = join(stateDir, 'upload.bin');
    const bytes = pattern(3 * 2 ** 20, 7);
    writeFileSync(upload, bytes);
    expect(ok('vol-upload', 'data.raw', upload, '--pool', 'default-pool')).toBe('');
    const download = join(stateDir, 'download.bin');
    ok('vol-download', 'data.raw', download, '--pool', 'default-pool', '--offset', '1M', '--length', '1M');
    expect(Buffer.compare(readFileSync(download), Buffer.from(bytes.subarray(2 ** 20, 2 * 2 ** 20)))).toBe(0);
    expect(ok('vol-info', 'data.raw', '--pool', 'default-pool', '--bytes')).toMatch(/Capacity: {7}3145728 bytes/);

    expect(ok('vol-clone', 'top.qcow2', 'copy.qcow2', '--pool', 'default-pool')).toBe('Vol copy.qcow2 cloned from top.qcow2\n\n');
    if (hasQemu) {
      const compare = qemuImg(['compare', join(folder, 'top.qcow2'), join(folder, 'copy.qcow2')]);
      expect(compare.stdout).toMatch(/Images are identical/);
      expect(JSON.parse(qemuImg(['info', '--output', 'json', join(folder, 'copy.qcow2')]).stdout)['backing-filename']).toBeUndefined();
    }

    expect(ok('vol-resize', 'copy.qcow2', '32M', '--pool', 'default-pool')).toBe("Size of volume 'copy.qcow2' successfully changed to 32M\n\n");
    expect(refused('vol-resize', 'copy.qcow2', '--pool', 'default-pool', '--', '-8M')).toBe('tsvmm: negative size requires --shrink');
    expect(refused('vol-resize', 'copy.qcow2', '24M', '--pool', 'default-pool')).toMatch(/without --shrink/);
    ok('vol-resize', 'copy.qcow2', '--pool', 'default-pool', '--shrink', '--', '-8M');
    expect(ok('vol-info', 'copy.qcow2', '--pool', 'default-pool')).toMatch(/Capacity: {7}24\.00 MiB/);
    ok('vol-resize', 'copy.qcow2', '1M', '--delta', '--pool', 'default-pool');
    expect(ok('vol-info', 'copy.qcow2', '--pool', 'default-pool')).toMatch(/Capacity: {7}25\.00 MiB/);
    if (hasQemu) expect(qemuImg(['check', join(folder, 'copy.qcow2')]).stdout).toMatch(/No errors were found/);

    expect(ok('vol-delete', 'copy.qcow2', '--pool', 'default-pool')).toBe('Vol copy.qcow2 deleted\n\n');
    expect(existsSync(join(folder, 'copy.qcow2'))).toBe(false);
  }, VERBS_TIMEOUT_MS);

  it('a domain whose disk is a volume of a pool that is not there does not start: one line naming <source> and its line', () => {
    const file = join(stateDir, 'guest.xml');
    writeFileSync(file, `<domain type='kvm'>
  <name>guest</name>
  <memory unit='MiB'>32</memory>
  <os><type>hvm</type></os>
  <devices>
    <disk type='volume' device='disk'>
      <source pool='elsewhere' volume='root.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>
`);
    ok('define', file);
    const xml = ok('dumpxml', 'guest');
    expect(xml).toContain("<disk type='volume' device='disk'>");
    expectValid(xml, 'domain');
    const line = xml.split('\n').findIndex((l) => l.includes('<source pool=')) + 1;
    expect(refused('start', 'guest')).toBe(`tsvmm: ${join(stateDir, 'domains', 'guest.xml')}:${line}: <source> in <disk>: storage pool 'elsewhere' is not defined`);
    ok('undefine', 'guest');
  }, VERBS_TIMEOUT_MS);

  it('the domain verbs find a volume disk\'s file: start gives it to tsvmm run, a snapshot goes into the volume, a clone copies it into the pool', () => {
    const file = join(stateDir, 'vm.xml');
    writeFileSync(file, `<domain type='kvm'>
  <name>vm</name>
  <memory unit='MiB'>32</memory>
  <os><type>hvm</type><kernel>${counterKernel()}</kernel><cmdline>pages=16 every=4096</cmdline></os>
  <devices>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source pool='default-pool' volume='top.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>
`);
    ok('define', file);
    if (hasKvm) {
      expect(ok('start', 'vm')).toBe("Domain 'vm' started\n\n");
      const pid = Number(readFileSync(join(stateDir, 'run', 'vm', 'pid'), 'utf8'));
      expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')).toContain(`${join(folder, 'top.qcow2')},format=qcow2`);
      expect(refused('vol-delete', 'top.qcow2', '--pool', 'default-pool')).toMatch(/Failed to get "write" lock/);
      ok('destroy', 'vm');
    }
    ok('snapshot-create-as', 'vm', 'before');
    if (hasQemu) expect(qemuImg(['snapshot', '-l', join(folder, 'top.qcow2')]).stdout).toMatch(/ before /);
    const copy = join(folder, 'vm2-vda.qcow2');
    expect(ok('clone', '--original', 'vm', '--name', 'vm2')).toContain(`Allocating '${copy}'`);
    expect(ok('dumpxml', 'vm2')).toContain(`<disk type='file' device='disk'>\n      <driver name='qemu' type='qcow2'/>\n      <source file='${copy}'/>`);
    expect(ok('vol-list', 'default-pool')).toContain(` vm2-vda.qcow2   ${copy}\n`);
    ok('undefine', 'vm2', '--remove-all-storage');
    expect(existsSync(copy)).toBe(false);
    ok('snapshot-delete', 'vm', 'before');
    ok('undefine', 'vm');
    expect(existsSync(join(folder, 'top.qcow2'))).toBe(true);
  }, VERBS_TIMEOUT_MS);

  it('pool-autostart, and start-autostarted starts the pool; destroy and undefine', () => {
    expect(ok('pool-autostart', 'default-pool')).toBe('Pool default-pool marked as autostarted\n\n');
    expect(refused('pool-undefine', 'default-pool')).toMatch(/it is active/);
    expect(ok('pool-destroy', 'default-pool')).toBe('Pool default-pool destroyed\n\n');
    expect(refused('vol-list', 'default-pool')).toBe("tsvmm: storage pool 'default-pool' is not active (pool-start it)");
    expect(ok('pool-list')).toBe(' Name   State   Autostart\n---------------------------\n\n');
    expect(ok('pool-list', '--all', '--details')).toMatch(/\n default-pool {3}inactive {3}yes {9}yes {10}- {10}- {12}-\n\n$/);
    expect(ok('start-autostarted')).toBe('Pool default-pool started\n');
    expect(ok('pool-list', '--all')).toMatch(/\n default-pool {3}active {3}yes\n\n$/);
    ok('pool-destroy', 'default-pool');
    expect(ok('pool-undefine', 'default-pool')).toBe('Pool default-pool has been undefined\n\n');
    expect(ok('pool-list', '--all')).toBe(' Name   State   Autostart\n---------------------------\n\n');
    expect(existsSync(join(folder, 'top.qcow2'))).toBe(true);
    // What pool-dumpxml printed defines it again.
    const poolXml = join(stateDir, 'pool.xml');
    expect(ok('pool-define', poolXml)).toBe(`Pool default-pool defined from ${poolXml}\n\n`);
    expect(ok('pool-list', '--all')).toMatch(/\n default-pool {3}inactive {3}no\n\n$/);
    ok('pool-undefine', 'default-pool');
    expect(refused('pool-info', 'default-pool')).toBe("tsvmm: failed to get pool 'default-pool': no storage pool with matching name or uuid");
    expect(refused('pool-define-as', 'p', 'logical', '--target', folder)).toBe("tsvmm: pool type 'logical': tsvmm has directory pools only (dir)");
  }, VERBS_TIMEOUT_MS);
});
