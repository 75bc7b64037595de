// The AML encoder and resource descriptors against bytes worked out from the
// ACPI 6.5 spec (chapter 20's grammar and byte values, §6.4's descriptor
// layouts). Each expected array is spelled out by hand, not produced by the
// encoder. test/acpi.test.ts also checks the whole DSDT against iasl.
import { describe, expect, it } from 'vitest';
import {
  and, arg, buffer, device, eisaId, field, FieldAccess, FieldUpdate, ifThen, integer, local, method, name, nameString,
  notify, operationRegion, path, pkg, pkgLength, RegionSpace, scope, store, string,
} from '../src/boot/acpi/aml.ts';
import { interrupt, ioPorts, memory32Fixed, resourceTemplate } from '../src/boot/acpi/resources.ts';
import { InputError } from '../src/errors.ts';

const ascii = (text: string) => [...text].map((c) => c.charCodeAt(0));

describe('PkgLength (§20.2.4)', () => {
  it('one byte while the package, counting that byte, is at most 63 bytes', () => {
    expect(pkgLength(0)).toEqual([0x01]);
    expect(pkgLength(62)).toEqual([0x3f]);
  });

  it('two bytes from 64: bits 7:6 = 1 following byte, bits 3:0 the low nibble, then bits 11:4', () => {
    expect(pkgLength(63)).toEqual([0x41, 0x04]); // 63 + 2 = 65 = 0x041
    expect(pkgLength(0xffd)).toEqual([0x4f, 0xff]); // 0xffd + 2 = 0xfff, the largest two-byte length
  });

  it('three and four bytes for longer packages', () => {
    expect(pkgLength(0xffe)).toEqual([0x81, 0x00, 0x01]); // 0xffe + 3 = 0x1001
    expect(pkgLength(0xffffc)).toEqual([0x8f, 0xff, 0xff]); // 0xffffc + 3 = 0xfffff, the largest three-byte length
    expect(pkgLength(0xffffd)).toEqual([0xc1, 0x00, 0x00, 0x01]); // 0xffffd + 4 = 0x100001
  });

  it('refuses a package PkgLength cannot describe (2^28 bytes)', () => {
    expect(() => pkgLength(2 ** 28)).toThrow(InputError);
  });
});

describe('NameString (§20.2.2)', () => {
  it('pads a short segment with underscores', () => {
    expect(nameString('_SB')).toEqual(ascii('_SB_'));
    expect(nameString('PWRB')).toEqual(ascii('PWRB'));
  });

  it('root and parent prefixes', () => {
    expect(nameString('\\PWRB')).toEqual([0x5c, ...ascii('PWRB')]);
    expect(nameString('^^ESTS')).toEqual([0x5e, 0x5e, ...ascii('ESTS')]);
    expect(nameString('\\')).toEqual([0x5c, 0x00]);
  });

  it('two segments are a DualNamePath (0x2e), more a MultiNamePath (0x2f, count)', () => {
    expect(nameString('\\_SB.PWRB')).toEqual([0x5c, 0x2e, ...ascii('_SB_PWRB')]);
    expect(nameString('_SB.PCI0.LPC')).toEqual([0x2f, 0x03, ...ascii('_SB_PCI0LPC_')]);
  });

  it('refuses what is not a name segment', () => {
    expect(() => nameString('1ABC')).toThrow(/not a name segment/);
    expect(() => nameString('ABCDE')).toThrow(/not a name segment/);
    expect(() => nameString('pwrb')).toThrow(/not a name segment/);
    expect(() => nameString('_SB..X')).toThrow(/not a name segment/);
  });
});

describe('data objects (§20.2.3)', () => {
  it('integers in the shortest encoding: Zero, One, Ones, then Byte/Word/DWord/QWord prefixes', () => {
    expect(integer(0)).toEqual([0x00]);
    expect(integer(1)).toEqual([0x01]);
    expect(integer(5)).toEqual([0x0a, 0x05]);
    expect(integer(0x80)).toEqual([0x0a, 0x80]);
    expect(integer(0x100)).toEqual([0x0b, 0x00, 0x01]);
    expect(integer(0xfea0_0000)).toEqual([0x0c, 0x00, 0x00, 0xa0, 0xfe]);
    expect(integer(0x1_0000_0000)).toEqual([0x0e, 0, 0, 0, 0, 1, 0, 0, 0]);
    expect(integer(0xffff_ffff_ffff_ffffn)).toEqual([0xff]);
  });

  it('refuses integers outside 64 bits', () => {
    expect(() => integer(-1)).toThrow(InputError);
    expect(() => integer(2n ** 64n)).toThrow(InputError);
  });

  it('a String is 0x0d, ASCII, NUL', () => {
    expect(string('ACPI0013')).toEqual([0x0d, ...ascii('ACPI0013'), 0x00]);
    expect(() => string('é')).toThrow(InputError);
  });

  it('EisaId packs three letters in 5 bits each and four hex digits, big-endian', () => {
    expect(eisaId('PNP0C0C')).toEqual([0x0c, 0x41, 0xd0, 0x0c, 0x0c]);
    expect(eisaId('PNP0A03')).toEqual([0x0c, 0x41, 0xd0, 0x0a, 0x03]); // the PCI root's well-known 0x030AD041
    expect(() => eisaId('PNP0C0')).toThrow(InputError);
  });

  it('Package: 0x12, PkgLength, element count, elements', () => {
    expect(pkg([integer(5), integer(5), integer(0), integer(0)])).toEqual([0x12, 0x08, 0x04, 0x0a, 0x05, 0x0a, 0x05, 0x00, 0x00]);
  });

  it('Buffer: 0x11, PkgLength, size as an integer, bytes', () => {
    expect(buffer([0xaa, 0xbb])).toEqual([0x11, 0x05, 0x0a, 0x02, 0xaa, 0xbb]);
  });
});

describe('named objects and statements (§20.2.5)', () => {
  it('Name (_S5_, Package (4) { 5, 5, 0, 0 })', () => {
    expect(name('_S5_', pkg([integer(5), integer(5), integer(0), integer(0)]))).toEqual([
      0x08, ...ascii('_S5_'), 0x12, 0x08, 0x04, 0x0a, 0x05, 0x0a, 0x05, 0x00, 0x00,
    ]);
  });

  it('Scope and Device carry a PkgLength over their name and contents', () => {
    expect(scope('\\_SB', [])).toEqual([0x10, 0x06, 0x5c, ...ascii('_SB_')]);
    expect(device('PWRB', [name('_UID', integer(0))])).toEqual([0x5b, 0x82, 0x0b, ...ascii('PWRB'), 0x08, ...ascii('_UID'), 0x00]);
  });

  it('Method flags: argument count in bits 2:0, Serialized in bit 3', () => {
    expect(method('_EVT', 1, true, [])).toEqual([0x14, 0x06, ...ascii('_EVT'), 0x09]);
    expect(method('ESCN', 0, false, [])).toEqual([0x14, 0x06, ...ascii('ESCN'), 0x00]);
    expect(() => method('_EVT', 8, false, [])).toThrow(InputError);
  });

  it('Local0-7 are 0x60-0x67, Arg0-6 are 0x68-0x6e', () => {
    expect([local(0), local(7), arg(0), arg(6)]).toEqual([[0x60], [0x67], [0x68], [0x6e]]);
    expect(() => local(8)).toThrow(InputError);
    expect(() => arg(7)).toThrow(InputError);
  });

  it('Local0 = ESTS is Store (ESTS, Local0): 0x70, source, target', () => {
    expect(store(path('ESTS'), local(0))).toEqual([0x70, ...ascii('ESTS'), 0x60]);
  });

  it('Local0 & One is And (Local0, One) with a NullName target', () => {
    expect(and(local(0), integer(1))).toEqual([0x7b, 0x60, 0x01, 0x00]);
    expect(and(local(0), integer(1), local(1))).toEqual([0x7b, 0x60, 0x01, 0x61]);
  });

  it('If (Local0 & One) { Notify (\\_SB.PWRB, 0x80) }', () => {
    const notifyTerm = [0x86, 0x5c, 0x2e, ...ascii('_SB_PWRB'), 0x0a, 0x80];
    expect(notify(path('\\_SB.PWRB'), integer(0x80))).toEqual(notifyTerm);
    expect(ifThen(and(local(0), integer(1)), [notify(path('\\_SB.PWRB'), integer(0x80))])).toEqual([
      0xa0, 0x12, 0x7b, 0x60, 0x01, 0x00, ...notifyTerm,
    ]);
  });

  it('OperationRegion (EREG, SystemMemory, 0xFEA00000, 4)', () => {
    expect(operationRegion('EREG', RegionSpace.SYSTEM_MEMORY, 0xfea0_0000, 4)).toEqual([
      0x5b, 0x80, ...ascii('EREG'), 0x00, 0x0c, 0x00, 0x00, 0xa0, 0xfe, 0x0a, 0x04,
    ]);
  });

  it('Field (EREG, DWordAcc, NoLock, WriteAsZeros) { ESTS, 32 }: flags 0x43, the width in bits', () => {
    expect(field('EREG', FieldAccess.DWORD, false, FieldUpdate.WRITE_AS_ZEROS, [{ name: 'ESTS', bits: 32 }])).toEqual([
      0x5b, 0x81, 0x0b, ...ascii('EREG'), 0x43, ...ascii('ESTS'), 0x20,
    ]);
  });

  it('a field of 64 bits or more takes a two-byte width that does not count itself', () => {
    expect(field('EREG', FieldAccess.BYTE, true, FieldUpdate.PRESERVE, [{ name: 'WIDE', bits: 64 }])).toEqual([
      0x5b, 0x81, 0x0c, ...ascii('EREG'), 0x11, ...ascii('WIDE'), 0x40, 0x04,
    ]);
  });
});

describe('resource descriptors (§6.4)', () => {
  it('Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { 5 }: Extended Interrupt Descriptor 0x89', () => {
    expect(interrupt(5, { edge: true, activeLow: false, shared: false })).toEqual([0x89, 0x06, 0x00, 0x03, 0x01, 0x05, 0x00, 0x00, 0x00]);
  });

  it('Level, ActiveLow, Shared set flag bits 1 (clear), 2 and 3', () => {
    expect(interrupt(23, { edge: false, activeLow: true, shared: true })).toEqual([0x89, 0x06, 0x00, 0x0d, 0x01, 0x17, 0x00, 0x00, 0x00]);
  });

  it('IO (Decode16, 0x3F8, 0x3F8, 0, 8): I/O Port Descriptor 0x47', () => {
    expect(ioPorts(0x3f8, 0x3f8, 0, 8)).toEqual([0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x00, 0x08]);
    expect(() => ioPorts(0x10000, 0x10000, 1, 1)).toThrow(InputError);
  });

  it('Memory32Fixed (ReadWrite, 0xFED00000, 0x400): descriptor 0x86', () => {
    expect(memory32Fixed(true, 0xfed0_0000, 0x400)).toEqual([0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0xd0, 0xfe, 0x00, 0x04, 0x00, 0x00]);
    expect(memory32Fixed(false, 0, 1)[3]).toBe(0x00);
  });

  it('ResourceTemplate () is a Buffer of the descriptors and an End Tag (0x79, checksum 0)', () => {
    expect(resourceTemplate([ioPorts(0x3f8, 0x3f8, 0, 8)])).toEqual([
      0x11, 0x0d, 0x0a, 0x0a, 0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x00, 0x08, 0x79, 0x00,
    ]);
  });
});
