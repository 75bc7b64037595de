# realmode-bios — a multiboot v1 kernel linked at 0x8000 (multiboot/realmode-bios.ld)
# that drops from the multiboot entry to real mode, as kvm-unit-tests'
# realmode.flat does, and checks what a BIOS leaves there:
#   "ivt 08=SSSS:OOOO 10=SSSS:OOOO"   the IRQ0 and int 0x10 vectors (hex)
#   "pic imr=MM SS"                   the 8259s' masks (hex: IRQ0 and the cascade open)
#   "int10 returned"                  a software interrupt comes back (the vector is an iret)
#   "ticks +N"                        IRQ0 ticks the BIOS's handler counted in the BDA
#                                     across three `sti; hlt`: each halt ends only by an
#                                     IRQ0, and a second one arrives only after an EOI
# then exits through isa-debug-exit with v = 0 (status 1) when the count rose
# by at least 3, else v = 1 (status 3); v = 2 (status 5) when EAX was not the
# multiboot magic.

        .include "common.inc"

        .set MB_HEADER_MAGIC, 0x1BADB002
        .set MB_LOADER_MAGIC, 0x2BADB002
        .set MB_FLAGS,        0x0
        .set BDA_TICKS,       0x46C             # dword: IRQ0 ticks since midnight
        .set HALTS,           3

        .section .multiboot, "a"
        .align 4
        .long MB_HEADER_MAGIC, MB_FLAGS, -(MB_HEADER_MAGIC + MB_FLAGS)

        .text
        .code32
        .globl _start
_start:
        cmp eax, MB_LOADER_MAGIC
        jne bad_magic
        lgdt [gdt_descriptor]
        # ljmp 0x08:pm16 — 16-bit protected mode, to leave it for real mode
        .byte 0xEA
        .long pm16
        .word 0x08

bad_magic:
        mov dx, DEBUG_EXIT
        mov al, 2
        out dx, al
1:      hlt
        jmp 1b

        .code16
pm16:
        mov ax, 0x10
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov eax, cr0
        and eax, ~1
        mov cr0, eax
        # ljmp 0:real — real mode, CS = 0
        .byte 0xEA
        .word real, 0

real:
        xor ax, ax
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov sp, offset stack_top
        lidt [real_idt]

        mov si, offset msg_ivt08
        call puts16
        mov ax, [0x08 * 4 + 2]
        call puthex16
        mov si, offset msg_colon
        call puts16
        mov ax, [0x08 * 4]
        call puthex16
        mov si, offset msg_ivt10
        call puts16
        mov ax, [0x10 * 4 + 2]
        call puthex16
        mov si, offset msg_colon
        call puts16
        mov ax, [0x10 * 4]
        call puthex16

        mov si, offset msg_pic
        call puts16
        in al, 0x21
        call puthex8
        mov si, offset msg_space
        call puts16
        in al, 0xA1
        call puthex8

        int 0x10
        mov si, offset msg_int10
        call puts16

        mov ebx, [BDA_TICKS]
        mov cx, HALTS
1:      sti
        hlt
        cli
        loop 1b
        mov eax, [BDA_TICKS]
        sub eax, ebx
        mov bp, ax                              # the count's rise (small)
        mov si, offset msg_ticks
        call puts16
        mov ax, bp
        call puthex16
        mov si, offset msg_newline
        call puts16

        mov dx, DEBUG_EXIT
        xor al, al
        cmp bp, HALTS
        jae 2f
        mov al, 1
2:      out dx, al
3:      hlt
        jmp 3b

# puthex8: print AL as 2 upper-case hex digits on COM1. Clobbers: AX, BX, CX, DX.
puthex8:
        mov bl, al
        mov cx, 2
        mov dx, COM1_THR
1:      rol bl, 4
        mov al, bl
        and al, 0x0F
        add al, '0'
        cmp al, '9'
        jbe 2f
        add al, 'A' - '9' - 1
2:      out dx, al
        loop 1b
        ret

        .include "serial16.inc"

        .section .rodata
        .align 8
gdt:    .quad 0
        .quad 0x00009B000000FFFF                # 0x08: 16-bit code, base 0, limit 64 KiB
        .quad 0x000093000000FFFF                # 0x10: 16-bit data, base 0, limit 64 KiB
gdt_descriptor:
        .word gdt_descriptor - gdt - 1
        .long gdt
real_idt:
        .word 0x3FF                             # the real-mode IVT at 0
        .long 0

msg_ivt08:   .asciz "ivt 08="
msg_ivt10:   .asciz " 10="
msg_colon:   .asciz ":"
msg_pic:     .asciz "\npic imr="
msg_space:   .asciz " "
msg_int10:   .asciz "\nint10 returned\n"
msg_ticks:   .asciz "ticks +"
msg_newline: .asciz "\n"

        .bss
        .align 16
stack:  .skip 1024
stack_top:
