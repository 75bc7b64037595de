# i8042-reset — a guest reboots the PC the way Linux's reboot=k does: the
# keyboard controller's command 0xFE pulses the CPU reset line.
#
# Expected: COM1 prints "resetting\n"; the VMM ends with "guest rebooted" and
# status 0. If the reset does nothing, the guest says so and exits with v = 1.

        .include "common.inc"
        .set I8042_COMMAND, 0x64
        .code16
        .text
        .globl _start
_start:
        REAL_MODE_INIT
        mov si, offset msg - _start
        call puts16
        mov al, 0xFE                    # "pulse output port bit 0": the CPU reset line
        out I8042_COMMAND, al
        mov si, offset failed - _start
        call puts16
        EXIT_VM 1

        .include "serial16.inc"

msg:    .asciz "resetting\n"
failed: .asciz "reset failed\n"
