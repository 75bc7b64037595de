// Storage pools and volumes as data (src/pool): pool XML read strictly and
// written as virsh pool-dumpxml prints it, volume XML, both accepted by
// libvirt's own schemas (virt-xml-validate storagepool / storagevol); the
// pool store's rules; a directory pool's volumes; and a domain's
// <disk type='volume'> looked up through the pools.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseVolumeSize, prettyCapacity } from '../src/cli/pool-commands.ts';
import { DomainStore, domainToXml, parseDomainXml, withVolumesResolved, type DomainDefinition } from '../src/domain/index.ts';
import { InputError } from '../src/errors.ts';
import {
  buildPoolFolder, createVolume, findVolume, listVolumes, parsePoolXml, parseVolumeXml, poolToXml, PoolStore, poolVolumeLookup, volumeToXml, type PoolDefinition,
} from '../src/pool/index.ts';
import { openDisk } from '../src/storage/block-backend.ts';
import { hasValidator, validateXml, warnIfNoValidator } from './helpers/libvirt-schema.ts';

const scratch = mkdtempSync(join(tmpdir(), 'tsvmm-pools-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

warnIfNoValidator('pool tests');

function expectValid(xml: string, kind: string): void {
  if (!hasValidator) return;
  const result = validateXml(xml, kind);
  expect(result.status, result.output).toBe(0);
}

/** What `virsh -c test:///default pool-dumpxml default-pool` prints (libvirt-clients 9.0). */
const LIBVIRT_POOL = `<pool type='dir'>
  <name>default-pool</name>
  <uuid>dfe224cb-28fb-8dd0-c4b2-64eb3f0f4566</uuid>
  <capacity unit='bytes'>107374182400</capacity>
  <allocation unit='bytes'>0</allocation>
  <available unit='bytes'>107374182400</available>
  <source>
  </source>
  <target>
    <path>/default-pool</path>
  </target>
</pool>
`;

function errorOf(action: () => unknown): string {
  try {
    action();
  } catch (e) {
    expect(e).toBeInstanceOf(InputError);
    return (e as Error).message;
  }
  throw new Error('no error');
}

describe('pool XML', () => {
  it('reads what virsh pool-dumpxml prints, and writes it back in the same layout', () => {
    const pool = parsePoolXml(LIBVIRT_POOL, 'p.xml');
    expect(pool).toEqual({ name: 'default-pool', uuid: 'dfe224cb-28fb-8dd0-c4b2-64eb3f0f4566', type: 'dir', path: '/default-pool' });
    const usage = { capacity: 107374182400, allocation: 0, available: 107374182400 };
    expect(poolToXml(pool, usage)).toBe(LIBVIRT_POOL.replace('<source>\n  </source>', '<source/>'));
    expect(parsePoolXml(poolToXml(pool, null), 'again.xml')).toEqual(pool);
    // Without a <uuid>, a pool defined again keeps the one it has.
    const withoutUuid = LIBVIRT_POOL.replace(/ *<uuid>.*<\/uuid>\n/, '');
    expect(parsePoolXml(withoutUuid, 'p.xml', (name) => (name === 'default-pool' ? pool.uuid : undefined)).uuid).toBe(pool.uuid);
    expect(parsePoolXml(withoutUuid, 'p.xml').uuid).not.toBe(pool.uuid);
    expectValid(poolToXml(pool, usage), 'storagepool');
  });

  it('refuses what tsvmm does not honour, naming the element and its line', () => {
    expect(errorOf(() => parsePoolXml("<pool type='logical'>\n<name>x</name></pool>", 'p.xml'))).toMatch(/^p\.xml:1: <pool>: type='logical': tsvmm has directory pools only/);
    expect(errorOf(() => parsePoolXml("<pool type='dir'>\n  <name>x</name>\n</pool>", 'p.xml'))).toBe('p.xml:1: <pool>: needs a <target><path>/folder</path></target>');
    expect(errorOf(() => parsePoolXml("<pool type='dir'><name>x</name>\n<target><path>images</path></target></pool>", 'p.xml')))
      .toBe('p.xml:2: <path> in <target>: "images" is not an absolute path');
    expect(errorOf(() => parsePoolXml("<pool type='dir'><name>x</name><target><path>/i</path><permissions>\n<label>system_u:object_r:virt_image_t:s0</label></permissions></target></pool>", 'p.xml')))
      .toBe('p.xml:2: <label> in <permissions>: tsvmm does not support it');
    expect(errorOf(() => parsePoolXml("<pool type='dir'><name>x</name><target><path>/i</path><permissions><mode>rwx</mode></permissions></target></pool>", 'p.xml')))
      .toBe('p.xml:1: <mode> in <permissions>: "rwx" is not an octal mode (0755)');
    expect(errorOf(() => parsePoolXml("<pool type='dir'><name>../x</name><target><path>/i</path></target></pool>", 'p.xml'))).toMatch(/is not a name tsvmm can use/);
    expect(errorOf(() => parsePoolXml('<pool type=dir>', 'p.xml'))).toMatch(/^p\.xml:1: malformed XML/);
  });
});

describe('pool XML with <permissions>, as libvirt writes a dir pool\'s', () => {
  const xml = `<pool type='dir'>
  <name>images</name>
  <uuid>00000000-0000-4000-8000-0000000000d0</uuid>
  <capacity unit='bytes'>0</capacity>
  <allocation unit='bytes'>0</allocation>
  <available unit='bytes'>0</available>
  <source/>
  <target>
    <path>${join(scratch, 'built', 'images')}</path>
    <permissions>
      <mode>0750</mode>
      <owner>-1</owner>
      <group>${process.getgid!()}</group>
    </permissions>
  </target>
</pool>
`;

  it('reads them, writes them back, and pool-build gives the folder that mode and group', () => {
    const pool = parsePoolXml(xml, 'p.xml');
    expect(pool.permissions).toEqual({ mode: 0o750, group: process.getgid!() });
    expect(poolToXml(pool, null)).toBe(xml.replace('      <owner>-1</owner>\n', ''));
    expectValid(xml, 'storagepool');
    buildPoolFolder(pool);
    const stats = statSync(pool.path);
    expect([stats.isDirectory(), stats.mode & 0o777, stats.gid]).toEqual([true, 0o750, process.getgid!()]);
    // Built again without <permissions>, a folder that is there keeps its mode.
    buildPoolFolder({ ...pool, permissions: undefined });
    expect(statSync(pool.path).mode & 0o777).toBe(0o750);
  });
});

describe('the pool store', () => {
  const folders = { data: join(scratch, 'state'), run: join(scratch, 'state', 'run') };
  const store = new PoolStore(folders);
  const pool = (name: string, uuid: string, path: string): PoolDefinition => ({ name, uuid, type: 'dir', path });

  it('keeps definitions, active and autostart marks apart, and refuses a second pool on a name, UUID or folder', () => {
    store.define(pool('a', '00000000-0000-4000-8000-000000000001', '/srv/a'));
    store.define(pool('b', '00000000-0000-4000-8000-000000000002', '/srv/b'));
    expect(store.all().map((p) => p.name)).toEqual(['a', 'b']);
    expect(store.find('00000000-0000-4000-8000-000000000002').name).toBe('b');
    expect(errorOf(() => store.find('c'))).toBe("failed to get pool 'c': no storage pool with matching name or uuid");
    expect(errorOf(() => store.define(pool('a', '00000000-0000-4000-8000-000000000003', '/srv/c')))).toMatch(/pool 'a' is already defined/);
    expect(errorOf(() => store.define(pool('c', '00000000-0000-4000-8000-000000000001', '/srv/c')))).toMatch(/pool 'a' is already defined with uuid/);
    expect(errorOf(() => store.define(pool('c', '00000000-0000-4000-8000-000000000003', '/srv/a')))).toBe("storage source conflict with pool 'a': both are /srv/a");
    store.setActive('a', true);
    store.setAutostart('b', true);
    expect([store.isActive('a'), store.isActive('b'), store.autostart('a'), store.autostart('b')]).toEqual([true, false, false, true]);
    store.undefine('b');
    expect(store.autostart('b')).toBe(false);
    expect(store.all().map((p) => p.name)).toEqual(['a']);
  });
});

describe('a directory pool\'s volumes', () => {
  const folder = join(scratch, 'images');
  mkdirSync(folder);
  const pool: PoolDefinition = { name: 'images', uuid: '00000000-0000-4000-8000-00000000000a', type: 'dir', path: folder };

  it('creates raw and qcow2 volumes and overlays, lists the files of the folder, probes their formats', () => {
    createVolume(pool, { name: 'base.qcow2', capacity: 8 * 2 ** 20, format: 'qcow2' });
    const top = createVolume(pool, { name: 'top', capacity: 16 * 2 ** 20 + 1, format: 'qcow2', backing: { path: join(folder, 'base.qcow2'), format: 'qcow2' } });
    createVolume(pool, { name: 'disk.img', capacity: 2 ** 20, format: 'raw' });
    writeFileSync(join(folder, 'notes.txt'), 'not an image\n');
    writeFileSync(join(folder, '.hidden'), '');
    expect(top).toMatchObject({ format: 'qcow2', capacity: 16 * 2 ** 20 + 512, backing: { path: join(folder, 'base.qcow2'), format: 'qcow2' } });
    expect(listVolumes(pool).map((v) => [v.name, v.format, v.capacity])).toEqual([
      ['base.qcow2', 'qcow2', 8 * 2 ** 20], ['disk.img', 'raw', 2 ** 20], ['notes.txt', 'raw', 13], ['top', 'qcow2', 16 * 2 ** 20 + 512],
    ]);
    const disk = openDisk(top.path, { readOnly: true });
    expect(disk.size).toBe(top.capacity);
    disk.close();
    expect(errorOf(() => createVolume(pool, { name: 'top', capacity: 512, format: 'raw' }))).toBe("storage vol 'top' already exists in pool 'images'");
    expect(errorOf(() => createVolume(pool, { name: '../escape', capacity: 512, format: 'raw' }))).toMatch(/is not a volume name tsvmm can use/);
    expect(errorOf(() => createVolume(pool, { name: 'r', capacity: 512, format: 'raw', backing: { path: top.path, format: 'qcow2' } }))).toMatch(/an overlay of a backing volume must be qcow2, not raw/);
    expect(errorOf(() => findVolume(pool, '.hidden'))).toMatch(/failed to get vol '.hidden'/);
  });

  it('writes volume XML that libvirt\'s storagevol schema accepts', () => {
    const xml = volumeToXml(findVolume(pool, 'top'));
    expect(xml).toContain(`<key>${join(folder, 'top')}</key>`);
    expect(xml).toContain(`<backingStore>\n    <path>${join(folder, 'base.qcow2')}</path>\n    <format type='qcow2'/>\n  </backingStore>`);
    expectValid(xml, 'storagevol');
    expectValid(volumeToXml(findVolume(pool, 'disk.img')), 'storagevol');
  });

  it('reads volume XML for vol-create: what vol-dumpxml wrote makes the same volume again', () => {
    const dumped = volumeToXml(findVolume(pool, 'top')).replace('<name>top</name>', '<name>again</name>');
    const spec = parseVolumeXml(dumped, 'vol.xml');
    expect(spec).toEqual({ name: 'again', capacity: 16 * 2 ** 20 + 512, format: 'qcow2', backing: { path: join(folder, 'base.qcow2'), format: 'qcow2' } });
    const again = createVolume(pool, spec);
    expect(again).toMatchObject({ capacity: 16 * 2 ** 20 + 512, format: 'qcow2', backing: { path: join(folder, 'base.qcow2'), format: 'qcow2' } });
    expect(parseVolumeXml("<volume><name>small</name><capacity unit='G'>1</capacity><target><format type='qcow2'/></target></volume>", 'v.xml'))
      .toEqual({ name: 'small', capacity: 2 ** 30, format: 'qcow2' });
    expect(parseVolumeXml('<volume><name>plain</name><capacity>4096</capacity></volume>', 'v.xml')).toEqual({ name: 'plain', capacity: 4096, format: 'raw' });
    expect(errorOf(() => parseVolumeXml('<volume>\n<name>v</name></volume>', 'v.xml'))).toBe('v.xml:1: <volume>: needs a <capacity>');
    expect(errorOf(() => parseVolumeXml("<volume><name>v</name><capacity>1</capacity><target>\n<format type='vmdk'/></target></volume>", 'v.xml')))
      .toBe("v.xml:2: <format> in <target>: type='vmdk': tsvmm's volumes are raw or qcow2");
    expect(errorOf(() => parseVolumeXml('<volume><name>v</name><capacity>1</capacity><target>\n<permissions/></target></volume>', 'v.xml')))
      .toBe('v.xml:2: <permissions> in <target>: tsvmm does not support it');
    expect(errorOf(() => parseVolumeXml("<volume><name>v</name><capacity unit='furlongs'>1</capacity></volume>", 'v.xml'))).toMatch(/^v\.xml:1: <capacity> in <volume>: unit='furlongs'/);
  });

  it('reads sizes as virsh does and prints them as virsh does', () => {
    expect(parseVolumeSize('10M')).toBe(10 * 2 ** 20);
    expect(parseVolumeSize('1GiB')).toBe(2 ** 30);
    expect(parseVolumeSize('5GB')).toBe(5e9);
    expect(parseVolumeSize('4096')).toBe(4096);
    expect(errorOf(() => parseVolumeSize('1.5G'))).toMatch(/^malformed size 1\.5G/);
    expect(errorOf(() => parseVolumeSize('3 furlongs'))).toMatch(/^malformed size/);
    expect([0, 1023, 1024, 10 * 2 ** 20, 107374182400].map(prettyCapacity)).toEqual(['0.00 B', '1023.00 B', '1.00 KiB', '10.00 MiB', '100.00 GiB']);
  });
});

describe('a domain disk that is a storage volume', () => {
  const folders = { data: join(scratch, 'domain-state'), run: join(scratch, 'domain-state', 'run') };
  const folder = join(scratch, 'domain-images');
  mkdirSync(folder);
  const store = new PoolStore(folders);
  store.define({ name: 'vms', uuid: '00000000-0000-4000-8000-0000000000b0', type: 'dir', path: folder });
  const domainXml = (source: string, driver = '') => `<domain type='kvm'>
  <name>guest</name>
  <uuid>00000000-0000-4000-8000-0000000000c0</uuid>
  <memory unit='MiB'>32</memory>
  <os><type>hvm</type></os>
  <devices>
    <disk type='volume' device='disk'>${driver}
      <source ${source}/>
      <target dev='vda' bus='virtio'/>
    </disk>
  </devices>
</domain>
`;

  it('is stored as the pool and volume it names, and dumpxml prints it back as type=\'volume\'', () => {
    const definition = parseDomainXml(domainXml("pool='vms' volume='root.qcow2'"), 'guest.xml');
    expect(definition.devices.disks[0]).toEqual({ path: '', format: 'raw', volume: { pool: 'vms', volume: 'root.qcow2' }, target: 'vda', readOnly: false });
    const xml = domainToXml(definition);
    expect(xml).toContain("<disk type='volume' device='disk'>\n      <source pool='vms' volume='root.qcow2'/>");
    expect(parseDomainXml(xml, 'again.xml')).toEqual(definition);
    expectValid(xml, 'domain');
  });

  it('gets the volume\'s path and format when the domain starts; a missing pool or volume is one line naming <source> and its line', () => {
    const lookup = poolVolumeLookup(folders);
    // The line is the stored definition's (what dumpxml prints), where the domain is started from.
    const sourceLine = (d: DomainDefinition) => domainToXml(d).split('\n').findIndex((line) => line.includes('<source pool=')) + 1;
    const definition = parseDomainXml(domainXml("pool='vms' volume='root.qcow2'", "\n      <driver name='qemu' type='qcow2'/>"), 'guest.xml');
    expect(sourceLine(definition)).toBe(17);
    expect(errorOf(() => withVolumesResolved(definition, 'guest.xml', lookup))).toBe("guest.xml:17: <source> in <disk>: storage pool 'vms' is not active (pool-start it)");
    store.setActive('vms', true);
    expect(errorOf(() => withVolumesResolved(definition, 'guest.xml', lookup))).toBe("guest.xml:17: <source> in <disk>: storage pool 'vms' has no volume 'root.qcow2'");
    createVolume({ name: 'vms', uuid: '', type: 'dir', path: folder }, { name: 'root.qcow2', capacity: 2 ** 20, format: 'qcow2' });
    const resolved = withVolumesResolved(definition, 'guest.xml', lookup);
    expect(resolved.devices.disks[0]).toMatchObject({ path: join(folder, 'root.qcow2'), format: 'qcow2' });
    expect(domainToXml(resolved)).toBe(domainToXml(definition));

    createVolume({ name: 'vms', uuid: '', type: 'dir', path: folder }, { name: 'data.raw', capacity: 2 ** 20, format: 'raw' });
    const mismatch = parseDomainXml(domainXml("pool='vms' volume='data.raw'", "\n      <driver name='qemu' type='qcow2'/>"), 'guest.xml');
    expect(errorOf(() => withVolumesResolved(mismatch, 'guest.xml', lookup))).toBe("guest.xml:17: <source> in <disk>: volume 'data.raw' of pool 'vms' is raw, not the qcow2 its <driver> says");
    const noPool = parseDomainXml(domainXml("pool='nowhere' volume='x'"), 'guest.xml');
    expect(errorOf(() => withVolumesResolved(noPool, 'guest.xml', lookup))).toBe(`guest.xml:${sourceLine(noPool)}: <source> in <disk>: storage pool 'nowhere' is not defined`);
    expect(errorOf(() => parseDomainXml(domainXml("pool='vms'"), 'guest.xml'))).toBe("guest.xml:8: <source> in <disk>: needs the attribute volume='...'");
  });

  it('the domain store fills in the volumes it can find and leaves the others for start to complain about', () => {
    const domains = new DomainStore(folders, poolVolumeLookup(folders));
    domains.define(parseDomainXml(domainXml("pool='vms' volume='root.qcow2'"), 'guest.xml'));
    expect(domains.find('guest').devices.disks[0]).toMatchObject({ path: join(folder, 'root.qcow2'), format: 'qcow2' });
    store.setActive('vms', false);
    expect(domains.find('guest').devices.disks[0]).toMatchObject({ path: '', format: 'raw', volume: { pool: 'vms', volume: 'root.qcow2' } });
    expect(readFileSync(domains.definitionFile('guest'), 'utf8')).toContain("<source pool='vms' volume='root.qcow2'/>");
  });
});
