# exitcode — real mode: print "bye\n", then exit through the debug-exit port
# with v = 0x2A, so the VMM's exit status is (0x2A << 1) | 1 = 85.
# VM exits: 4 + 1 = 5.

        .include "common.inc"
        .code16
        .text
        .globl _start
_start:
        REAL_MODE_INIT
        mov si, offset msg - _start
        call puts16
        EXIT_VM 0x2A

        .include "serial16.inc"

msg:    .asciz "bye\n"
