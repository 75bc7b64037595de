// Encoding and decoding of the kvm.h structs in ./structs.ts through DataViews.
// Only setup paths use these; the exit path reads kvm_run offsets directly.
import { Layouts, type Layout } from './structs.ts';

export type U64 = bigint;

export interface Segment {
  base: U64;
  limit: number;
  selector: number;
  type: number;
  present: number;
  dpl: number;
  db: number;
  s: number;
  l: number;
  g: number;
  avl: number;
  unusable: number;
}

export interface DescriptorTable {
  base: U64;
  limit: number;
}

export interface Registers {
  rax: U64; rbx: U64; rcx: U64; rdx: U64; rsi: U64; rdi: U64; rsp: U64; rbp: U64;
  r8: U64; r9: U64; r10: U64; r11: U64; r12: U64; r13: U64; r14: U64; r15: U64;
  rip: U64; rflags: U64;
}

export interface SpecialRegisters {
  cs: Segment; ds: Segment; es: Segment; fs: Segment; gs: Segment; ss: Segment; tr: Segment; ldt: Segment;
  gdt: DescriptorTable; idt: DescriptorTable;
  cr0: U64; cr2: U64; cr3: U64; cr4: U64; cr8: U64; efer: U64; apic_base: U64;
  interrupt_bitmap: [U64, U64, U64, U64];
}

export interface CpuidEntry {
  function: number;
  index: number;
  flags: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}

export interface MsrEntry {
  index: number;
  data: U64;
}

function readField(view: DataView, at: number, size: number): number | bigint {
  switch (size) {
    case 1: return view.getUint8(at);
    case 2: return view.getUint16(at, true);
    case 4: return view.getUint32(at, true);
    case 8: return view.getBigUint64(at, true);
    default: throw new Error(`no scalar of ${size} bytes`);
  }
}

function writeField(view: DataView, at: number, size: number, value: number | bigint): void {
  switch (size) {
    case 1: view.setUint8(at, Number(value)); break;
    case 2: view.setUint16(at, Number(value), true); break;
    case 4: view.setUint32(at, Number(value) >>> 0, true); break;
    case 8: view.setBigUint64(at, BigInt.asUintN(64, BigInt(value)), true); break;
    default: throw new Error(`no scalar of ${size} bytes`);
  }
}

/** Decodes the scalar fields named in `names` of a struct at `base`. */
function decodeScalars<T>(layout: Layout, view: DataView, base: number, names: readonly string[]): T {
  const out: Record<string, number | bigint> = {};
  for (const name of names) {
    const field = layout.fields[name]!;
    out[name] = readField(view, base + field.offset, field.size);
  }
  return out as T;
}

function encodeScalars(layout: Layout, view: DataView, base: number, value: object): void {
  for (const [name, v] of Object.entries(value)) {
    const field = layout.fields[name];
    if (field && (typeof v === 'number' || typeof v === 'bigint')) writeField(view, base + field.offset, field.size, v);
  }
}

const REGISTER_NAMES = Object.keys(Layouts.kvm_regs.fields);
const SEGMENT_NAMES = Object.keys(Layouts.kvm_segment.fields);
const SEGMENT_REGISTERS = ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'] as const;
const CONTROL_REGISTERS = ['cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer', 'apic_base'] as const;
const CPUID_NAMES = Object.keys(Layouts.kvm_cpuid_entry2.fields);

export function decodeRegisters(view: DataView): Registers {
  return decodeScalars<Registers>(Layouts.kvm_regs, view, 0, REGISTER_NAMES);
}

export function encodeRegisters(view: DataView, regs: Registers): void {
  encodeScalars(Layouts.kvm_regs, view, 0, regs);
}

export function decodeSpecialRegisters(view: DataView): SpecialRegisters {
  const f = Layouts.kvm_sregs.fields;
  const out = {} as SpecialRegisters;
  for (const name of SEGMENT_REGISTERS) {
    out[name] = decodeScalars<Segment>(Layouts.kvm_segment, view, f[name].offset, SEGMENT_NAMES);
  }
  for (const name of ['gdt', 'idt'] as const) {
    out[name] = decodeScalars<DescriptorTable>(Layouts.kvm_dtable, view, f[name].offset, ['base', 'limit']);
  }
  for (const name of CONTROL_REGISTERS) out[name] = view.getBigUint64(f[name].offset, true);
  const bitmap = f.interrupt_bitmap.offset;
  out.interrupt_bitmap = [0, 1, 2, 3].map((i) => view.getBigUint64(bitmap + i * 8, true)) as SpecialRegisters['interrupt_bitmap'];
  return out;
}

export function encodeSpecialRegisters(view: DataView, sregs: SpecialRegisters): void {
  const f = Layouts.kvm_sregs.fields;
  for (const name of SEGMENT_REGISTERS) encodeScalars(Layouts.kvm_segment, view, f[name].offset, sregs[name]);
  for (const name of ['gdt', 'idt'] as const) encodeScalars(Layouts.kvm_dtable, view, f[name].offset, sregs[name]);
  for (const name of CONTROL_REGISTERS) view.setBigUint64(f[name].offset, sregs[name], true);
  sregs.interrupt_bitmap.forEach((word, i) => view.setBigUint64(f.interrupt_bitmap.offset + i * 8, word, true));
}

export function decodeCpuidEntry(view: DataView, at: number): CpuidEntry {
  return decodeScalars<CpuidEntry>(Layouts.kvm_cpuid_entry2, view, at, CPUID_NAMES);
}

export function encodeCpuidEntry(view: DataView, at: number, entry: CpuidEntry): void {
  encodeScalars(Layouts.kvm_cpuid_entry2, view, at, entry);
}

export function encodeStruct(layout: Layout, value: Record<string, number | bigint>): Uint8Array {
  const bytes = new Uint8Array(layout.size);
  encodeScalars(layout, new DataView(bytes.buffer), 0, value);
  return bytes;
}
