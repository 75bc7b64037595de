# stringio — real mode: string port I/O (`rep outs` / `rep ins`).
#
# 1. `rep outsb` writes "String I/O OK\n" (14 bytes) to COM1 in one instruction.
# 2. `rep outsw` writes four 16-bit words to TEST_PORT (0x520):
#    0x1111, 0x2222, 0x3333, 0x4444.
# 3. `rep insw` reads four 16-bit words from TEST_PORT into memory, and the
#    guest prints them: "insw=XXXX,XXXX,XXXX,XXXX\n" (upper-case hex).
# 4. exit with v = 0.
#
# How KVM reports these (same on hardware KVM and PVM: string I/O always goes
# through KVM's instruction emulator):
#   - `rep outs*`: one KVM_EXIT_IO per element (count = 1 each), so 14 + 4 exits;
#   - `rep ins*`: batched, one KVM_EXIT_IO with count = 4 (size = 2); the VMM
#     must fill size * count bytes at io.data_offset.
# A VMM that handles only count = 1 prints wrong values for step 3.
#
# Expected with a VMM whose unclaimed ports read as all-ones:
#   "String I/O OK\ninsw=FFFF,FFFF,FFFF,FFFF\n", exit status 1,
#   VM exits: 14 + 4 + 1 + 25 + 1 = 45.

        .include "common.inc"
        .code16
        .text
        .globl _start
_start:
        REAL_MODE_INIT

        # 1. bytes to COM1
        mov si, offset msg - _start     # DS:SI -> bytes
        mov cx, msg_end - msg           # repeat count
        mov dx, COM1_THR
        rep outsb                       # out dx, byte [ds:si]; si++; CX times

        # 2. words to the test port
        mov si, offset words - _start
        mov cx, 4
        mov dx, TEST_PORT
        rep outsw                       # out dx, word [ds:si]; si += 2; CX times

        # 3. words from the test port, then print them
        mov di, offset inbuf - _start   # ES:DI -> buffer
        mov cx, 4
        mov dx, TEST_PORT
        rep insw                        # word [es:di] = in dx; di += 2; CX times

        mov si, offset msg_insw - _start
        call puts16
        mov si, offset inbuf - _start
        mov bp, 4                       # words left
1:      mov ax, [si]
        call puthex16                   # (keeps SI and BP)
        add si, 2
        dec bp
        jz 2f
        mov dx, COM1_THR
        mov al, ','
        out dx, al
        jmp 1b
2:      mov dx, COM1_THR
        mov al, '\n'
        out dx, al

        EXIT_VM 0

        .include "serial16.inc"

        .balign 2
words:  .word 0x1111, 0x2222, 0x3333, 0x4444
inbuf:  .word 0, 0, 0, 0                # filled by rep insw
msg:    .ascii "String I/O OK\n"
msg_end:
msg_insw: .asciz "insw="
