# serial-flood — the serial throughput benchmark guest: real mode, `count`
# bytes written to COM1's THR as fast as the VMM takes them, then the end.
# The same file runs under tsvmm, kvmtool (both load flat binaries at
# 1000:0000) and QEMU (as the payload of a tiny BIOS image that copies it
# there, see bench/lib/flat-rom.ts).
#
# The loop is `out dx, al; dec ecx; jnz`: one exit per byte, and the LSR is
# never polled, so the exit count is exactly count + 1 (+ 1 under kvmtool).
#
# How it ends (p_end):
#   0  debug-exit with v = 0 (tsvmm and QEMU's isa-debug-exit: status 1);
#      a VMM without debug-exit ignores that write, so then the keyboard
#      controller's reset pulse (0xFE to port 0x64), which ends kvmtool and,
#      with -no-reboot, QEMU; then `hlt` forever.
#   1  spin forever after the last byte (`tsvmm bench memory` samples the
#      VMM's resident memory while the guest is alive, then kills it).
#
# Parameter block: at file offset 8, little-endian, patched by the host:
#   off  size  field   default     meaning
#    8   u32   magic   0x53565354  bytes "TSVS"
#   12   u32   count   1000        bytes to write (0 allowed)
#   16   u32   byte    0x2E        the byte written ('.')
#   20   u32   end     0           0 = exit, 1 = spin

        .include "common.inc"
        .set KBC_COMMAND, 0x64
        .set KBC_RESET,   0xFE
        .code16
        .text
        .globl _start
_start:
        .byte 0xEB, real_start - (_start + 2)  # jmp short real_start
        .skip 6, 0

params:
p_magic: .long 0x53565354                      # "TSVS"
p_count: .long 1000
p_byte:  .long 0x2E
p_end:   .long 0
params_end:
        .if (params - _start) != 8 || (params_end - params) != 16
        .error "parameter block must be at file offset 8 and 16 bytes long"
        .endif

real_start:
        REAL_MODE_INIT
        mov ecx, [p_count - _start]
        mov al, [p_byte - _start]
        mov dx, COM1_THR
        test ecx, ecx
        jz done
        .balign 16
1:      out dx, al
        dec ecx
        jnz 1b

done:
        cmp dword ptr [p_end - _start], 0
        jne spin
        mov dx, DEBUG_EXIT
        xor al, al
        out dx, al
        mov al, KBC_RESET
        out KBC_COMMAND, al
2:      hlt
        jmp 2b

spin:   jmp spin
