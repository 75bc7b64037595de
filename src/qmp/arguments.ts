// Checks a command's "arguments" against its schema the way QEMU's generated
// QAPI visitors do, with QEMU's error strings, so that a client sees the same
// refusal from tsvmm as from QEMU:
//
//   missing member         Parameter 'uri' is missing
//   wrong JSON type        Invalid parameter type for 'uri', expected: string
//   unsigned out of range  Parameter 'downtime-limit' expects uint64
//   unknown enum value     Parameter 'capability' does not accept value 'x'
//   unknown member         Parameter 'x' is unexpected
//
// Members are checked in schema order, then the unknown ones (QAPI's
// visit_check_struct), and a nested member is named by its path:
// "capabilities[0].state".
//
// An unknown enum value is the exception QEMU makes: it names the bare member
// ('capability', not 'capabilities[0].capability'), and a list element, which
// has no member name, as 'null'. One known difference: JSON.parse cannot tell
// 1e3 from 1000, so an integer written as a float is accepted.

import { MonitorError } from './target.ts';

export type ArgType =
  | 'str' | 'bool' | 'int' | 'uint64' | 'any'
  | { readonly enum: readonly string[] }
  | { readonly list: ArgType }
  | { readonly struct: ArgSchema };

/** Member name to type; a leading '*' marks an optional member, as in qapi/*.json. */
export type ArgSchema = Readonly<Record<string, ArgType>>;

/** 2^64: QEMU reads a negative integer given for a uint64 modulo this. */
const TWO_TO_64 = 2n ** 64n;

/** Returns the arguments with every uint64 as a bigint; throws MonitorError on the first fault. */
export function checkArguments(args: Record<string, unknown>, schema: ArgSchema): Record<string, unknown> {
  return checkStruct(args, schema, '');
}

function checkStruct(input: Record<string, unknown>, schema: ArgSchema, prefix: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const known = new Set<string>();
  for (const [key, type] of Object.entries(schema)) {
    const optional = key.startsWith('*');
    const name = optional ? key.slice(1) : key;
    known.add(name);
    const path = prefix + name;
    if (!Object.hasOwn(input, name)) {
      if (!optional) throw new MonitorError(`Parameter '${path}' is missing`);
      continue;
    }
    out[name] = checkValue(input[name], type, path, name);
  }
  for (const name of Object.keys(input)) {
    if (!known.has(name)) throw new MonitorError(`Parameter '${prefix + name}' is unexpected`);
  }
  return out;
}

/** member: the bare member name, null for a list element (QEMU's enum errors print only that). */
function checkValue(value: unknown, type: ArgType, path: string, member: string | null): unknown {
  if (type === 'any') return value;
  if (type === 'str') {
    if (typeof value !== 'string') throw invalidType(path, 'string');
    return value;
  }
  if (type === 'bool') {
    if (typeof value !== 'boolean') throw invalidType(path, 'boolean');
    return value;
  }
  if (type === 'int') {
    if (typeof value !== 'number' || !Number.isInteger(value) || Math.abs(value) >= 2 ** 63) throw invalidType(path, 'integer');
    return value;
  }
  if (type === 'uint64') {
    if (typeof value !== 'number' || !Number.isInteger(value) || value >= 2 ** 64 || value < -(2 ** 63)) {
      throw new MonitorError(`Parameter '${path}' expects uint64`);
    }
    const big = BigInt(value);
    return big < 0n ? big + TWO_TO_64 : big;
  }
  if ('enum' in type) {
    if (typeof value !== 'string') throw invalidType(path, 'string');
    if (!type.enum.includes(value)) throw new MonitorError(`Parameter '${member ?? 'null'}' does not accept value '${value}'`);
    return value;
  }
  if ('list' in type) {
    if (!Array.isArray(value)) throw invalidType(path, 'array');
    return value.map((element, index) => checkValue(element, type.list, `${path}[${index}]`, null));
  }
  if (!isObject(value)) throw invalidType(path, 'object');
  return checkStruct(value, type.struct, `${path}.`);
}

function invalidType(path: string, expected: string): MonitorError {
  return new MonitorError(`Invalid parameter type for '${path}', expected: ${expected}`);
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
