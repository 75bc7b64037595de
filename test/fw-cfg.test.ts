// fw_cfg as QEMU's docs/specs/fw_cfg.rst specifies it: the registers and the
// DMA interface against guest memory, the items tsvmm puts in it, the
// `--fw-cfg` option, and a real-mode guest (firmware/fwcfg.S) reading the
// signature and a file through real KVM exits, by the data port and by DMA.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { AddressSpace } from '../src/bus/index.ts';
import { parseFwCfg, platformConfigFromOptions } from '../src/cli/platform-options.ts';
import { encodeFwCfgContents, FwCfg, FwCfgDmaControl, FwCfgKey, FW_CFG_STATE } from '../src/devices/fw-cfg.ts';
import { InputError } from '../src/errors.ts';
import { PortLayout } from '../src/layout.ts';
import { machineFwCfg, readFwCfgFiles } from '../src/machine/fw-cfg-items.ts';
import { GuestMemory } from '../src/memory/index.ts';
import { firmwarePath } from '../bench/lib/artifacts.ts';
import { hasKvm, tsvmm } from './helpers/kvm.ts';

const text = (s: string) => new TextEncoder().encode(s);
const RAM = 0x10_0000;

/** fw_cfg on a port bus, as a guest sees it, over 1 MiB of guest memory. */
function machine(files: { name: string; data: Uint8Array }[] = [], options: { cpus?: number; memoryBytes?: number } = {}) {
  const memory = GuestMemory.ofArrayBuffers([{ guestAddress: 0, size: RAM }]);
  const device = new FwCfg(machineFwCfg({ cpus: options.cpus ?? 2, memoryBytes: options.memoryBytes ?? 256 << 20 }, files), memory);
  const pio = AddressSpace.ports();
  pio.register(PortLayout.FW_CFG, 2, device);
  pio.register(PortLayout.FW_CFG_DMA, 8, device.dma);
  const select = (key: number) => pio.write(PortLayout.FW_CFG, 2, key);
  const readBytes = (n: number) => Uint8Array.from({ length: n }, () => pio.read(PortLayout.FW_CFG + 1, 1));
  const item = (key: number, n: number) => {
    select(key);
    return readBytes(n);
  };
  /** Writes a FWCfgDmaAccess at `at` and starts it; returns the control word the device wrote back. */
  const dma = (at: number, control: number, length: number, address: number) => {
    const view = new DataView(new ArrayBuffer(16));
    view.setUint32(0, control);
    view.setUint32(4, length);
    view.setBigUint64(8, BigInt(address));
    memory.write(at, new Uint8Array(view.buffer));
    // The register is big-endian: the port value whose bytes are the address's, most significant first.
    const swap = (v: number) => new DataView(Uint8Array.of(v >>> 24, v >>> 16, v >>> 8, v).buffer).getUint32(0, true);
    pio.write(PortLayout.FW_CFG_DMA, 4, swap(Math.floor(at / 2 ** 32)));
    pio.write(PortLayout.FW_CFG_DMA + 4, 4, swap(at >>> 0));
    return new DataView(memory.read(at, 4).slice().buffer).getUint32(0);
  };
  return { device, memory, pio, select, readBytes, item, dma };
}

/** The directory as the spec lays it out: be32 count, then { be32 size, be16 select, be16 reserved, name[56] }. */
function directory(bytes: Uint8Array): { name: string; size: number; select: number }[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Array.from({ length: view.getUint32(0) }, (_, i) => {
    const at = 4 + 64 * i;
    const name = bytes.subarray(at + 8, at + 64);
    return { size: view.getUint32(at), select: view.getUint16(at + 4), name: new TextDecoder().decode(name.subarray(0, name.indexOf(0))) };
  });
}

describe('fw_cfg registers (docs/specs/fw_cfg.rst)', () => {
  it('the signature is "QEMU" and ID offers the traditional interface and DMA', () => {
    const { item } = machine();
    expect(new TextDecoder().decode(item(FwCfgKey.SIGNATURE, 4))).toBe('QEMU');
    expect(item(FwCfgKey.ID, 4)).toEqual(Uint8Array.of(0x03, 0, 0, 0));
  });

  it('the RAM size (u64) and CPU count (u16) are little-endian', () => {
    const { item } = machine([], { cpus: 3, memoryBytes: 5 * 2 ** 30 });
    expect(new DataView(item(FwCfgKey.RAM_SIZE, 8).buffer).getBigUint64(0, true)).toBe(5n << 30n);
    expect(item(FwCfgKey.NB_CPUS, 2)).toEqual(Uint8Array.of(3, 0));
    expect(item(FwCfgKey.MAX_CPUS, 2)).toEqual(Uint8Array.of(3, 0));
  });

  it('reads past an item\'s end, and of a key nothing has, are 0; selecting again rewinds', () => {
    const { item, readBytes } = machine();
    expect(item(FwCfgKey.SIGNATURE, 6)).toEqual(Uint8Array.of(0x51, 0x45, 0x4d, 0x55, 0, 0));
    expect(item(0x1234, 4)).toEqual(new Uint8Array(4));
    expect(item(FwCfgKey.SIGNATURE, 2)).toEqual(text('QE'));
    expect(readBytes(2)).toEqual(text('MU'));
  });

  it('the write-channel bit selects the same item; a byte written to the data port changes nothing', () => {
    const { item, pio, readBytes, select } = machine();
    expect(item(FwCfgKey.SIGNATURE | FwCfgKey.WRITE_CHANNEL, 4)).toEqual(text('QEMU'));
    select(FwCfgKey.SIGNATURE);
    pio.write(PortLayout.FW_CFG + 1, 1, 0x58);
    pio.write(PortLayout.FW_CFG, 1, 0x58); // a byte write to the selector is a data write on QEMU's PC
    expect(readBytes(4)).toEqual(text('QEMU'));
  });

  it('the directory lists every file sorted by name with its key and size, and each key reads the file', () => {
    const { item } = machine([{ name: 'opt/zeta', data: text('last') }, { name: 'opt/alpha', data: text('first one') }]);
    const count = new DataView(item(FwCfgKey.FILE_DIR, 4).buffer).getUint32(0);
    expect(count).toBe(3);
    const entries = directory(item(FwCfgKey.FILE_DIR, 4 + 64 * count));
    expect(entries).toEqual([
      { name: 'etc/e820', size: 20, select: FwCfgKey.FILE_FIRST },
      { name: 'opt/alpha', size: 9, select: FwCfgKey.FILE_FIRST + 1 },
      { name: 'opt/zeta', size: 4, select: FwCfgKey.FILE_FIRST + 2 },
    ]);
    expect(item(FwCfgKey.FILE_FIRST + 1, 9)).toEqual(text('first one'));
    expect(item(FwCfgKey.FILE_FIRST + 2, 4)).toEqual(text('last'));
  });

  it('etc/e820 lists the RAM ranges as packed { u64 address, u64 length, u32 type 1 }, both sides of the MMIO gap', () => {
    const { item } = machine([], { memoryBytes: 4 * 2 ** 30 });
    const view = new DataView(item(FwCfgKey.FILE_FIRST, 40).buffer);
    expect([view.getBigUint64(0, true), view.getBigUint64(8, true), view.getUint32(16, true)]).toEqual([0n, 0xd000_0000n, 1]);
    expect([view.getBigUint64(20, true), view.getBigUint64(28, true), view.getUint32(36, true)]).toEqual([0x1_0000_0000n, 0x3000_0000n, 1]);
  });
});

describe('fw_cfg DMA', () => {
  it('reading the DMA register gives "QEMU CFG"', () => {
    const { pio } = machine();
    const bytes = [0, 4].flatMap((at) => {
      const v = pio.read(PortLayout.FW_CFG_DMA + at, 4);
      return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];
    });
    expect(new TextDecoder().decode(Uint8Array.from(bytes))).toBe('QEMU CFG');
  });

  it('select + read copies the item into guest memory, zero past its end, and clears control', () => {
    const { dma, memory } = machine([{ name: 'opt/x', data: text('dma data') }]);
    memory.fill(0x2000, 16, 0xee);
    const control = dma(0x1000, ((FwCfgKey.FILE_FIRST + 1) << 16) | FwCfgDmaControl.SELECT | FwCfgDmaControl.READ, 12, 0x2000);
    expect(control).toBe(0);
    expect(memory.read(0x2000, 16)).toEqual(Uint8Array.of(...text('dma data'), 0, 0, 0, 0, 0xee, 0xee, 0xee, 0xee));
  });

  it('skip moves the offset that the data port then reads from', () => {
    const { dma, readBytes } = machine();
    expect(dma(0x1000, (FwCfgKey.SIGNATURE << 16) | FwCfgDmaControl.SELECT | FwCfgDmaControl.SKIP, 2, 0)).toBe(0);
    expect(readBytes(2)).toEqual(text('MU'));
  });

  it('a write (no item is writable) or a target outside guest RAM fails with the error bit, and nothing outside RAM is touched', () => {
    const { dma } = machine();
    expect(dma(0x1000, (FwCfgKey.SIGNATURE << 16) | FwCfgDmaControl.SELECT | FwCfgDmaControl.WRITE, 4, 0x2000)).toBe(FwCfgDmaControl.ERROR);
    expect(dma(0x1000, FwCfgDmaControl.READ, 4, RAM - 2)).toBe(FwCfgDmaControl.ERROR);
    expect(dma(0x1000, FwCfgDmaControl.READ, 0xffff_ffff, 0)).toBe(FwCfgDmaControl.ERROR);
    expect(dma(0x1000, FwCfgDmaControl.READ, 4, 2 ** 52)).toBe(FwCfgDmaControl.ERROR);
  });

  it('a request whose own address is outside RAM is dropped without an access', () => {
    const { pio, memory, device } = machine();
    const before = memory.read(0, RAM).slice();
    pio.write(PortLayout.FW_CFG_DMA, 4, 0x0100_0000); // high half 1: above 4 GiB, no RAM
    pio.write(PortLayout.FW_CFG_DMA + 4, 4, 0);
    expect(Buffer.compare(memory.read(0, RAM), before)).toBe(0);
    expect(FW_CFG_STATE.views(device.state).dmaAddressHigh[0]).toBe(0);
  });
});

describe('fw_cfg state as data', () => {
  it('the selection and offset are saved and restored', () => {
    const a = machine();
    a.item(FwCfgKey.SIGNATURE, 1);
    const saved = a.device.saveState();
    const b = machine();
    b.device.restoreState(saved);
    expect(b.readBytes(3)).toEqual(text('EMU'));
  });
});

describe('--fw-cfg, as QEMU\'s -fw_cfg', () => {
  it('[name=]NAME with file=PATH or string=S; ",," is a comma', () => {
    expect(parseFwCfg('name=opt/a,file=/tmp/x')).toEqual({ name: 'opt/a', file: '/tmp/x' });
    expect(parseFwCfg('opt/a,string=hi')).toEqual({ name: 'opt/a', string: 'hi' });
    expect(parseFwCfg('name=opt/a,string=a,,b')).toEqual({ name: 'opt/a', string: 'a,b' });
    expect(platformConfigFromOptions([], ['opt/a,string=1'])).toEqual({ fwCfgFiles: [{ name: 'opt/a', string: '1' }] });
  });

  it.each([
    ['name=opt/a', '--fw-cfg name=opt/a: give either file=PATH or string=S'],
    ['name=opt/a,file=x,string=y', '--fw-cfg name=opt/a,file=x,string=y: give either file=PATH or string=S'],
    ['file=x', '--fw-cfg file=x: no name (name=opt/NAME)'],
    ['name=opt/a,string=', '--fw-cfg name=opt/a,string=: string needs a value (string=...)'],
    ['name=opt/a,size=3,string=x', '--fw-cfg name=opt/a,size=3,string=x: unknown setting "size" (known: name, file, string)'],
  ])('%s is refused with one line', (spec, message) => {
    expect(() => parseFwCfg(spec)).toThrow(new InputError(message));
  });

  it('names are at most 55 bytes, each once, never tsvmm\'s own; outside opt/ they get QEMU\'s warning', () => {
    const read = () => text('x');
    const warnings: string[] = [];
    expect(() => readFwCfgFiles([{ name: `opt/${'n'.repeat(52)}`, string: 'x' }], read, warnings)).toThrow(/a name is 1 to 55 bytes/);
    expect(() => readFwCfgFiles([{ name: 'opt/a', string: 'x' }, { name: 'opt/a', file: 'y' }], read, warnings)).toThrow(/given twice/);
    expect(() => readFwCfgFiles([{ name: 'etc/e820', string: 'x' }], read, warnings)).toThrow(/tsvmm provides this file itself/);
    expect(readFwCfgFiles([{ name: 'my/file', file: 'f' }], read, warnings)).toEqual([{ name: 'my/file', data: text('x') }]);
    expect(warnings).toEqual(['--fw-cfg name=my/file: names a user gives should start with "opt/" (QEMU\'s rule; "etc/" is the VMM\'s)']);
  });

  it('encodes a name of exactly 55 bytes with its NUL in the 56-byte field', () => {
    const name = `opt/${'n'.repeat(51)}`;
    const contents = encodeFwCfgContents([], [{ name, data: text('x') }]);
    const dir = contents.items.find((i) => i.key === FwCfgKey.FILE_DIR)!;
    expect(directory(new Uint8Array(contents.data, dir.offset, dir.length))[0]!.name).toBe(name);
  });
});

describe.skipIf(!hasKvm)('fw_cfg through real exits (firmware/fwcfg.S)', () => {
  it('a guest reads the signature, ID, CPU count and RAM size, and finds and reads a file by the data port and by DMA', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tsvmm-fwcfg-'));
    const file = join(dir, 'hello.txt');
    writeFileSync(file, 'hello from a file');
    const r = tsvmm(['run', '--flat', firmwarePath('fwcfg'), '--mem', '16M', '--fw-cfg', `name=opt/tsvmm/hello,file=${file}`, '--fw-cfg', 'opt/other,string=x']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe([
      'fw_cfg sig=QEMU id=00000003 cpus=0001 ram=0000000001000000',
      // Sorted: etc/e820 (0x20), opt/other (0x21), opt/tsvmm/hello (0x22).
      'file key=0022 size=00000011 data=hello from a file',
      'dma control=00000000 data=hello from a file',
      '',
    ].join('\n'));
    expect(r.status).toBe(1);
  });

  it('without the file the guest says so; a missing host file is one line and status 2', () => {
    const r = tsvmm(['run', '--flat', firmwarePath('fwcfg'), '--mem', '16M']);
    expect(r.stdout).toMatch(/\nfile not found\n$/);
    expect(r.status).toBe(3);
    const missing = tsvmm(['run', '--flat', firmwarePath('fwcfg'), '--fw-cfg', 'name=opt/tsvmm/hello,file=/nonexistent/f']);
    expect(missing.stderr).toBe('tsvmm: fw_cfg file opt/tsvmm/hello from /nonexistent/f: no such file\n');
    expect(missing.status).toBe(2);
  });
});
