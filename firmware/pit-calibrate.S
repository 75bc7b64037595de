# pit-calibrate — times intervals with PIT channel 2, the way Linux's
# pit_calibrate_tsc() measures the TSC: gate channel 2 on through port 0x61
# (bit 0), speaker off (bit 1), program mode 0 with a count, then poll port
# 0x61 bit 5 (channel 2's OUT) until the count runs out, reading the TSC
# before and after. It times 25 ms (count 29830) and 50 ms (count 59659) at
# the PIT's 1.193182 MHz, so the host can check their ratio without knowing
# the TSC's frequency.
#
# Prints "pit 25ms=XXXXXXXXXXXXXXXX 50ms=XXXXXXXXXXXXXXXX polls=XXXXXXXX\n"
# (TSC deltas and the second interval's poll count, hex); exits with v = 0.

        .include "common.inc"
        .set PIT_CHANNEL2, 0x42
        .set PIT_COMMAND,  0x43
        .set PORT_B,       0x61
        .code16
        .text
        .globl _start
_start:
        REAL_MODE_INIT

        in al, PORT_B
        and al, 0xFD                    # speaker data off
        or al, 0x01                     # timer 2 gate on
        out PORT_B, al

        mov si, offset msg_pit - _start
        call puts16
        mov bx, 29830                   # 25 ms
        call time_count
        mov si, offset msg_50 - _start
        call puts16
        mov bx, 59659                   # 50 ms
        call time_count
        mov si, offset msg_polls - _start
        call puts16
        mov eax, [polls - _start]
        call puthex32
        mov si, offset newline - _start
        call puts16
        EXIT_VM 0

# time_count: run channel 2 in mode 0 with count BX; print the TSC delta.
time_count:
        mov al, 0xB0                    # channel 2, LSB then MSB, mode 0, binary
        out PIT_COMMAND, al
        mov al, bl
        out PIT_CHANNEL2, al
        rdtsc                           # the count starts with the MSB write
        mov [start_lo - _start], eax
        mov [start_hi - _start], edx
        mov al, bh
        out PIT_CHANNEL2, al

        xor ecx, ecx
1:      inc ecx
        in al, PORT_B
        test al, 0x20                   # OUT2 goes high at terminal count
        jz 1b

        rdtsc
        sub eax, [start_lo - _start]
        sbb edx, [start_hi - _start]
        mov [start_lo - _start], eax
        mov [start_hi - _start], edx
        mov [polls - _start], ecx
        mov eax, [start_hi - _start]
        call puthex32
        mov eax, [start_lo - _start]
        call puthex32
        ret

        .include "serial16.inc"

msg_pit:   .asciz "pit 25ms="
msg_50:    .asciz " 50ms="
msg_polls: .asciz " polls="
newline:   .asciz "\n"
        .balign 4
start_lo:  .long 0
start_hi:  .long 0
polls:     .long 0
