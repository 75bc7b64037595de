# exitloop — the exit benchmark and I/O-path test guest.
#
# Real mode -> long mode -> ring 3 (IOPL 3, see include/longmode.inc), then a
# tight loop doing one port or MMIO access per iteration, each of which is one
# VM exit. Then it prints "exitloop done\n" (14 bytes) and exits with v = 0.
#
# Exact VM exit count: iterations + 14 + 1. The setup does no I/O at all and
# the UART's LSR is never polled, so the count is exactly predictable.
#
# Parameter block: at file offset 8 (the file starts with a 2-byte `jmp` over
# it), so a host can patch the binary before loading it. All little-endian:
#   off  size  field       default     meaning
#    8   u32   magic       0x50565354  bytes "TSVP"
#   12   u32   iterations  100000      loop count (0 allowed: no loop)
#   16   u32   op          0           0 out8 port, 1 in8 port, 2 MMIO write32,
#                                      3 MMIO read32, 4 out32 port, 5 out16 port
#   20   u32   port        0x520       port for ops 0, 1, 4, 5
#   24   u64   mmio_addr   0xD0000000  address for ops 2, 3 (no RAM there)
#   32   u32   value       0x2A        value written by ops 0, 2, 4, 5
#   36   u32   cpl         3           privilege level of the loop: 3 or 0
# A bad magic, op or cpl prints "exitloop: bad parameters\n" and exits with v = 2.
#
# cpl: on hardware KVM ring 0 and ring 3 loops cost the same. On PVM hosts
# (software KVM: ring 0 is emulated, ring 3 runs natively) every exit from
# ring 3 pays for a native <-> emulator round trip: measured ~95 us per exit
# with cpl = 3 versus ~13 us with cpl = 0 (where the loop's own three
# instructions are emulated, ~1 us each).

        .include "common.inc"
        .code16
        .text
        .globl _start
_start:
        # `jmp short real_start`, spelled out as bytes so that its size is
        # fixed at 2 and the assembler can check the block's offset below.
        .byte 0xEB, real_start - (_start + 2)
        .skip 6, 0                      # pad to file offset 8

# ---- parameter block (file offset 8) ----------------------------------------
params:
p_magic:      .long 0x50565354          # "TSVP"
p_iterations: .long 100000
p_op:         .long 0
p_port:       .long 0x520
p_mmio_addr:  .quad 0xD0000000
p_value:      .long 0x2A
p_cpl:        .long 3
params_end:

        .if (params - _start) != 8 || (params_end - params) != 32
        .error "parameter block must be at file offset 8 and 32 bytes long"
        .endif

real_start:
        REAL_MODE_INIT
        .set LM_CPL_PARAM, p_cpl        # longmode.inc: p_cpl == 0 -> user_main in ring 0
        .include "longmode.inc"         # ... and continues at user_main, in ring 3 (or 0)

# ---- ring 3 (or ring 0 if p_cpl == 0) --------------------------------------------
        .code64
user_main:
        cmp dword ptr [rip + p_magic], 0x50565354
        jne bad_params
        mov eax, [rip + p_cpl]
        cmp eax, 3
        je 1f
        test eax, eax
        jnz bad_params
1:

        # Load every operand before the loop; the loop body is one access,
        # `dec`, `jnz`. ECX = count, DX = port, EAX = value, RDI = MMIO address.
        mov ecx, [rip + p_iterations]
        mov edx, [rip + p_port]
        mov eax, [rip + p_value]
        mov rdi, [rip + p_mmio_addr]
        mov esi, [rip + p_op]
        test ecx, ecx
        jz done                         # 0 iterations: nothing to do

        cmp esi, 0
        je op_out8
        cmp esi, 1
        je op_in8
        cmp esi, 2
        je op_mmio_write32
        cmp esi, 3
        je op_mmio_read32
        cmp esi, 4
        je op_out32
        cmp esi, 5
        je op_out16
        jmp bad_params

        # One loop per op, so there is no branch on `op` inside the hot loop.
        .balign 16
op_out8:
1:      out dx, al
        dec ecx
        jnz 1b
        jmp done

        .balign 16
op_in8:
1:      in al, dx
        dec ecx
        jnz 1b
        jmp done

        .balign 16
op_mmio_write32:
1:      mov [rdi], eax
        dec ecx
        jnz 1b
        jmp done

        .balign 16
op_mmio_read32:
1:      mov eax, [rdi]
        dec ecx
        jnz 1b
        jmp done

        .balign 16
op_out32:
1:      out dx, eax
        dec ecx
        jnz 1b
        jmp done

        .balign 16
op_out16:
1:      out dx, ax
        dec ecx
        jnz 1b
        jmp done

done:
        lea rsi, [rip + msg_done]
        call puts64
        EXIT_VM 0

bad_params:
        lea rsi, [rip + msg_bad]
        call puts64
        EXIT_VM 2

msg_done: .asciz "exitloop done\n"
msg_bad:  .asciz "exitloop: bad parameters\n"
