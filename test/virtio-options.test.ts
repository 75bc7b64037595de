// `tsvmm run`'s virtio flags, as a QEMU user would type them.
import { describe, expect, it } from 'vitest';
import { parseDevice, parseDisk, parseNet, virtioConfigFromOptions } from '../src/cli/virtio-options.ts';

describe('--disk', () => {
  it('takes a path and QEMU-style settings', () => {
    expect(parseDisk('a.img')).toEqual({ kind: 'blk', path: 'a.img' });
    expect(parseDisk('b.qcow2,format=qcow2,readonly,serial=disk-7,transport=pci')).toEqual({
      kind: 'blk', path: 'b.qcow2', format: 'qcow2', readOnly: true, serial: 'disk-7', transport: 'pci',
    });
    expect(parseDisk('c.img,readonly=off')).toEqual({ kind: 'blk', path: 'c.img' });
  });

  it.each([
    [',format=raw', /no image path/],
    ['a.img,format=vmdk', /format must be raw or qcow2/],
    ['a.img,transport=virtio', /transport must be mmio or pci/],
    ['a.img,cache=none', /unknown setting "cache"/],
    ['a.img,serial', /serial needs a value/],
    ['a.img,readonly,readonly', /given twice/],
    ['a.img,,readonly', /empty setting/],
  ])('refuses %s', (spec, message) => {
    expect(() => parseDisk(spec)).toThrow(message);
  });
});

describe('--net and --device', () => {
  it('take a TAP name, a MAC and a device type', () => {
    expect(parseNet('tap')).toEqual({ kind: 'net' });
    expect(parseNet('tap=tsvmm0,mac=52:54:00:aa:bb:cc,transport=mmio')).toEqual({ kind: 'net', tap: 'tsvmm0', mac: '52:54:00:aa:bb:cc', transport: 'mmio' });
    expect(parseDevice('virtio-rng')).toEqual({ kind: 'rng' });
    expect(parseDevice('virtio-console,transport=pci')).toEqual({ kind: 'console', transport: 'pci' });
  });

  it.each([
    () => parseNet('slirp'),
    () => parseNet('tap=this-name-is-far-too-long'),
    () => parseNet('tap,mac=52:54:00'),
    () => parseDevice('virtio-gpu'),
    () => parseDevice('virtio-rng,readonly'),
  ])('refuses bad input (%#)', (parse) => {
    expect(parse).toThrow();
  });

  it('collects every device, then the defaults', () => {
    expect(virtioConfigFromOptions({ disk: ['a.img'], device: ['virtio-rng'], virtioTransport: 'pci', console: 'virtio' })).toEqual({
      virtio: [{ kind: 'blk', path: 'a.img' }, { kind: 'rng' }], virtioTransport: 'pci', console: 'virtio',
    });
    expect(virtioConfigFromOptions({})).toEqual({});
    expect(() => virtioConfigFromOptions({ virtioTransport: 'ccw' })).toThrow(/expected mmio or pci/);
    expect(() => virtioConfigFromOptions({ console: 'vga' })).toThrow(/expected serial or virtio/);
  });
});
