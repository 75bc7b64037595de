# rtc — reads the date and time from the CMOS RTC (MC146818) the way a BIOS
# does: wait until no update is in progress (register A bit 7), then read the
# time registers through the index (0x70) and data (0x71) ports.
#
# Prints "rtc CCYY-MM-DD HH:MM:SS b=BB\n": the registers as the RTC gives them
# (BCD by default, so they read as decimal digits) and status register B.
# Then it sets register B's DM bit (binary mode) and prints the seconds again
# as a binary byte: "bin sec=SS\n" (hex). The index write for register B also
# sets bit 7 (the NMI mask), which must not change which register is read.
# Exits with v = 0.

        .include "common.inc"
        .set CMOS_INDEX, 0x70
        .set CMOS_DATA,  0x71
        .code16
        .text
        .globl _start
_start:
        REAL_MODE_INIT

1:      mov al, 0x0A                    # register A: bit 7 = update in progress
        out CMOS_INDEX, al
        in al, CMOS_DATA
        test al, 0x80
        jnz 1b

        mov si, offset msg_rtc - _start
        call puts16
        mov bl, 0x32                    # century
        call print_cmos
        mov bl, 0x09                    # year
        call print_cmos
        mov al, '-'
        call putc
        mov bl, 0x08                    # month
        call print_cmos
        mov al, '-'
        call putc
        mov bl, 0x07                    # day of the month
        call print_cmos
        mov al, ' '
        call putc
        mov bl, 0x04                    # hours
        call print_cmos
        mov al, ':'
        call putc
        mov bl, 0x02                    # minutes
        call print_cmos
        mov al, ':'
        call putc
        mov bl, 0x00                    # seconds
        call print_cmos
        mov si, offset msg_b - _start
        call puts16
        mov bl, 0x8B                    # register B, with the NMI-mask bit set
        call print_cmos
        mov al, '\n'
        call putc

        # Binary mode: register B bit 2 (DM).
        mov al, 0x0B
        out CMOS_INDEX, al
        in al, CMOS_DATA
        or al, 0x04
        mov ah, al
        mov al, 0x0B
        out CMOS_INDEX, al
        mov al, ah
        out CMOS_DATA, al

        mov si, offset msg_bin - _start
        call puts16
        mov bl, 0x00
        call print_cmos
        mov al, '\n'
        call putc
        EXIT_VM 0

# print_cmos: print CMOS register BL as two hex digits.
print_cmos:
        mov al, bl
        out CMOS_INDEX, al
        in al, CMOS_DATA
        mov ah, al
        shr al, 4
        call putnibble
        mov al, ah
        and al, 0x0F
        call putnibble
        ret

putnibble:
        add al, '0'
        cmp al, '9'
        jbe putc
        add al, 'A' - '9' - 1
putc:
        mov dx, COM1_THR
        out dx, al
        ret

        .include "serial16.inc"

msg_rtc: .asciz "rtc "
msg_b:   .asciz " b="
msg_bin: .asciz "bin sec="
