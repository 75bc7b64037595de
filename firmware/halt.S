# halt — real mode: `cli; hlt`. With interrupts disabled nothing can wake the
# vCPU, so a VMM must notice and report it (KVM_EXIT_HLT without an in-kernel
# irqchip; with one, KVM_RUN would block in the kernel and the VMM needs a
# timeout or a "halted with IF=0" check).
# VM exits: 1 (the HLT). No serial output.

        .include "common.inc"
        .code16
        .text
        .globl _start
_start:
        cli
        hlt
        jmp _start                      # not reached (if woken anyway, halt again)
