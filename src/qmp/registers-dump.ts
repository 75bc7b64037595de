// `info registers` in QEMU's x86 layout (x86_cpu_dump_state in
// target/i386/cpu-dump.c): the 64-bit form when CS is a long-mode code segment,
// the 32-bit form otherwise, segment caches with QEMU's decoded type, the
// descriptor tables, the control registers, EFER.
//
// It prints what CpuRegisters carries and stops there: the RIP line ends after
// CPL (QEMU goes on with II, A20, SMM and HLT, which KVM's sregs do not give),
// the DR lines appear only when the machine supplies DR0..DR7, and the FPU and
// SSE lines are left out.
//
// Register names, as QEMU prints them: general RAX..R15, RIP, RFL; segments
// ES CS SS DS FS GS LDT TR, each with QEMU's SegmentCache flags (see
// qemuSegmentFlags); control CR0 CR2 CR3 CR4 EFER (and DR0-DR3, DR6, DR7).
// A register the machine leaves out prints as 0.

import type { CpuRegisters } from './target.ts';

const DESC_TYPE_SHIFT = 8;
const DESC_A = 1 << 8;
const DESC_RW = 1 << 9; // readable code / writable data
const DESC_CE = 1 << 10; // conforming code / expand-down data
const DESC_CODE = 1 << 11;
const DESC_S = 1 << 12;
const DESC_DPL_SHIFT = 13;
const DESC_P = 1 << 15;
const DESC_L = 1 << 21;
const DESC_B = 1 << 22;
const EFER_LMA = 1n << 10n;
const CR0_PE = 1n;

/**
 * A kvm_segment's attributes in QEMU's SegmentCache.flags layout (the high
 * dword of a descriptor): what CpuRegisters.segments[...].flags holds.
 */
export function qemuSegmentFlags(segment: {
  type: number; s: number; dpl: number; present: number; avl: number; l: number; db: number; g: number;
}): number {
  return ((segment.type & 0xf) << DESC_TYPE_SHIFT) | ((segment.s & 1) << 12) | ((segment.dpl & 3) << DESC_DPL_SHIFT)
    | ((segment.present & 1) << 15) | ((segment.avl & 1) << 20) | ((segment.l & 1) << 21)
    | ((segment.db & 1) << 22) | ((segment.g & 1) << 23);
}

const SYSTEM_TYPES_LEGACY = [
  'Reserved', 'TSS16-avl', 'LDT', 'TSS16-busy', 'CallGate16', 'TaskGate', 'IntGate16', 'TrapGate16',
  'Reserved', 'TSS32-avl', 'Reserved', 'TSS32-busy', 'CallGate32', 'Reserved', 'IntGate32', 'TrapGate32',
];
const SYSTEM_TYPES_LONG = [
  '<hiword>', 'Reserved', 'LDT', 'Reserved', 'Reserved', 'Reserved', 'Reserved', 'Reserved',
  'Reserved', 'TSS64-avl', 'Reserved', 'TSS64-busy', 'CallGate64', 'Reserved', 'IntGate64', 'TrapGate64',
];

function hex(value: bigint | number, digits: number): string {
  const mask = (1n << BigInt(digits * 4)) - 1n;
  return (BigInt(value) & mask).toString(16).padStart(digits, '0');
}

/** The text QEMU's HMP prints for one vCPU, with "\n" line ends. */
export function formatRegisters(regs: CpuRegisters): string {
  const general = (name: string): bigint => regs.general[name] ?? 0n;
  const control = (name: string): bigint => regs.control[name] ?? 0n;
  const segment = (name: string) => regs.segments[name] ?? { selector: 0, base: 0n, limit: 0, flags: 0 };

  const longModeActive = (control('EFER') & EFER_LMA) !== 0n;
  const code64 = longModeActive && (segment('CS').flags & DESC_L) !== 0;
  const protectedMode = (control('CR0') & CR0_PE) !== 0n;
  const flags = Number(general('RFL') & 0xffffffffn);
  const cpl = (segment('SS').flags >> DESC_DPL_SHIFT) & 3;
  const flagLetters = [[0x400, 'D'], [0x800, 'O'], [0x80, 'S'], [0x40, 'Z'], [0x10, 'A'], [0x4, 'P'], [0x1, 'C']] as const;
  const flagText = flagLetters.map(([bit, letter]) => (flags & bit ? letter : '-')).join('');

  const lines: string[] = [];
  if (code64) {
    const row = (names: string[]): string => names.map((n) => `${n.padEnd(3)}=${hex(general(n), 16)}`).join(' ');
    lines.push(row(['RAX', 'RBX', 'RCX', 'RDX']), row(['RSI', 'RDI', 'RBP', 'RSP']),
      row(['R8', 'R9', 'R10', 'R11']), row(['R12', 'R13', 'R14', 'R15']));
    lines.push(`RIP=${hex(general('RIP'), 16)} RFL=${hex(flags, 8)} [${flagText}] CPL=${cpl}`);
  } else {
    const row = (names: string[]): string => names.map((n) => `E${n.slice(1)}=${hex(general(n), 8)}`).join(' ');
    lines.push(row(['RAX', 'RBX', 'RCX', 'RDX']), row(['RSI', 'RDI', 'RBP', 'RSP']));
    lines.push(`EIP=${hex(general('RIP'), 8)} EFL=${hex(flags, 8)} [${flagText}] CPL=${cpl}`);
  }

  for (const name of ['ES', 'CS', 'SS', 'DS', 'FS', 'GS', 'LDT', 'TR']) {
    const { selector, base, limit, flags: attributes } = segment(name);
    let line = `${name.padEnd(3)}=${hex(selector, 4)} ${hex(base, code64 ? 16 : 8)} ${hex(limit, 8)} ${hex(attributes & 0x00ffff00, 8)}`;
    if (protectedMode && (attributes & DESC_P) !== 0) {
      line += ` DPL=${(attributes >> DESC_DPL_SHIFT) & 3} `;
      if (attributes & DESC_S) {
        if (attributes & DESC_CODE) {
          line += (attributes & DESC_L) ? 'CS64' : (attributes & DESC_B) ? 'CS32' : 'CS16';
          line += ` [${attributes & DESC_CE ? 'C' : '-'}${attributes & DESC_RW ? 'R' : '-'}`;
        } else {
          line += (attributes & DESC_B) || longModeActive ? 'DS  ' : 'DS16';
          line += ` [${attributes & DESC_CE ? 'E' : '-'}${attributes & DESC_RW ? 'W' : '-'}`;
        }
        line += `${attributes & DESC_A ? 'A' : '-'}]`;
      } else {
        line += (longModeActive ? SYSTEM_TYPES_LONG : SYSTEM_TYPES_LEGACY)[(attributes >> DESC_TYPE_SHIFT) & 0xf]!;
      }
    }
    lines.push(line);
  }

  const wide = longModeActive ? 16 : 8;
  for (const table of ['GDT', 'IDT'] as const) {
    const { base, limit } = regs.descriptorTables[table];
    lines.push(`${table}=     ${hex(base, wide)} ${hex(limit, 8)}`);
  }
  lines.push(`CR0=${hex(control('CR0'), 8)} CR2=${hex(control('CR2'), wide)} CR3=${hex(control('CR3'), wide)} CR4=${hex(control('CR4'), 8)}`);
  if ('DR7' in regs.control) {
    lines.push([0, 1, 2, 3].map((i) => `DR${i}=${hex(control(`DR${i}`), 16)} `).join(''));
    lines.push(`DR6=${hex(control('DR6'), 16)} DR7=${hex(control('DR7'), 16)}`);
  }
  lines.push(`EFER=${hex(control('EFER'), 16)}`);
  return `${lines.join('\n')}\n`;
}
