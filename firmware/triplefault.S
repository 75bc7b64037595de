# triplefault — force a triple fault, which KVM reports as KVM_EXIT_SHUTDOWN.
#
# Recipe: enter 32-bit protected mode, load an IDT with limit 0, execute `ud2`.
#   #UD (vector 6) -> its gate lies outside the IDT limit -> #GP
#   #GP            -> its gate lies outside the IDT limit -> #DF (double fault)
#   #DF            -> its gate lies outside the IDT limit -> triple fault:
#                     the CPU shuts down; KVM_RUN returns KVM_EXIT_SHUTDOWN.
#
# Why not simply stay in real mode? Real mode has no IDT limit check in KVM's
# instruction emulator (it just reads the vector from the table at the IDT base,
# ignoring the limit), and on PVM hosts (no VT-x, real mode runs in that
# emulator) `int3`/`int n`/`div 0` then vector through garbage and loop forever,
# while `ud2` in real mode fails emulation (KVM_EXIT_INTERNAL_ERROR). In
# protected mode at CPL 0 on PVM, `ud2`, `div 0` and a bad segment load all give
# a clean SHUTDOWN; `int3` and `int n` give KVM_EXIT_INTERNAL_ERROR instead. On
# hardware KVM all of them triple-fault. `ud2` is the portable choice.
#
# VM exits: 1 (SHUTDOWN). No serial output.

        .include "common.inc"
        .code16
        .text
        .globl _start
_start:
        REAL_MODE_INIT
        lgdt [gdtr - _start]            # flat 4 GiB code and data segments
        mov eax, cr0
        or eax, 1                       # CR0.PE: protected mode, no paging
        mov cr0, eax
        data32 jmp 0x08:pm32            # load CS with the 32-bit code segment

        .code32
pm32:
        mov ax, 0x10
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov esp, LOAD_ADDR              # a valid stack (grows down below the image)
        lidt [idt_empty]                # IDT limit 0: no usable gate at all
        ud2                             # #UD -> #GP -> #DF -> triple fault
1:      jmp 1b                          # not reached

        .balign 8
gdt:    .quad 0                         # 0x00: null
        .quad 0x00CF9A000000FFFF        # 0x08: code, 32-bit, base 0, limit 4 GiB, DPL 0
        .quad 0x00CF92000000FFFF        # 0x10: data, base 0, limit 4 GiB, DPL 0
gdt_end:
gdtr:   .word gdt_end - gdt - 1
        .long gdt                       # linear address (link address = load address)
idt_empty:
        .word 0                         # limit 0
        .long 0                         # base (irrelevant)
