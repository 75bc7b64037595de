// Names for the instructions a guest may stop on: enough of the x86 opcode map
// to say "lock cmpxchg16b [rsi]" instead of "f0 48 0f c7 0e" when KVM's
// emulator gives up. Not a disassembler: an unknown instruction gets null and
// the caller prints its bytes.

const PREFIXES = new Set([0xf0, 0xf2, 0xf3, 0x2e, 0x36, 0x3e, 0x26, 0x64, 0x65, 0x66, 0x67]);

/** Two-byte (0f xx) opcodes without a ModRM-selected variant. */
const TWO_BYTE: Record<number, string> = {
  0x05: 'syscall', 0x06: 'clts', 0x07: 'sysret', 0x08: 'invd', 0x09: 'wbinvd', 0x0b: 'ud2',
  0x30: 'wrmsr', 0x31: 'rdtsc', 0x32: 'rdmsr', 0x33: 'rdpmc', 0x34: 'sysenter', 0x35: 'sysexit',
  0x77: 'emms', 0xa2: 'cpuid', 0xaa: 'rsm',
};

/** 0f 01 with a register-form ModRM byte: one instruction per byte. */
const GROUP7_REGISTER: Record<number, string> = {
  0xc1: 'vmcall', 0xc2: 'vmlaunch', 0xc3: 'vmresume', 0xc4: 'vmxoff', 0xc8: 'monitor', 0xc9: 'mwait',
  0xca: 'clac', 0xcb: 'stac', 0xd0: 'xgetbv', 0xd1: 'xsetbv', 0xd9: 'vmmcall', 0xf8: 'swapgs', 0xf9: 'rdtscp',
};
const GROUP7_MEMORY = ['sgdt', 'sidt', 'lgdt', 'lidt', 'smsw', null, 'lmsw', 'invlpg'];
/** 0f ae: memory forms by ModRM.reg; register forms are fences. */
const GROUP15_MEMORY = ['fxsave', 'fxrstor', 'ldmxcsr', 'stmxcsr', 'xsave', 'xrstor', 'xsaveopt', 'clflush'];
const GROUP15_REGISTER: Record<number, string> = { 5: 'lfence', 6: 'mfence', 7: 'sfence' };

const ONE_BYTE: Record<number, string> = {
  0x9b: 'fwait', 0xcc: 'int3', 0xce: 'into', 0xcf: 'iret', 0xf4: 'hlt', 0xfa: 'cli', 0xfb: 'sti',
  0xe4: 'in', 0xe5: 'in', 0xe6: 'out', 0xe7: 'out', 0xec: 'in', 0xed: 'in', 0xee: 'out', 0xef: 'out',
  0x6c: 'insb', 0x6d: 'insd', 0x6e: 'outsb', 0x6f: 'outsd', 0xa4: 'movsb', 0xa5: 'movsd', 0xaa: 'stosb', 0xab: 'stosd',
};

/** x87 escapes (d8-df) with a register-form ModRM that have names of their own. */
const X87_REGISTER: Record<string, string> = { 'db e2': 'fnclex', 'db e3': 'fninit', 'd9 d0': 'fnop', 'df e0': 'fnstsw ax' };
const X87_MEMORY: Record<number, (string | null)[]> = {
  0xd9: ['fld', null, 'fst', 'fstp', 'fldenv', 'fldcw', 'fnstenv', 'fnstcw'],
  0xdb: ['fild', 'fisttp', 'fist', 'fistp', null, 'fld', null, 'fstp'],
  0xdd: ['fld', 'fisttp', 'fst', 'fstp', 'frstor', null, 'fnsave', 'fnstsw'],
  0xdf: ['fild', 'fisttp', 'fist', 'fistp', 'fbld', 'fild', 'fbstp', 'fistp'],
};

const hexByte = (b: number) => b.toString(16).padStart(2, '0');

export function instructionName(bytes: Uint8Array): string | null {
  let i = 0;
  const prefixes: number[] = [];
  while (i < bytes.length && PREFIXES.has(bytes[i]!)) prefixes.push(bytes[i++]!);
  let rexW = false;
  if (i < bytes.length && (bytes[i]! & 0xf0) === 0x40) rexW = (bytes[i++]! & 0x08) !== 0;
  if (i >= bytes.length) return null;
  const lock = prefixes.includes(0xf0) ? 'lock ' : '';
  const rep = prefixes.includes(0xf3) ? 'rep ' : '';
  const op = bytes[i]!;

  if (op === 0x0f && i + 1 < bytes.length) {
    const op2 = bytes[i + 1]!;
    const modrm = bytes[i + 2];
    const registerForm = modrm !== undefined && modrm >> 6 === 3;
    const reg = modrm === undefined ? -1 : (modrm >> 3) & 7;
    if (op2 === 0xb8 && prefixes.includes(0xf3)) return 'popcnt';
    if (op2 === 0xc7 && reg === 1 && !registerForm) return `${lock}${rexW ? 'cmpxchg16b' : 'cmpxchg8b'}`;
    if (op2 === 0xc7 && reg === 6 && registerForm) return 'rdrand';
    if (op2 === 0xc7 && reg === 7 && registerForm) return prefixes.includes(0xf3) ? 'rdpid' : 'rdseed';
    if (op2 === 0x01 && modrm !== undefined) return registerForm ? GROUP7_REGISTER[modrm] ?? null : GROUP7_MEMORY[reg] ?? null;
    if (op2 === 0xae && modrm !== undefined) {
      if (registerForm) return GROUP15_REGISTER[reg] ?? null;
      const name = GROUP15_MEMORY[reg];
      return name ? `${name}${rexW && reg <= 6 && reg !== 2 && reg !== 3 ? '64' : ''}` : null;
    }
    if (op2 >= 0x20 && op2 <= 0x23) return 'mov (control/debug register)';
    return TWO_BYTE[op2] ? `${lock}${TWO_BYTE[op2]}` : null;
  }
  if (op >= 0xd8 && op <= 0xdf && i + 1 < bytes.length) {
    const modrm = bytes[i + 1]!;
    if (modrm >> 6 === 3) return X87_REGISTER[`${hexByte(op)} ${hexByte(modrm)}`] ?? `x87 escape ${hexByte(op)} ${hexByte(modrm)}`;
    return X87_MEMORY[op]?.[(modrm >> 3) & 7] ?? `x87 escape ${hexByte(op)}`;
  }
  if (op === 0xcd && i + 1 < bytes.length) return `int 0x${hexByte(bytes[i + 1]!)}`;
  return ONE_BYTE[op] ? `${rep}${lock}${ONE_BYTE[op]}` : null;
}
