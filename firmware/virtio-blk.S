# virtio-blk — a virtio driver in a page: bring up the virtio-blk device at
# the first virtio-mmio window (0xD1000000, version 2 registers) and read
# sector 0, from 64-bit ring 3. Needs `--irqchip` and one `--disk`.
#
# The device comes up as virtio 1.2, 3.1.1 says (include/virtio64.inc), with
# queue 0 of 8 entries; then one request (5.2.6): a 16-byte header (type IN, sector 0), a 512-byte
# device-writable buffer and a 1-byte status, as a chain of 3 descriptors.
# The guest runs with interrupts off and waits for the used index to move.
# It prints
#   "virtio-blk id=XXXXXXXX status=XX used=XXXX len=XXXXXXXX isr=XXXXXXXX data=<16 hex>\n"
# (data = the first 8 bytes of sector 0 as a little-endian number) and exits
# with v = 0; a wrong magic/version/device or a refused FEATURES_OK prints
# "virtio-blk: <what>" and exits with v = 1; no completion in time, v = 2.

        .include "common.inc"
        .set VIRTIO,        0xD1000000
        .set QSIZE,         8
        # The queue and the request live at 1 MiB, clear of the image and page tables.
        .set DESC,          0x100000
        .set AVAIL,         0x101000
        .set USED,          0x102000
        .set HEADER,        0x103000
        .set DATA,          0x104000
        .set STATUSB,       0x105000

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
        call virtio_mmio_setup
        test rsi, rsi
        jnz fail
        lea rsi, [rip + e_device]
        mov r12d, [rdi + VIO_DEVICE_ID]
        cmp r12d, 2
        jne fail

        # The request: header {type = 0 (IN), reserved, sector = 0}.
        mov dword ptr [HEADER], 0
        mov dword ptr [HEADER + 4], 0
        mov qword ptr [HEADER + 8], 0
        mov byte ptr [STATUSB], 0xFF                    # the device overwrites it
        # Descriptors {addr u64, len u32, flags u16 (1 NEXT, 2 WRITE), next u16}.
        mov qword ptr [DESC + 0], HEADER
        mov dword ptr [DESC + 8], 16
        mov dword ptr [DESC + 12], 1 | (1 << 16)        # NEXT, next = 1
        mov qword ptr [DESC + 16], DATA
        mov dword ptr [DESC + 24], 512
        mov dword ptr [DESC + 28], 3 | (2 << 16)        # NEXT | WRITE, next = 2
        mov qword ptr [DESC + 32], STATUSB
        mov dword ptr [DESC + 40], 1
        mov dword ptr [DESC + 44], 2                    # WRITE
        # avail.ring[0] = head 0, then avail.idx = 1 (x86 keeps the order), then notify.
        mov word ptr [AVAIL + 4], 0
        mov word ptr [AVAIL + 2], 1
        mov dword ptr [rdi + VIO_NOTIFY], 0

        mov ecx, 100000000
wait_used:
        cmp word ptr [USED + 2], 1
        je done
        pause
        dec ecx
        jnz wait_used
        lea rsi, [rip + e_timeout]
        call puts64
        EXIT_VM 2

done:
        mov eax, r12d
        PUTFIELD64 s_id, 8
        movzx eax, byte ptr [STATUSB]
        PUTFIELD64 s_status, 2
        movzx eax, word ptr [USED + 2]
        PUTFIELD64 s_used, 4
        mov eax, [USED + 8]                             # used.ring[0].len
        PUTFIELD64 s_len, 8
        mov eax, [rdi + VIO_ISR]
        PUTFIELD64 s_isr, 8
        mov rax, [DATA]
        PUTFIELD64 s_data, 16
        lea rsi, [rip + s_nl]
        call puts64
        EXIT_VM 0

fail:
        lea rdi, [rip + s_fail]
        call putfail64
        EXIT_VM 1

s_id:       .asciz "virtio-blk id="
s_status:   .asciz " status="
s_used:     .asciz " used="
s_len:      .asciz " len="
s_isr:      .asciz " isr="
s_data:     .asciz " data="
s_nl:       .asciz "\n"
s_fail:     .asciz "virtio-blk: "
e_device:   .asciz "not a block device"
e_timeout:  .asciz "virtio-blk: no completion"
