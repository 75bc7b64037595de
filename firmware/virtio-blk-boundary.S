# virtio-blk-boundary — virtio-blk requests whose parts straddle the 1 GiB
# line of guest RAM, where tsvmm's host views of RAM meet (they are cut into
# 1 GiB chunks). From 64-bit ring 3; needs `--irqchip`, one `--disk` of at
# least 2 sectors and `--mem` of at least 1 GiB + 4 KiB (the tests use 2G).
#
# Brings the device up as virtio-blk.S does, also accepting
# VIRTIO_F_INDIRECT_DESC, then sends two reads, one at a time:
#   1. a direct chain whose 16-byte header sits at 0x3FFFFFFE (2 bytes
#      below the line: its type field straddles it), reading sector 0;
#   2. one INDIRECT descriptor naming a 3-entry table at 0x3FFFFFEA (not
#      16-byte aligned, which the spec allows): its second entry straddles
#      the line (the table's descriptors are read as 4- and 2-byte fields:
#      the buffer address's high word straddles). It reads sector 1.
# It prints
#   "virtio-blk-boundary used=XXXX s1=XX len1=XXXXXXXX d1=<16 hex> s2=XX len2=XXXXXXXX d2=<16 hex>\n"
# (dN = the first 8 bytes read by request N) and exits with v = 0; a failed
# bring-up prints "virtio-blk-boundary: <what>", v = 1; no completion, v = 2.

        .include "common.inc"
        .set VIRTIO,        0xD1000000
        .set QSIZE,         8
        .set INDIRECT_DESC, 1 << 28
        .set VRING_INDIRECT, 4
        .set DESC,          0x100000
        .set AVAIL,         0x101000
        .set USED,          0x102000
        .set DATA1,         0x104000
        .set DATA2,         0x105000
        .set STATUS1,       0x106000
        .set STATUS2,       0x106100
        .set HEADER2,       0x103000
        .set LINE,          0x40000000          # the first host chunk boundary
        .set HEADER1,       LINE - 2
        .set TABLE,         LINE - 22           # entry 1 at LINE - 6 .. LINE + 10

        .code16
        .text
        .globl _start
_start:
        REAL_MODE_INIT
        .include "longmode.inc"         # ... continues at user_main, in ring 3
        .include "virtio64.inc"

        .code64
user_main:
        mov edi, VIRTIO
        mov ecx, QSIZE
        mov r8d, DESC
        mov r9d, AVAIL
        mov r10d, USED
        mov edx, INDIRECT_DESC
        call virtio_mmio_setup_with
        test rsi, rsi
        jnz fail
        lea rsi, [rip + e_device]
        cmp dword ptr [rdi + VIO_DEVICE_ID], 2
        jne fail

        # Request 1: header {type 0 = IN, reserved, sector 0} across the line.
        mov dword ptr [HEADER1], 0
        mov dword ptr [HEADER1 + 4], 0
        mov qword ptr [HEADER1 + 8], 0
        mov byte ptr [STATUS1], 0xFF
        # Descriptors {addr u64, len u32, flags u16, next u16}: 0 -> 1 -> 2.
        mov qword ptr [DESC + 0], HEADER1
        mov dword ptr [DESC + 8], 16
        mov dword ptr [DESC + 12], VRING_NEXT | (1 << 16)
        mov qword ptr [DESC + 16], DATA1
        mov dword ptr [DESC + 24], 512
        mov dword ptr [DESC + 28], (VRING_NEXT | VRING_WRITE) | (2 << 16)
        mov qword ptr [DESC + 32], STATUS1
        mov dword ptr [DESC + 40], 1
        mov dword ptr [DESC + 44], VRING_WRITE
        mov word ptr [AVAIL + 4], 0                     # avail.ring[0] = head 0
        mov word ptr [AVAIL + 2], 1                     # avail.idx = 1
        mov dword ptr [rdi + VIO_NOTIFY], 0
        mov bx, 1
        call wait_used

        # Request 2: the straddling part is the indirect table.
        mov dword ptr [HEADER2], 0
        mov dword ptr [HEADER2 + 4], 0
        mov qword ptr [HEADER2 + 8], 1              # sector 1
        mov byte ptr [STATUS2], 0xFF
        mov qword ptr [TABLE + 0], HEADER2
        mov dword ptr [TABLE + 8], 16
        mov dword ptr [TABLE + 12], VRING_NEXT | (1 << 16)
        mov qword ptr [TABLE + 16], DATA2               # this entry straddles the line
        mov dword ptr [TABLE + 24], 512
        mov dword ptr [TABLE + 28], (VRING_NEXT | VRING_WRITE) | (2 << 16)
        mov qword ptr [TABLE + 32], STATUS2
        mov dword ptr [TABLE + 40], 1
        mov dword ptr [TABLE + 44], VRING_WRITE
        mov qword ptr [DESC + 48], TABLE                # descriptor 3: the indirect table
        mov dword ptr [DESC + 56], 48
        mov dword ptr [DESC + 60], VRING_INDIRECT
        mov word ptr [AVAIL + 6], 3                     # avail.ring[1] = head 3
        mov word ptr [AVAIL + 2], 2
        mov dword ptr [rdi + VIO_NOTIFY], 0
        mov bx, 2
        call wait_used

        movzx eax, word ptr [USED + 2]
        PUTFIELD64 s_used, 4
        movzx eax, byte ptr [STATUS1]
        PUTFIELD64 s_s1, 2
        mov eax, [USED + 8]                             # used.ring[0].len
        PUTFIELD64 s_len1, 8
        mov rax, [DATA1]
        PUTFIELD64 s_d1, 16
        movzx eax, byte ptr [STATUS2]
        PUTFIELD64 s_s2, 2
        mov eax, [USED + 16]                            # used.ring[1].len
        PUTFIELD64 s_len2, 8
        mov rax, [DATA2]
        PUTFIELD64 s_d2, 16
        lea rsi, [rip + s_nl]
        call puts64
        EXIT_VM 0

# Waits (bounded) for used.idx to reach BX; ends the VM with v = 2 if it does not.
wait_used:
        mov ecx, 100000000
1:      cmp word ptr [USED + 2], bx
        je 2f
        pause
        dec ecx
        jnz 1b
        lea rsi, [rip + e_timeout]
        call puts64
        EXIT_VM 2
2:      ret

fail:
        lea rdi, [rip + s_fail]
        call putfail64
        EXIT_VM 1

s_used:     .asciz "virtio-blk-boundary used="
s_s1:       .asciz " s1="
s_len1:     .asciz " len1="
s_d1:       .asciz " d1="
s_s2:       .asciz " s2="
s_len2:     .asciz " len2="
s_d2:       .asciz " d2="
s_nl:       .asciz "\n"
s_fail:     .asciz "virtio-blk-boundary: "
e_device:   .asciz "not a block device"
e_timeout:  .asciz "virtio-blk-boundary: no completion\n"
