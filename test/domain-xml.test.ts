// libvirt domain XML: what tsvmm reads, what it refuses (one line naming the
// element and its line), what it writes back (checked by libvirt's own
// virt-xml-validate where installed), and the `tsvmm run` a definition means.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { InputError } from '../src/errors.ts';
import { domainRunOptions, domainToXml, parseDomainXml, runArguments, type DomainDefinition } from '../src/domain/index.ts';
import { configFromOptions, checkRunOptions } from '../src/cli/run.ts';
import { hasValidator, validateXml, warnIfNoValidator } from './helpers/libvirt-schema.ts';

const FIXTURES = join(import.meta.dirname, 'fixtures', 'domain');
const fixture = (name: string) => readFileSync(join(FIXTURES, name), 'utf8');

warnIfNoValidator('domain-xml tests');

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const GENERATED_MAC = /^52:54:00(:[0-9a-f]{2}){3}$/;

/** A small valid domain with `inner` added inside <domain> (or in place of its devices with `devices`). */
function domain(inner = '', devices = ''): string {
  return `<domain type='kvm'>
  <name>t</name>
  <memory unit='MiB'>64</memory>
  <os>
    <type>hvm</type>
  </os>${inner}
  <devices>${devices}
  </devices>
</domain>
`;
}

/** The error parseDomainXml throws for `text`: an InputError of one line. */
function refusal(text: string, fileName = 'domain.xml'): string {
  try {
    parseDomainXml(text, fileName);
  } catch (error) {
    expect(error).toBeInstanceOf(InputError);
    const message = (error as Error).message;
    expect(message).not.toContain('\n');
    return message;
  }
  throw new Error('parseDomainXml accepted it');
}

describe('reading domain XML', () => {
  it('reads a minimal direct-kernel-boot domain in the style of libvirt\'s formatdomain', () => {
    expect(parseDomainXml(fixture('direct-kernel-boot.xml'), 'direct-kernel-boot.xml')).toEqual({
      name: 'demo',
      uuid: '4dea24b3-1d52-d8f3-2516-782e98a23fa0',
      memoryBytes: 256 * 2 ** 20,
      vcpus: 1,
      os: { kernel: '/var/lib/tsvmm/boot/vmlinuz', initrd: '/var/lib/tsvmm/boot/initrd.img', cmdline: 'console=ttyS0 root=/dev/vda rw' },
      onPoweroff: 'destroy', onReboot: 'restart', onCrash: 'destroy',
      devices: {
        disks: [{ path: '/var/lib/tsvmm/images/demo.img', format: 'raw', target: 'vda', readOnly: false }],
        interfaces: [],
        // <console type='pty'/> is a serial console, which libvirt backs with the first serial port.
        serial: true, console: 'serial', rng: false, panic: false,
      },
    } satisfies DomainDefinition);
  });

  it('reads every element tsvmm honours, normalising the UUID and MACs and filling in the rest', () => {
    const definition = parseDomainXml(fixture('everything.xml'), 'everything.xml');
    const [network, bridge, user] = definition.devices.interfaces;
    expect(definition).toEqual({
      name: 'web-1',
      uuid: '5a1c2f3e-0b7d-4c4e-9f21-6a2b8d0c1e33',
      title: 'Web server & cache',
      description: 'Serves "example" pages.\nSecond line.',
      memoryBytes: 2 ** 30,
      vcpus: 2,
      os: { kernel: '/srv/boot/bzImage', initrd: '/srv/boot/initrd.cpio', cmdline: 'root=/dev/vda quiet' },
      onPoweroff: 'restart', onReboot: 'destroy', onCrash: 'restart',
      devices: {
        emulator: '/usr/bin/tsvmm',
        disks: [
          { path: '/srv/images/data.qcow2', format: 'qcow2', target: 'vdb', readOnly: false, serial: 'DATA-0001' },
          { path: '/srv/images/root.img', format: 'raw', target: 'vda', readOnly: true },
        ],
        interfaces: [
          { type: 'network', mac: '52:54:00:ab:cd:ef', network: 'default' },
          { type: 'bridge', mac: bridge!.mac, bridge: 'br0' },
          { type: 'user', mac: user!.mac, portForwards: [] },
        ],
        serial: true, console: 'serial', rng: true, panic: true,
      },
    } satisfies DomainDefinition);
    expect(bridge!.mac).toMatch(GENERATED_MAC);
    expect(user!.mac).toMatch(GENERATED_MAC);
    expect(new Set([network!.mac, bridge!.mac, user!.mac]).size).toBe(3);
  });

  it('generates a UUID when there is none, and fills in libvirt\'s defaults', () => {
    const first = parseDomainXml(domain(), 'a.xml');
    const second = parseDomainXml(domain(), 'a.xml');
    expect(first.uuid).toMatch(UUID_V4);
    expect(second.uuid).not.toBe(first.uuid);
    expect(first).toMatchObject({
      vcpus: 1, os: {}, onPoweroff: 'destroy', onReboot: 'restart', onCrash: 'destroy',
      devices: { disks: [], interfaces: [], serial: false, console: null, rng: false, panic: false },
    });
    expect(parseDomainXml(domain('', "<console type='pty'><target type='virtio' port='0'/></console>"), 'a.xml').devices)
      .toMatchObject({ serial: false, console: 'virtio' });
  });

  it('reads libvirt\'s memory units; no unit is KiB', () => {
    const bytes = (value: string, unit?: string) =>
      parseDomainXml(domain().replace("<memory unit='MiB'>64</memory>", `<memory${unit ? ` unit='${unit}'` : ''}>${value}</memory>`), 'u.xml').memoryBytes;
    expect(bytes('65536')).toBe(64 * 2 ** 20);
    expect(bytes('67108864', 'b')).toBe(64 * 2 ** 20);
    expect(bytes('67108864', 'bytes')).toBe(64 * 2 ** 20);
    expect(bytes('65536', 'k')).toBe(64 * 2 ** 20);
    expect(bytes('65536', 'KiB')).toBe(64 * 2 ** 20);
    expect(bytes('4096', 'KB')).toBe(4_096_000);
    expect(bytes('64', 'M')).toBe(64 * 2 ** 20);
    expect(bytes('64', 'MiB')).toBe(64 * 2 ** 20);
    expect(bytes('4096', 'MB')).toBe(4_096_000_000);
    expect(bytes('1', 'G')).toBe(2 ** 30);
    expect(bytes('1', 'GiB')).toBe(2 ** 30);
    expect(bytes('4096', 'GB')).toBe(4_096_000_000_000);
    expect(bytes('1', 'T')).toBe(2 ** 40);
    expect(bytes('1', 'TiB')).toBe(2 ** 40);
    expect(bytes('1', 'TB')).toBe(1e12);
    expect(refusal(domain().replace("unit='MiB'>64", "unit='MiB'>64.5"))).toBe('domain.xml:3: <memory>: "64.5" is not a whole number');
    expect(refusal(domain().replace("unit='MiB'", "unit='furlongs'"))).toMatch(/^domain\.xml:3: <memory>: unit='furlongs': not one of libvirt's units/);
    expect(refusal(domain().replace("unit='MiB'>64", "unit='b'>1000"))).toBe('domain.xml:3: <memory>: 1000 bytes is too little: a guest needs at least 1024 KiB');
    expect(refusal(domain().replace("unit='MiB'>64", "unit='KiB'>2050"))).toBe('domain.xml:3: <memory>: 2099200 bytes is not a whole number of 4 KiB pages');
    expect(refusal(domain().replace("unit='MiB'>64", "unit='EiB'>64"))).toBe('domain.xml:3: <memory>: 64 EiB is too large');
  });
});

describe('what tsvmm refuses, in one line with the element and its line', () => {
  it('malformed XML', () => {
    expect(refusal("<domain type='kvm'>\n  <name>t</nam>\n</domain>")).toMatch(/^domain\.xml:2: malformed XML: .*"name" != "nam"/);
    expect(refusal("<domain type='kvm'>\n  <name>&nbsp;</name>\n</domain>")).toMatch(/^domain\.xml:2: malformed XML: entity not found:&nbsp;/);
    expect(refusal("<domain type='kvm'>\n  <vcpu placement>1</vcpu>\n</domain>")).toMatch(/^domain\.xml:2: malformed XML: attribute "placement" missed value/);
    expect(refusal("<domain type='kvm' type='kvm'/>")).toMatch(/^domain\.xml:1: malformed XML: Attribute type redefined/);
    expect(refusal('')).toMatch(/^domain\.xml: malformed XML: missing root element/);
    expect(refusal('<domain/><domain/>')).toMatch(/^domain\.xml:1: malformed XML: /);
    expect(refusal('<!DOCTYPE domain>\n<domain/>')).toBe('domain.xml:1: <!DOCTYPE>: tsvmm does not read DTDs');
  });

  it('an element or attribute tsvmm cannot honour', () => {
    expect(refusal(domain('', "\n    <hostdev mode='subsystem' type='pci'/>"))).toBe('domain.xml:8: <hostdev>: tsvmm does not support it');
    expect(refusal(domain("\n  <features><acpi/></features>"))).toBe('domain.xml:7: <features>: tsvmm does not support it');
    expect(refusal(domain().replace('<type>hvm</type>', "<type>hvm</type>\n    <boot dev='hd'/>"))).toBe('domain.xml:6: <boot> in <os>: tsvmm does not support it');
    expect(refusal(domain().replace('<type>hvm', "<type machine='pc-i440fx-7.2'>hvm"))).toBe("domain.xml:5: <type> in <os>: machine='pc-i440fx-7.2': tsvmm does not support this attribute");
    expect(refusal(domain("\n  <vcpu cpuset='0-1'>2</vcpu>"))).toBe("domain.xml:7: <vcpu>: cpuset='0-1': tsvmm does not support this attribute");
    expect(refusal(domain('', "\n    <disk type='block'><source dev='/dev/sda'/><target dev='vda'/></disk>"))).toBe("domain.xml:8: <disk>: type='block': tsvmm reads disk images from files (type='file') and storage volumes (type='volume')");
    expect(refusal(domain('', "\n    <disk device='cdrom'><source file='/a.iso'/><target dev='vda'/></disk>"))).toBe("domain.xml:8: <disk>: device='cdrom': tsvmm attaches disks only (device='disk')");
    expect(refusal(domain('', "\n    <disk><source file='/a.img'/><target dev='hda' bus='ide'/></disk>"))).toBe("domain.xml:8: <target> in <disk>: dev='hda': tsvmm disks are virtio disks, named vda, vdb, ...");
    expect(refusal(domain('', "\n    <disk><driver type='vmdk'/><source file='/a.img'/><target dev='vda'/></disk>"))).toBe("domain.xml:8: <driver> in <disk>: type='vmdk': tsvmm reads raw and qcow2 images");
    expect(refusal(domain('', "\n    <interface type='direct'/>"))).toBe("domain.xml:8: <interface>: type='direct': tsvmm connects interfaces of type network, bridge or user");
    expect(refusal(domain('', "\n    <interface type='user'><model type='e1000'/></interface>"))).toBe("domain.xml:8: <model> in <interface>: type='e1000': tsvmm's network card is virtio (type='virtio')");
    expect(refusal(domain('', "\n    <memballoon model='virtio'/>"))).toBe("domain.xml:8: <memballoon>: model='virtio': tsvmm has no memory balloon (only model='none')");
    expect(refusal(domain('', "\n    <rng model='virtio'><backend model='random'>/dev/hwrng</backend></rng>"))).toBe('domain.xml:8: <backend> in <rng>: "/dev/hwrng": tsvmm draws from /dev/urandom only');
    expect(refusal(domain('', "\n    <serial type='tcp'/>"))).toBe("domain.xml:8: <serial>: type='tcp': tsvmm gives the serial port a console of its own (only type='pty')");
    expect(refusal(domain('', "\n    <serial type='pty'><target port='1'/></serial>"))).toBe("domain.xml:8: <target> in <serial>: port='1': a tsvmm PC has one serial port, port 0 (COM1)");
    expect(refusal(domain('', "\n    <panic model='hyperv'/>"))).toBe("domain.xml:8: <panic>: model='hyperv': tsvmm's panic device is QEMU's ISA pvpanic (model='isa')");
    expect(refusal(domain('', "\n    <panic model='isa'><address type='isa' iobase='0x506'/></panic>"))).toBe("domain.xml:8: <address> in <panic>: iobase='0x506': tsvmm's pvpanic sits at 0x505");
    expect(refusal(domain("\n  <on_crash>coredump-restart</on_crash>"))).toBe('domain.xml:7: <on_crash>: "coredump-restart": tsvmm can destroy or restart the domain (not coredump-restart)');
    expect(refusal(domain("\n  <clock offset='localtime'/>"))).toBe("domain.xml:7: <clock>: offset='localtime': the guest's clock is the host's in UTC (only offset='utc')");
    expect(refusal(domain().replace("type='kvm'", "type='qemu'"))).toBe("domain.xml:1: <domain>: type='qemu': tsvmm runs guests with KVM only (type='kvm')");
    expect(refusal(domain("\n  stray text"))).toBe('domain.xml:7: <domain>: unexpected text "stray text"');
  });

  it('a definition that is incomplete or contradicts itself', () => {
    expect(refusal("<domain type='kvm'>\n  <memory>65536</memory>\n</domain>")).toBe('domain.xml:1: <domain>: needs a <name>');
    expect(refusal('<domain>\n  <name>t</name>\n</domain>')).toBe("domain.xml:1: <domain>: needs the attribute type='...'");
    expect(refusal('<vm/>')).toBe('domain.xml:1: <vm>: the root element of a domain definition is <domain>');
    expect(refusal(domain().replace('<name>t</name>', '<name>a/b</name>'))).toMatch(/^domain\.xml:2: <name>: "a\/b" is not a name tsvmm can use/);
    expect(refusal(domain("\n  <name>u</name>"))).toBe('domain.xml:7: <name>: given twice (first at line 2)');
    expect(refusal(domain("\n  <uuid>not-a-uuid</uuid>"))).toMatch(/^domain\.xml:7: <uuid>: "not-a-uuid" is not a UUID/);
    expect(refusal(domain("\n  <title>two\nlines</title>"))).toBe('domain.xml:7: <title>: a title is one line');
    expect(refusal(domain("\n  <currentMemory unit='MiB'>32</currentMemory>"))).toBe('domain.xml:7: <currentMemory>: must equal <memory>: tsvmm has no memory balloon to hold a guest below it');
    expect(refusal(domain("\n  <vcpu>0</vcpu>"))).toBe('domain.xml:7: <vcpu>: "0" is not a number of vCPUs (1 or more)');
    expect(refusal(domain().replace('<type>hvm</type>', '<type>hvm</type><initrd>/i.img</initrd>'))).toBe('domain.xml:5: <initrd> in <os>: needs a <kernel> (without one tsvmm boots its default guest, which has its own)');
    expect(refusal(domain().replace('<type>hvm</type>', '<type>hvm</type><kernel>vmlinuz</kernel>'))).toBe('domain.xml:5: <kernel> in <os>: "vmlinuz" is not an absolute path');
    expect(refusal(domain('', "\n    <disk><source file='/a,b.img'/><target dev='vda'/></disk>"))).toBe('domain.xml:8: <source> in <disk>: "/a,b.img": tsvmm cannot use a path with a comma');
    expect(refusal(domain('', "\n    <disk><target dev='vda'/></disk>"))).toBe("domain.xml:8: <disk>: needs a <source file='...'/>");
    expect(refusal(domain('', "\n    <disk><source file='/a.img'/><target dev='vda'/></disk>\n    <disk><source file='/b.img'/><target dev='vda'/></disk>"))).toBe("domain.xml:9: <disk>: target dev='vda' is the disk's at line 8 too");
    expect(refusal(domain('', "\n    <disk><source file='/a.img'/><target dev='vda'/><serial>this-serial-is-too-long</serial></disk>"))).toBe('domain.xml:8: <serial> in <disk>: "this-serial-is-too-long": a virtio disk\'s serial holds 20 bytes');
    expect(refusal(domain('', "\n    <interface type='network'/>"))).toBe("domain.xml:8: <interface>: type='network' needs a <source network='...'/>");
    expect(refusal(domain('', "\n    <interface type='user'><mac address='52:54:00:00:00:01'/></interface>\n    <interface type='user'><mac address='52:54:00:00:00:01'/></interface>"))).toBe("domain.xml:9: <interface>: mac address='52:54:00:00:00:01' is the interface's at line 8 too");
    expect(refusal(domain('', "\n    <interface type='user'><mac address='01:00:5e:00:00:01'/></interface>"))).toBe("domain.xml:8: <mac> in <interface>: address='01:00:5e:00:00:01' is a multicast address");
  });

  it('libvirt\'s test driver domain (virsh -c test:///default dumpxml test), refusal by refusal', () => {
    // Each step names what tsvmm refuses next and why; the fix is the edit a user would make.
    const steps: [RegExp | string, (xml: string) => string][] = [
      ["libvirt-test-driver.xml:1: <domain>: type='test': tsvmm runs guests with KVM only (type='kvm')", (x) => x.replace("type='test'", "type='kvm'")],
      ["libvirt-test-driver.xml:5: <currentMemory>: must equal <memory>: tsvmm has no memory balloon to hold a guest below it", (x) => x.replace('<currentMemory unit=\'KiB\'>2097152', '<currentMemory unit=\'KiB\'>8388608')],
      ["libvirt-test-driver.xml:8: <type> in <os>: arch='i686': tsvmm runs x86_64 guests only", (x) => x.replace("arch='i686'", "arch='x86_64'")],
      ['libvirt-test-driver.xml:9: <boot> in <os>: tsvmm does not support it', (x) => x.replace("<boot dev='hd'/>", '')],
      ['libvirt-test-driver.xml:19: <address> in <disk>: tsvmm does not support it', (x) => x.replace(/\s*<address [^>]*\/>/g, '')],
      ["libvirt-test-driver.xml:25: <memballoon>: model='virtio': tsvmm has no memory balloon (only model='none')", (x) => x.replace("<memballoon model='virtio'>\n    </memballoon>", "<memballoon model='none'/>")],
    ];
    let xml = fixture('libvirt-test-driver.xml');
    for (const [message, fix] of steps) {
      expect(refusal(xml, 'libvirt-test-driver.xml')).toBe(message);
      xml = fix(xml);
    }
    expect(parseDomainXml(xml, 'libvirt-test-driver.xml')).toMatchObject({
      name: 'test', uuid: '6695eb01-f6a4-8304-79aa-97f2502e193f', memoryBytes: 8 * 2 ** 30, vcpus: 2,
      devices: { disks: [{ path: '/guest/diskimage1', target: 'vda' }], interfaces: [{ type: 'network', network: 'default', mac: 'aa:bb:cc:dd:ee:ff', target: 'testnet0' }] },
    });
  });
});

describe('writing domain XML (dumpxml)', () => {
  const samples = ['direct-kernel-boot.xml', 'everything.xml'].map((name) => parseDomainXml(fixture(name), name));

  it('reads back as the same definition, and writes the same text again', () => {
    for (const definition of [...samples, parseDomainXml(domain(), 'minimal.xml')]) {
      const xml = domainToXml(definition);
      expect(parseDomainXml(xml, 'dump.xml')).toEqual(definition);
      expect(domainToXml(parseDomainXml(xml, 'dump.xml'))).toBe(xml);
    }
  });

  it('writes libvirt\'s layout: its element order, KiB, the defaults spelled out', () => {
    const xml = domainToXml(samples[0]!);
    const order = [...xml.matchAll(/^ {2}<(\w+)/gm)].map((m) => m[1]);
    expect(order).toEqual(['name', 'uuid', 'memory', 'currentMemory', 'vcpu', 'os', 'clock', 'on_poweroff', 'on_reboot', 'on_crash', 'devices']);
    expect(xml).toContain("  <memory unit='KiB'>262144</memory>\n  <currentMemory unit='KiB'>262144</currentMemory>\n  <vcpu placement='static'>1</vcpu>\n");
    expect(xml).toContain("    <disk type='file' device='disk'>\n      <driver name='qemu' type='raw'/>\n      <source file='/var/lib/tsvmm/images/demo.img'/>\n      <target dev='vda' bus='virtio'/>\n    </disk>\n");
    expect(xml).toContain("    <memballoon model='none'/>\n");
  });

  it('escapes what XML must', () => {
    const definition = { ...samples[0]!, title: `a<b> & 'c' "d"`, description: ']]> & <x/>', os: { kernel: '/boot/a&b', cmdline: `init=/bin/sh -c 'echo "<&>"'` } };
    const xml = domainToXml(definition);
    expect(xml).toContain('<title>a&lt;b&gt; &amp; \'c\' "d"</title>');
    expect(parseDomainXml(xml, 'dump.xml')).toEqual(definition);
  });

  describe.skipIf(!hasValidator)('passes libvirt\'s schema (virt-xml-validate FILE domain)', () => {
    const validate = (xml: string) => validateXml(xml, 'domain');

    it('the fixtures tsvmm reads, and what it writes for them', () => {
      for (const name of ['direct-kernel-boot.xml', 'everything.xml']) {
        expect(validate(fixture(name))).toMatchObject({ status: 0 });
      }
      for (const definition of [...samples, parseDomainXml(domain(), 'minimal.xml')]) {
        const result = validate(domainToXml(definition));
        expect(result.output).toMatch(/validates/);
        expect(result.status).toBe(0);
      }
    });

    it('the validator does fail: a domain without a name does not validate', () => {
      expect(validate(domainToXml(samples[0]!).replace('<name>demo</name>', '')).status).not.toBe(0);
    });
  });
});

describe('the tsvmm run a definition means', () => {
  it('a direct-kernel-boot domain: its kernel, memory, vCPUs, disks and reboot action', () => {
    const definition = parseDomainXml(fixture('direct-kernel-boot.xml'), 'direct-kernel-boot.xml');
    const options = domainRunOptions(definition);
    expect(runArguments(options)).toEqual([
      '--name', 'demo', '--uuid', '4dea24b3-1d52-d8f3-2516-782e98a23fa0', '--mem', '262144K', '--cpus', '1',
      '--kernel', '/var/lib/tsvmm/boot/vmlinuz', '--initrd', '/var/lib/tsvmm/boot/initrd.img', '--append', 'console=ttyS0 root=/dev/vda rw',
      '--disk', '/var/lib/tsvmm/images/demo.img,format=raw', '--reboot', 'restart', '--poweroff', 'exit', '--panic', 'exit',
    ]);
    // tsvmm run's own checks accept them, and they build the machine the XML describes.
    checkRunOptions(options);
    const config = configFromOptions(options);
    expect(config.memoryBytes).toBe(definition.memoryBytes);
    expect(config.cpus).toBe(1);
    expect(config.linux).toMatchObject({ kernel: '/var/lib/tsvmm/boot/vmlinuz', initrd: '/var/lib/tsvmm/boot/initrd.img' });
    expect(config.linux!.cmdline).toMatch(/ console=ttyS0 root=\/dev\/vda rw$/);
    expect(config.virtio).toEqual([{ kind: 'blk', path: '/var/lib/tsvmm/images/demo.img', format: 'raw' }]);
  });

  it('disks in target order (vda first), readonly and serial, virtio-rng, pvpanic, a virtio console; the lifecycle actions', () => {
    const definition: DomainDefinition = {
      ...parseDomainXml(fixture('everything.xml'), 'everything.xml'),
      devices: {
        ...parseDomainXml(fixture('everything.xml'), 'everything.xml').devices,
        interfaces: [], console: 'virtio',
      },
    };
    const options = domainRunOptions(definition);
    expect(options).toMatchObject({
      disk: ['/srv/images/root.img,format=raw,readonly', '/srv/images/data.qcow2,format=qcow2,serial=DATA-0001'],
      device: ['virtio-rng', 'pvpanic'], console: 'virtio', reboot: 'exit', poweroff: 'restart', panic: 'restart', mem: '1048576K', cpus: '2',
    });
    expect(configFromOptions(options)).toMatchObject({
      memoryBytes: 2 ** 30, cpus: 2, console: 'virtio', pvpanic: true,
      virtio: [
        { kind: 'blk', path: '/srv/images/root.img', format: 'raw', readOnly: true },
        { kind: 'blk', path: '/srv/images/data.qcow2', format: 'qcow2', serial: 'DATA-0001' },
        { kind: 'rng' },
      ],
    });
  });

  it('no <kernel>: no --kernel, so tsvmm run boots its default guest', () => {
    const options = domainRunOptions(parseDomainXml(domain(), 'minimal.xml'));
    expect(options.kernel).toBeUndefined();
    expect(runArguments(options)).not.toContain('--kernel');
  });

  // <interface type='user'> (passt): test/user-network.test.ts.
});
