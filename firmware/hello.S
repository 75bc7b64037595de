# hello — the smallest useful guest: real mode, print a line on COM1, exit.
#
# Expected: COM1 prints "Hello from tsvmm guest\n", VM exit status 1.
# VM exits: 23 (one per byte) + 1 (debug exit) = 24.

        .include "common.inc"
        .code16
        .text
        .globl _start
_start:
        REAL_MODE_INIT
        mov si, offset msg - _start     # DS:SI -> msg (offset relative to CS/DS base)
        call puts16
        EXIT_VM 0

        .include "serial16.inc"

msg:    .asciz "Hello from tsvmm guest\n"
