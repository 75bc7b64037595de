# blkload — the virtio-blk benchmark load: read requests through the first
# virtio-mmio device (0xD1000000) as fast as the device completes them, from
# 64-bit ring 3. Needs `--irqchip` and one `--disk`.
#
# The driver keeps `depth` requests in flight per batch: it fills that many
# 3-descriptor chains (header, data, status), publishes them with one
# avail.idx store, notifies once, and polls the used index until the batch
# is back. A polling driver needs no interrupts: it sets NO_INTERRUPT. Then it prints
#   "blkload done errors=XXXXXXXX\n"
# and exits with v = 0 (v = 1: the device did not come up; v = 2: bad parameters).
#
# Parameter block at file offset 8, little-endian (the host patches it):
#   off  size  field          default
#    8   u32   magic          0x42565354  "TSVB"
#   12   u32   requests       1000        total read requests (0: just bring the device up)
#   16   u32   request_bytes  65536       bytes per request: a multiple of 512, at most 65536
#   20   u32   depth          32          requests per batch: 1..80
#   24   u32   random         0           0: sequential; 1: random offsets, aligned to request_bytes

        .include "common.inc"
        .set VIRTIO,        0xD1000000
        .set QSIZE,         256
        .set DESC,          0x100000
        .set AVAIL,         0x101000
        .set USED,          0x102000
        .set HEADERS,       0x103000    # 16 bytes per slot
        .set STATUSES,      0x104000    # 1 byte per slot
        .set DATA,          0x1000000   # request_bytes per slot (up to 5 MiB)

        .code16
        .text
        .globl _start
_start:
        .byte 0xEB, real_start - (_start + 2)
        .skip 6, 0
params:
p_magic:    .long 0x42565354
p_requests: .long 1000
p_bytes:    .long 65536
p_depth:    .long 32
p_random:   .long 0
params_end:
        .if (params - _start) != 8 || (params_end - params) != 20
        .error "parameter block must be at file offset 8 and 20 bytes long"
        .endif

real_start:
        REAL_MODE_INIT
        .include "longmode.inc"         # ... continues at user_main, in ring 3
        .include "virtio64.inc"

        .code64
user_main:
        cmp dword ptr [rip + p_magic], 0x42565354
        jne bad_params
        mov eax, [rip + p_bytes]
        test eax, 511
        jnz bad_params
        test eax, eax
        jz bad_params
        cmp eax, 65536
        ja bad_params
        mov eax, [rip + p_depth]
        test eax, eax
        jz bad_params
        cmp eax, 80                             # 3 descriptors each in a queue of 256
        ja bad_params

        mov edi, VIRTIO
        mov ecx, QSIZE
        mov r8d, DESC
        mov r9d, AVAIL
        mov r10d, USED
        call virtio_mmio_setup
        test rsi, rsi
        jnz no_device

        # The driver polls the used ring, so it asks for no interrupts
        # (VIRTQ_AVAIL_F_NO_INTERRUPT): each would only kick the vCPU.
        mov word ptr [AVAIL], 1

        # Slot i uses descriptors 3i (header), 3i+1 (data), 3i+2 (status).
        xor ebx, ebx                            # slot
slot_setup:
        imul eax, ebx, 48                       # 3 descriptors of 16 bytes
        lea rdx, [HEADERS + rbx * 8]
        lea rdx, [rdx + rbx * 8]                # HEADERS + 16i
        mov [DESC + rax], rdx
        mov dword ptr [DESC + rax + 8], 16
        lea ecx, [rbx * 2 + rbx + 1]            # next = 3i+1
        shl ecx, 16
        or ecx, VRING_NEXT
        mov [DESC + rax + 12], ecx
        mov ecx, [rip + p_bytes]
        mov edx, ecx
        imul edx, ebx
        add edx, DATA
        mov [DESC + rax + 16], rdx
        mov [DESC + rax + 24], ecx
        lea ecx, [rbx * 2 + rbx + 2]            # next = 3i+2
        shl ecx, 16
        or ecx, VRING_NEXT | VRING_WRITE
        mov [DESC + rax + 28], ecx
        lea rdx, [STATUSES + rbx]
        mov [DESC + rax + 32], rdx
        mov dword ptr [DESC + rax + 40], 1
        mov dword ptr [DESC + rax + 44], VRING_WRITE
        inc ebx
        cmp ebx, [rip + p_depth]
        jb slot_setup

        # Sectors per request, and how many request-sized units the disk holds.
        mov r11d, [rip + p_bytes]
        shr r11d, 9                             # R11 = sectors per request
        mov rax, [rdi + VIO_CONFIG]             # capacity in sectors
        xor edx, edx
        div r11
        mov r12, rax                            # R12 = units on the disk
        test r12, r12
        jz bad_params

        mov r13d, [rip + p_requests]            # R13 = requests left
        xor r14d, r14d                          # R14 = avail index (free-running)
        xor r15d, r15d                          # R15 = next sequential unit / LCG state
        xor ebp, ebp                            # EBP = errors

batch:
        test r13d, r13d
        jz finished
        mov ecx, [rip + p_depth]
        cmp ecx, r13d
        cmovae ecx, r13d                        # ECX = requests in this batch
        sub r13d, ecx
        xor ebx, ebx                            # slot
fill:
        # Pick the unit: sequential (wrapping) or an LCG draw.
        cmp dword ptr [rip + p_random], 0
        jne 1f
        mov rax, r15
        inc r15
        cmp r15, r12
        jb 2f
        xor r15d, r15d
        jmp 2f
1:      mov rax, 6364136223846793005
        imul r15, rax
        mov rax, 1442695040888963407
        add r15, rax
        mov rax, r15
        shr rax, 33
2:      xor edx, edx
        div r12                                 # RDX = unit
        imul rdx, r11                           # sector
        mov rax, rbx
        shl rax, 4
        mov dword ptr [HEADERS + rax], 0        # type IN
        mov dword ptr [HEADERS + rax + 4], 0
        mov [HEADERS + rax + 8], rdx
        mov byte ptr [STATUSES + rbx], 0xFF
        mov eax, r14d
        and eax, QSIZE - 1
        lea edx, [rbx * 2 + rbx]                # head = 3i
        mov [AVAIL + 4 + rax * 2], dx
        inc r14d
        inc ebx
        cmp ebx, ecx
        jb fill

        mov [AVAIL + 2], r14w                   # publish the batch
        mov dword ptr [rdi + VIO_NOTIFY], 0
wait:
        cmp [USED + 2], r14w
        je 3f
        pause
        jmp wait
3:      xor ebx, ebx
check:
        cmp byte ptr [STATUSES + rbx], 0
        je 4f
        inc ebp
4:      inc ebx
        cmp ebx, ecx
        jb check
        jmp batch

finished:
        mov eax, ebp
        PUTFIELD64 s_done, 8
        lea rsi, [rip + s_nl]
        call puts64
        EXIT_VM 0

no_device:
        lea rdi, [rip + s_fail]
        call putfail64
        EXIT_VM 1

bad_params:
        lea rsi, [rip + s_bad]
        call puts64
        EXIT_VM 2

s_done: .asciz "blkload done errors="
s_nl:   .asciz "\n"
s_fail: .asciz "blkload: "
s_bad:  .asciz "blkload: bad parameters\n"
