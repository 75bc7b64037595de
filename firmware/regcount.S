# regcount — counts in a register, an SSE register and RAM at once and prints
# every value: the guest of the vCPU/VM state save and restore test
# (test/kvm-state.test.ts).
#
# Real mode -> long mode -> ring 3 (include/longmode.inc), with CR4.OSFXSR set
# so ring 3 may use SSE. The loop keeps the count N in R12, in XMM0's low
# quadword and in the quadword `ram_count` of the image. Each step adds 1 to
# all three, reads a 32-bit `in` from port 0x520, where the host answers with
# how many reads it has served (1, 2, ...), checks that all four agree, and
# prints N as 8 hex digits and "\n".
# A VMM that saves the vCPU and RAM part way and restores them into a new VM
# must bring back the general registers, the FPU/SSE (XSAVE) state and RAM,
# and must complete the exit it stopped at (an `in`'s value reaches EAX at the
# next KVM_RUN; replayed, it reads the next value), for the output to go on
# with no gap, no repeat and no mismatch.
#
# With `init_ap` set, before counting the BSP sends INIT to APIC ID 1 through
# its local APIC (from ring 3: the identity map is user-accessible, and the
# in-kernel LAPIC serves the access): the AP then waits for a start-up IPI
# that never comes (KVM_MP_STATE_INIT_RECEIVED), the state a restore must keep.
#
# Parameter block at file offset 8 (little-endian), patched by the host:
#   off  size  field    default     meaning
#    8   u32   magic    0x43525354  bytes "TSRC"
#   12   u32   lines    1000        steps (= lines printed) before the exit
#   16   u32   init_ap  0           1: send INIT to APIC ID 1 first
#
# Output: "00000001\n" ... one line per step; then status 1 (v = 0). A
# mismatch prints "regcount mismatch r12=<16 hex> xmm0=<16 hex> ram=<16 hex>
# port=<8 hex>" and exits with v = 1 (status 3); a bad magic
# "regcount: bad parameters", v = 2 (status 5).
# VM exits: 10 per line (the `in`, then 9 bytes) + 1; the LAPIC accesses are
# served in the kernel.

        .include "common.inc"

        .set LAPIC_SVR,         0xFEE000F0      # spurious-interrupt vector register (bit 8: enabled)
        .set LAPIC_ICR_LOW,     0xFEE00300      # writing it sends the IPI
        .set LAPIC_ICR_HIGH,    0xFEE00310      # bits 31:24: destination APIC ID
        .set ICR_INIT_ASSERT,   0xC500          # INIT, level assert, level-triggered
        .set CR4_OSFXSR,        1 << 9          # the OS saves SSE state: SSE instructions allowed

        .code16
        .text
        .globl _start
_start:
        # `jmp short real_start` as bytes, so the block below is at offset 8.
        .byte 0xEB, real_start - (_start + 2)
        .skip 6, 0

params:
p_magic:   .long 0x43525354             # "TSRC"
p_lines:   .long 1000
p_init_ap: .long 0
params_end:

        .if (params - _start) != 8 || (params_end - params) != 12
        .error "parameter block must be at file offset 8 and 12 bytes long"
        .endif

        .balign 8
ram_count: .quad 0

real_start:
        REAL_MODE_INIT
        mov eax, cr4                    # longmode.inc keeps the bits it does not set
        or eax, CR4_OSFXSR
        mov cr4, eax
        .include "longmode.inc"         # ... continues at user_main, in ring 3

        .code64
user_main:
        cmp dword ptr [rip + p_magic], 0x43525354
        jne bad_parameters

        cmp dword ptr [rip + p_init_ap], 0
        je 1f
        mov edi, LAPIC_SVR              # above 2 GiB: no disp32 reaches it, a register does
        or dword ptr [rdi], 0x100
        mov edi, LAPIC_ICR_HIGH
        mov dword ptr [rdi], 1 << 24
        mov edi, LAPIC_ICR_LOW
        mov dword ptr [rdi], ICR_INIT_ASSERT

1:      xor r12d, r12d
        pxor xmm0, xmm0
        mov eax, 1
        movq xmm1, rax                  # XMM1 = the step, 1
        mov r13d, dword ptr [rip + p_lines]

step:
        cmp r12, r13
        je done
        inc r12
        paddq xmm0, xmm1
        inc qword ptr [rip + ram_count]
        mov dx, TEST_PORT
        in eax, dx                      # zero-extends into RAX
        mov r14, rax
        cmp r14, r12
        jne mismatch
        movq rax, xmm0
        cmp rax, r12
        jne mismatch
        cmp qword ptr [rip + ram_count], r12
        jne mismatch
        mov rax, r12
        mov ecx, 8
        call puthex64
        mov dx, COM1_THR
        mov al, '\n'
        out dx, al
        jmp step

done:
        EXIT_VM 0

mismatch:
        mov rax, r12
        PUTFIELD64 msg_mismatch, 16
        lea rsi, [rip + msg_xmm0]
        movq rax, xmm0
        mov ecx, 16
        call putfield64
        mov rax, [rip + ram_count]
        PUTFIELD64 msg_ram, 16
        mov rax, r14
        PUTFIELD64 msg_port, 8
        lea rsi, [rip + msg_newline]
        call puts64
        EXIT_VM 1

bad_parameters:
        lea rdi, [rip + msg_name]
        lea rsi, [rip + msg_bad]
        call putfail64
        EXIT_VM 2

msg_mismatch: .asciz "regcount mismatch r12="
msg_xmm0:     .asciz " xmm0="
msg_ram:      .asciz " ram="
msg_port:     .asciz " port="
msg_newline:  .asciz "\n"
msg_name:     .asciz "regcount: "
msg_bad:      .asciz "bad parameters"
