# mmio — MMIO accesses of every size from 64-bit ring 3.
#
# Writes (to addresses with no RAM behind them, so each is a KVM_EXIT_MMIO):
#   0xD0000000  1 byte   0x11
#   0xD0000008  2 bytes  0x2233
#   0xD0000010  4 bytes  0x44556677
#   0xD0000018  8 bytes  0x8899AABBCCDDEEFF
# Reads:
#   0xD0000020  1 byte   -> r1
#   0xD0000028  2 bytes  -> r2
#   0xD0000030  4 bytes  -> r4
#   0xD0000038  8 bytes  -> r8
# then prints "mmio r1=XX r2=XXXX r4=XXXXXXXX r8=XXXXXXXXXXXXXXXX\n" (upper-case
# hex, zero-padded to the access size) and exits with v = 0.
# VM exits: 8 MMIO + 51 serial bytes + 1 debug exit = 60.
# Setup is shared with exitloop (include/longmode.inc).

        .include "common.inc"
        .set MMIO_BASE, 0xD0000000

        .code16
        .text
        .globl _start
_start:
        REAL_MODE_INIT
        .include "longmode.inc"         # ... continues at user_main, in ring 3

        .code64
user_main:
        mov edi, MMIO_BASE              # RDI = 0xD0000000 (zero-extended)

        # ---- writes, one per size ----
        mov byte ptr [rdi + 0x00], 0x11
        mov word ptr [rdi + 0x08], 0x2233
        mov dword ptr [rdi + 0x10], 0x44556677
        mov rax, 0x8899AABBCCDDEEFF
        mov [rdi + 0x18], rax

        # ---- reads, one per size; keep the results in R8..R11 ----
        movzx r8d, byte ptr [rdi + 0x20]
        movzx r9d, word ptr [rdi + 0x28]
        mov r10d, [rdi + 0x30]
        mov r11, [rdi + 0x38]

        # ---- report ----
        lea rsi, [rip + s_r1]
        call puts64
        mov rax, r8
        mov ecx, 2
        call puthex64

        lea rsi, [rip + s_r2]
        call puts64
        mov rax, r9
        mov ecx, 4
        call puthex64

        lea rsi, [rip + s_r4]
        call puts64
        mov rax, r10
        mov ecx, 8
        call puthex64

        lea rsi, [rip + s_r8]
        call puts64
        mov rax, r11
        mov ecx, 16
        call puthex64

        lea rsi, [rip + s_nl]
        call puts64
        EXIT_VM 0

s_r1:   .asciz "mmio r1="
s_r2:   .asciz " r2="
s_r4:   .asciz " r4="
s_r8:   .asciz " r8="
s_nl:   .asciz "\n"
