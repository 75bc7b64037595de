// A vCPU's registers as the monitor shows them (`info registers`): read from
// KVM while the vCPU is parked, named as QEMU's x86 dump names them.
import type { Segment, VcpuFd } from '../kvm/index.ts';
import type { CpuRegisters } from '../qmp/target.ts';

/** A segment's attributes packed as in its descriptor's high word, which is how QEMU prints them. */
function descriptorFlags(s: Segment): number {
  return ((s.type << 8) | (s.s << 12) | (s.dpl << 13) | (s.present << 15) | (s.avl << 20) | (s.l << 21) | (s.db << 22) | (s.g << 23)) >>> 0;
}

export function cpuRegisters(vcpu: VcpuFd): CpuRegisters {
  const r = vcpu.getRegisters();
  const s = vcpu.getSpecialRegisters();
  const segment = (seg: Segment) => ({ selector: seg.selector, base: BigInt(seg.base), limit: seg.limit, flags: descriptorFlags(seg) });
  return {
    general: {
      RAX: r.rax, RBX: r.rbx, RCX: r.rcx, RDX: r.rdx, RSI: r.rsi, RDI: r.rdi, RBP: r.rbp, RSP: r.rsp,
      R8: r.r8, R9: r.r9, R10: r.r10, R11: r.r11, R12: r.r12, R13: r.r13, R14: r.r14, R15: r.r15,
      RIP: r.rip, RFL: r.rflags,
    },
    segments: { ES: segment(s.es), CS: segment(s.cs), SS: segment(s.ss), DS: segment(s.ds), FS: segment(s.fs), GS: segment(s.gs), LDT: segment(s.ldt), TR: segment(s.tr) },
    control: { CR0: s.cr0, CR2: s.cr2, CR3: s.cr3, CR4: s.cr4, CR8: s.cr8, EFER: s.efer, APIC_BASE: s.apic_base },
    descriptorTables: { GDT: { base: s.gdt.base, limit: s.gdt.limit }, IDT: { base: s.idt.base, limit: s.idt.limit } },
  };
}
