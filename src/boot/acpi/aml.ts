// A small encoder for ACPI Machine Language (ACPI 6.5 chapter 20, "ACPI
// Machine Language (AML) Specification") and the resource descriptors of
// §6.4: exactly the terms tsvmm's DSDT uses. Every function returns the
// bytes of one term, so a DSDT reads like the ASL it encodes:
//
//   device('PWRB', [name('_HID', eisaId('PNP0C0C'))])
//   ==  Device (PWRB) { Name (_HID, EisaId ("PNP0C0C")) }
import { InputError } from '../../errors.ts';

export type Aml = readonly number[];

// Opcodes (ACPI 6.5 §20.3, "AML Byte Stream Byte Values").
const Op = {
  ZERO: 0x00,
  ONE: 0x01,
  NAME: 0x08,
  BYTE_PREFIX: 0x0a,
  WORD_PREFIX: 0x0b,
  DWORD_PREFIX: 0x0c,
  STRING_PREFIX: 0x0d,
  QWORD_PREFIX: 0x0e,
  SCOPE: 0x10,
  BUFFER: 0x11,
  PACKAGE: 0x12,
  METHOD: 0x14,
  DUAL_NAME_PREFIX: 0x2e,
  MULTI_NAME_PREFIX: 0x2f,
  EXT_PREFIX: 0x5b,
  ROOT_CHAR: 0x5c,
  PARENT_PREFIX_CHAR: 0x5e,
  LOCAL0: 0x60,
  ARG0: 0x68,
  STORE: 0x70,
  AND: 0x7b,
  NOTIFY: 0x86,
  IF: 0xa0,
  ONES: 0xff,
} as const;

// Opcodes that follow EXT_PREFIX.
const ExtOp = {
  OPERATION_REGION: 0x80,
  FIELD: 0x81,
  DEVICE: 0x82,
} as const;

function concat(parts: readonly Aml[]): number[] {
  const out: number[] = [];
  for (const part of parts) for (const byte of part) out.push(byte);
  return out;
}

function littleEndian(value: number, bytes: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < bytes; i++) out.push(Math.floor(value / 2 ** (8 * i)) & 0xff);
  return out;
}

/**
 * PkgLength (§20.2.4): the length of the package *including* these bytes.
 * One byte holds up to 63; otherwise bits 7:6 of the lead byte count the
 * bytes that follow, its bits 3:0 are the low nibble, and each following
 * byte adds 8 more bits.
 */
export function pkgLength(contentLength: number): number[] {
  for (let follow = 0; follow <= 3; follow++) {
    const total = contentLength + 1 + follow;
    if (total < (follow === 0 ? 0x40 : 2 ** (4 + 8 * follow))) return encodeLength(total, follow);
  }
  throw new InputError(`AML package of ${contentLength} bytes is longer than PkgLength can say`);
}

function encodeLength(value: number, follow: number): number[] {
  if (follow === 0) return [value];
  return [(follow << 6) | (value & 0x0f), ...littleEndian(Math.floor(value / 16), follow)];
}

/** A package-like term: opcode(s), PkgLength, then the contents. */
function withPkgLength(opcode: Aml, contents: Aml): number[] {
  return [...opcode, ...pkgLength(contents.length), ...contents];
}

const LEAD_CHAR = /^[A-Z_]$/;
const NAME_CHAR = /^[A-Z0-9_]$/;

function nameSeg(segment: string, path: string): number[] {
  if (segment.length < 1 || segment.length > 4 || !LEAD_CHAR.test(segment[0]!) || ![...segment].every((c) => NAME_CHAR.test(c))) {
    throw new InputError(`AML name "${path}": "${segment}" is not a name segment (1-4 of A-Z, 0-9, _; not starting with a digit)`);
  }
  // Short segments are padded with '_' (§20.2.2: "_SB" is "_SB_").
  return [...segment.padEnd(4, '_')].map((c) => c.charCodeAt(0));
}

/**
 * NameString (§20.2.2): "\_SB.PWRB", "^PWRB", "PWRB". A root or parent
 * prefix, then one segment, a DualNamePath or a MultiNamePath.
 */
export function nameString(path: string): number[] {
  const prefix: number[] = [];
  let rest = path;
  if (rest.startsWith('\\')) {
    prefix.push(Op.ROOT_CHAR);
    rest = rest.slice(1);
  } else {
    while (rest.startsWith('^')) {
      prefix.push(Op.PARENT_PREFIX_CHAR);
      rest = rest.slice(1);
    }
  }
  if (rest === '') return [...prefix, Op.ZERO]; // NullName: "\" alone names the root
  const segments = rest.split('.').map((s) => nameSeg(s, path));
  if (segments.length === 1) return [...prefix, ...segments[0]!];
  if (segments.length === 2) return [...prefix, Op.DUAL_NAME_PREFIX, ...concat(segments)];
  if (segments.length > 255) throw new InputError(`AML name "${path}" has more than 255 segments`);
  return [...prefix, Op.MULTI_NAME_PREFIX, segments.length, ...concat(segments)];
}

/** An integer constant in the shortest encoding (§20.2.3 ComputationalData). */
export function integer(value: number | bigint): number[] {
  const v = BigInt(value);
  if (v < 0n || v > 0xffff_ffff_ffff_ffffn) throw new InputError(`AML integer ${v} is outside 0..2^64-1`);
  if (v === 0n) return [Op.ZERO];
  if (v === 1n) return [Op.ONE];
  if (v === 0xffff_ffff_ffff_ffffn) return [Op.ONES];
  const bytes = (n: number): number[] => {
    const out: number[] = [];
    for (let i = 0n; i < BigInt(n); i++) out.push(Number((v >> (8n * i)) & 0xffn));
    return out;
  };
  if (v <= 0xffn) return [Op.BYTE_PREFIX, ...bytes(1)];
  if (v <= 0xffffn) return [Op.WORD_PREFIX, ...bytes(2)];
  if (v <= 0xffff_ffffn) return [Op.DWORD_PREFIX, ...bytes(4)];
  return [Op.QWORD_PREFIX, ...bytes(8)];
}

/** A String constant: ASCII, NUL-terminated. */
export function string(text: string): number[] {
  if (!/^[\x01-\x7f]*$/.test(text)) throw new InputError(`AML string ${JSON.stringify(text)} is not 7-bit ASCII without NUL`);
  return [Op.STRING_PREFIX, ...[...text].map((c) => c.charCodeAt(0)), 0];
}

/**
 * A compressed EISA ID (ASL EisaId(), §19.6.35): three letters of 5 bits each
 * and four hex digits, stored big-endian in a DWord.
 */
export function eisaId(id: string): number[] {
  if (!/^[A-Z]{3}[0-9A-F]{4}$/.test(id)) throw new InputError(`EISA ID "${id}" is not three capital letters and four hex digits`);
  const letter = (i: number) => id.charCodeAt(i) - 0x40;
  const vendor = (letter(0) << 10) | (letter(1) << 5) | letter(2);
  const product = parseInt(id.slice(3), 16);
  return [Op.DWORD_PREFIX, vendor >> 8, vendor & 0xff, product >> 8, product & 0xff];
}

/** Name (path, value): binds a name to data. */
export function name(path: string, value: Aml): number[] {
  return [Op.NAME, ...nameString(path), ...value];
}

/** Package () { elements }. */
export function pkg(elements: readonly Aml[]): number[] {
  if (elements.length > 255) throw new InputError(`AML package of ${elements.length} elements: at most 255`);
  return withPkgLength([Op.PACKAGE], [elements.length, ...concat(elements)]);
}

export function scope(path: string, terms: readonly Aml[]): number[] {
  return withPkgLength([Op.SCOPE], [...nameString(path), ...concat(terms)]);
}

export function device(path: string, terms: readonly Aml[]): number[] {
  return withPkgLength([Op.EXT_PREFIX, ExtOp.DEVICE], [...nameString(path), ...concat(terms)]);
}

/** Method (path, argCount, Serialized|NotSerialized) { terms }, sync level 0. */
export function method(path: string, argCount: number, serialized: boolean, terms: readonly Aml[]): number[] {
  if (!Number.isInteger(argCount) || argCount < 0 || argCount > 7) throw new InputError(`AML method ${path}: ${argCount} arguments (0-7)`);
  const flags = argCount | (serialized ? 0x08 : 0);
  return withPkgLength([Op.METHOD], [...nameString(path), flags, ...concat(terms)]);
}

export function local(n: number): number[] {
  if (!Number.isInteger(n) || n < 0 || n > 7) throw new InputError(`Local${n}: there are Local0-Local7`);
  return [Op.LOCAL0 + n];
}

export function arg(n: number): number[] {
  if (!Number.isInteger(n) || n < 0 || n > 6) throw new InputError(`Arg${n}: there are Arg0-Arg6`);
  return [Op.ARG0 + n];
}

/** A reference to a named object, used as an operand or a target. */
export function path(namePath: string): number[] {
  return nameString(namePath);
}

/** If (predicate) { terms } */
export function ifThen(predicate: Aml, terms: readonly Aml[]): number[] {
  return withPkgLength([Op.IF], [...predicate, ...concat(terms)]);
}

/** Store (source, target), ASL+ "target = source". */
export function store(source: Aml, target: Aml): number[] {
  return [Op.STORE, ...source, ...target];
}

/** And (a, b, target); without a target the result is only the term's value. */
export function and(a: Aml, b: Aml, target: Aml = [Op.ZERO]): number[] {
  return [Op.AND, ...a, ...b, ...target];
}

/** Notify (object, value) */
export function notify(object: Aml, value: Aml): number[] {
  return [Op.NOTIFY, ...object, ...value];
}

/** Region spaces of OperationRegion (§19.6.100). */
export const RegionSpace = { SYSTEM_MEMORY: 0x00, SYSTEM_IO: 0x01 } as const;

export function operationRegion(regionName: string, space: number, offset: number, length: number): number[] {
  return [Op.EXT_PREFIX, ExtOp.OPERATION_REGION, ...nameString(regionName), space, ...integer(offset), ...integer(length)];
}

/** FieldFlags (§20.2.5.2): access type in bits 3:0, lock rule bit 4, update rule bits 6:5. */
export const FieldAccess = { ANY: 0, BYTE: 1, WORD: 2, DWORD: 3, QWORD: 4 } as const;
export const FieldUpdate = { PRESERVE: 0, WRITE_AS_ONES: 1, WRITE_AS_ZEROS: 2 } as const;

export interface FieldUnit {
  name: string;
  bits: number;
}

/** Field (region, access, NoLock|Lock, update) { name, bits, ... }: named fields only. */
export function field(regionName: string, access: number, lock: boolean, update: number, units: readonly FieldUnit[]): number[] {
  const flags = access | (lock ? 0x10 : 0) | (update << 5);
  const list = units.map((u) => [...nameSeg(u.name, u.name), ...fieldWidth(u)]);
  return withPkgLength([Op.EXT_PREFIX, ExtOp.FIELD], [...nameString(regionName), flags, ...concat(list)]);
}

// NamedField := NameSeg PkgLength (§20.2.5.2), but here the "PkgLength" is
// the width in bits, in PkgLength's encoding, not counting its own bytes.
function fieldWidth(unit: FieldUnit): number[] {
  const bits = unit.bits;
  if (!Number.isInteger(bits) || bits < 1 || bits >= 2 ** 28) throw new InputError(`AML field ${unit.name}: ${bits} bits`);
  const follow = bits < 0x40 ? 0 : bits < 2 ** 12 ? 1 : bits < 2 ** 20 ? 2 : 3;
  return encodeLength(bits, follow);
}

/** Buffer () { bytes }: the size as an integer term, then the bytes. */
export function buffer(bytes: Aml): number[] {
  return withPkgLength([Op.BUFFER], [...integer(bytes.length), ...bytes]);
}
