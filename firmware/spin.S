# spin — enters 64-bit ring 3 and loops forever without a single VM exit.
#
# A guest that never leaves KVM_RUN by itself: the test that the main thread
# can stop a vCPU (signal + immediate_exit) uses it. On PVM ring-3 code runs
# natively, so this really spins inside KVM_RUN rather than in the emulator.
# VM exits: 0 (tsvmm sees only the kick's KVM_EXIT_INTR).

        .include "common.inc"
        .code16
        .text
        .globl _start
_start:
        REAL_MODE_INIT
        .include "longmode.inc"         # ... continues at user_main, in ring 3

        .code64
user_main:
1:      pause
        jmp 1b
