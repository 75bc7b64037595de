# cpuid — prints what CPUID leaf 1 reports in ECX and EDX, from real mode
# (ring 0, so on PVM it goes through KVM's emulator and the VMM's CPUID table).
#
# Expected: COM1 prints "cpuid.1 ecx=XXXXXXXX edx=XXXXXXXX\n", status 1.

        .include "common.inc"
        .code16
        .text
        .globl _start
_start:
        REAL_MODE_INIT
        mov eax, 1
        xor ecx, ecx
        cpuid
        mov [ecx_value - _start], ecx
        mov [edx_value - _start], edx

        mov si, offset label_ecx - _start
        call puts16
        mov eax, [ecx_value - _start]
        call puthex32
        mov si, offset label_edx - _start
        call puts16
        mov eax, [edx_value - _start]
        call puthex32
        mov si, offset newline - _start
        call puts16
        EXIT_VM 0

        .include "serial16.inc"

label_ecx:  .asciz "cpuid.1 ecx="
label_edx:  .asciz " edx="
newline:    .asciz "\n"
        .balign 4
ecx_value:  .long 0
edx_value:  .long 0
