# virtio-pci — find a virtio-blk device on PCI and read sector 0 through it,
# from 64-bit ring 3, the way Linux does without ACPI:
#   configuration mechanism #1 (Linux's pci_check_type1: a byte to 0xCFB,
#   then 0x80000000 to 0xCF8 must read back); a scan of bus 0 for
#   1af4:1042; BAR 0; the capability list walked from 0x34 for the virtio
#   structures (COMMON, NOTIFY + its multiplier, ISR, DEVICE); then the
#   virtio 1.2 driver initialisation through the common configuration
#   (byte, word and dword MMIO accesses at their natural widths), queue 0 of
#   8 entries at 1 MiB, a 3-descriptor read of sector 0, a 16-bit write to
#   the queue's notify address, and a wait for the used ring.
# Config space is read with byte, word and dword `in`s at 0xCFC-0xCFF.
# The test device is test/devices/virtio-pci-blk.ts (no --irqchip needed:
# the guest polls). It prints
#   "virtio-pci slot=XX bar=XXXXXXXX caps=XXXXX notify=XXXXXXXX status=XX
#    used=XXXX len=XXXXXXXX isr=XX,XX data=<16 hex>\n"   (one line)
# (caps = the cfg_type of each virtio capability in list order, one hex
# digit each; isr = two ISR reads: the first clears it) and exits with v = 0;
# a missing piece prints "virtio-pci: <what>" and exits with v = 1; no
# completion in time, v = 2.

        .include "common.inc"
        .set CONFIG_ADDRESS, 0xCF8
        .set CONFIG_DATA,    0xCFC
        .set QSIZE,          8
        .set DESC,           0x100000
        .set AVAIL,          0x101000
        .set USED,           0x102000
        .set HEADER,         0x103000
        .set DATA,           0x104000
        .set STATUSB,        0x105000
        # Where the walk leaves what it found (RAM, 8 bytes each).
        .set FOUND_ISR,      0x106000
        .set FOUND_MULT,     0x106008
        # struct virtio_pci_common_cfg (virtio 1.2, 4.1.4.3)
        .set CC_DFSELECT,    0x00
        .set CC_DF,          0x04
        .set CC_GFSELECT,    0x08
        .set CC_GF,          0x0C
        .set CC_STATUS,      0x14
        .set CC_Q_SELECT,    0x16
        .set CC_Q_SIZE,      0x18
        .set CC_Q_ENABLE,    0x1C
        .set CC_Q_NOFF,      0x1E
        .set CC_Q_DESCLO,    0x20
        .set CC_Q_DESCHI,    0x24
        .set CC_Q_AVAILLO,   0x28
        .set CC_Q_AVAILHI,   0x2C
        .set CC_Q_USEDLO,    0x30
        .set CC_Q_USEDHI,    0x34

        .code16
        .text
        .globl _start
_start:
        REAL_MODE_INIT
        .include "longmode.inc"         # ... continues at user_main, in ring 3

        .code64
# cfg_select: CONFIG_ADDRESS = enable | slot R12 | register ESI (bits 1:0 dropped). Clobbers EAX, EDX.
cfg_select:
        mov eax, r12d
        shl eax, 11
        mov edx, esi
        and edx, 0xFC
        or eax, edx
        or eax, 0x80000000
        mov dx, CONFIG_ADDRESS
        out dx, eax
        ret

# cfg_read8/16/32: EAX = the register at ESI, through the data port byte it sits at. Clobbers EDX.
cfg_read8:
        call cfg_select
        mov edx, esi
        and edx, 3
        add edx, CONFIG_DATA
        in al, dx
        movzx eax, al
        ret
cfg_read16:
        call cfg_select
        mov edx, esi
        and edx, 2
        add edx, CONFIG_DATA
        in ax, dx
        movzx eax, ax
        ret
cfg_read32:
        call cfg_select
        mov dx, CONFIG_DATA
        in eax, dx
        ret

user_main:
        # ---- configuration mechanism #1 is there ----
        mov dx, 0xCFB
        mov al, 1
        out dx, al
        mov dx, CONFIG_ADDRESS
        mov eax, 0x80000000
        out dx, eax
        in eax, dx
        lea rsi, [rip + e_conf1]
        cmp eax, 0x80000000
        jne fail

        # ---- 00:00.0 is a host bridge (class 0x0600, a word at 0x0A) ----
        xor r12d, r12d
        mov esi, 0x0A
        call cfg_read16
        lea rsi, [rip + e_bridge]
        cmp eax, 0x0600
        jne fail

        # ---- the first 1af4:1042 on bus 0 ----
        mov r12d, 1
find:
        xor esi, esi
        call cfg_read32
        cmp eax, 0x10421AF4
        je found
        inc r12d
        cmp r12d, 32
        jb find
        lea rsi, [rip + e_nodev]
        jmp fail
found:
        mov esi, 0x04                   # Command: Memory Space must be on
        call cfg_read16
        lea rsi, [rip + e_command]
        test eax, 2
        jz fail
        mov esi, 0x10                   # BAR 0, a 32-bit memory BAR
        call cfg_read32
        and eax, 0xFFFFFFF0
        mov r13d, eax

        # ---- the capability list: R14 = common, R15 = notify base, R8 = types seen ----
        xor r8d, r8d
        xor r14d, r14d
        xor r15d, r15d
        mov qword ptr [FOUND_ISR], 0
        mov esi, 0x34
        call cfg_read8
        mov ebp, eax
        mov ecx, 48                     # at most 48 capabilities (Linux's TTL)
caps:
        cmp ebp, 0x40
        jb caps_done
        and ebp, 0xFC
        mov esi, ebp
        call cfg_read8
        mov r9d, eax                    # cap_vndr
        lea esi, [rbp + 1]
        call cfg_read8
        mov r10d, eax                   # cap_next
        cmp r9d, 0x09
        jne caps_next
        lea esi, [rbp + 3]
        call cfg_read8
        mov r11d, eax                   # cfg_type
        shl r8d, 4
        or r8d, r11d
        lea esi, [rbp + 8]
        call cfg_read32                 # offset within the BAR
        lea rbx, [r13 + rax]
        cmp r11d, 1
        jne 1f
        mov r14, rbx
1:      cmp r11d, 2
        jne 2f
        mov r15, rbx
        lea esi, [rbp + 16]
        call cfg_read32                 # notify_off_multiplier
        mov [FOUND_MULT], rax
2:      cmp r11d, 3
        jne caps_next
        mov [FOUND_ISR], rbx
caps_next:
        mov ebp, r10d
        dec ecx
        jnz caps
caps_done:
        lea rsi, [rip + e_caps]
        test r14, r14
        jz fail
        test r15, r15
        jz fail
        cmp qword ptr [FOUND_ISR], 0
        je fail

        # ---- virtio 1.2, 3.1.1, through the common configuration ----
        mov byte ptr [r14 + CC_STATUS], 0               # reset
        movzx eax, byte ptr [r14 + CC_STATUS]
        lea rsi, [rip + e_reset]
        test eax, eax
        jnz fail
        mov byte ptr [r14 + CC_STATUS], 1               # ACKNOWLEDGE
        mov byte ptr [r14 + CC_STATUS], 3               # + DRIVER
        mov dword ptr [r14 + CC_DFSELECT], 1            # feature bits 32..63
        mov eax, [r14 + CC_DF]
        lea rsi, [rip + e_version1]
        test eax, 1                                     # VERSION_1 (bit 32)
        jz fail
        mov dword ptr [r14 + CC_GFSELECT], 1
        mov dword ptr [r14 + CC_GF], 1                  # accept VERSION_1 ...
        mov dword ptr [r14 + CC_GFSELECT], 0
        mov dword ptr [r14 + CC_GF], 0                  # ... and nothing else
        mov byte ptr [r14 + CC_STATUS], 11              # + FEATURES_OK
        movzx eax, byte ptr [r14 + CC_STATUS]
        lea rsi, [rip + e_features]
        test eax, 8
        jz fail
        mov word ptr [r14 + CC_Q_SELECT], 0
        movzx eax, word ptr [r14 + CC_Q_SIZE]           # the largest size, until we set one
        lea rsi, [rip + e_queue]
        cmp eax, QSIZE
        jb fail
        mov word ptr [r14 + CC_Q_SIZE], QSIZE
        mov dword ptr [r14 + CC_Q_DESCLO], DESC
        mov dword ptr [r14 + CC_Q_DESCHI], 0
        mov dword ptr [r14 + CC_Q_AVAILLO], AVAIL
        mov dword ptr [r14 + CC_Q_AVAILHI], 0
        mov dword ptr [r14 + CC_Q_USEDLO], USED
        mov dword ptr [r14 + CC_Q_USEDHI], 0
        movzx eax, word ptr [r14 + CC_Q_NOFF]           # notify address = base + off * multiplier
        imul rax, [FOUND_MULT]
        add r15, rax
        mov word ptr [r14 + CC_Q_ENABLE], 1
        mov byte ptr [r14 + CC_STATUS], 15              # + DRIVER_OK

        # ---- one request: header {IN, sector 0}, 512 bytes, status ----
        mov dword ptr [HEADER], 0
        mov dword ptr [HEADER + 4], 0
        mov qword ptr [HEADER + 8], 0
        mov byte ptr [STATUSB], 0xFF
        mov qword ptr [DESC + 0], HEADER
        mov dword ptr [DESC + 8], 16
        mov dword ptr [DESC + 12], 1 | (1 << 16)        # NEXT, next = 1
        mov qword ptr [DESC + 16], DATA
        mov dword ptr [DESC + 24], 512
        mov dword ptr [DESC + 28], 3 | (2 << 16)        # NEXT | WRITE, next = 2
        mov qword ptr [DESC + 32], STATUSB
        mov dword ptr [DESC + 40], 1
        mov dword ptr [DESC + 44], 2                    # WRITE
        mov word ptr [AVAIL + 4], 0
        mov word ptr [AVAIL + 2], 1
        mov word ptr [r15], 0                           # notify queue 0 (16 bits, as Linux's vp_notify)

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
        mov rax, [FOUND_ISR]
        movzx r9d, byte ptr [rax]                       # ISR: read and cleared
        movzx r10d, byte ptr [rax]                      # now 0
        mov eax, r12d
        PUTFIELD64 s_slot, 2
        mov eax, r13d
        PUTFIELD64 s_bar, 8
        mov eax, r8d
        PUTFIELD64 s_caps, 5
        mov rax, r15
        PUTFIELD64 s_notify, 8
        movzx eax, byte ptr [STATUSB]
        PUTFIELD64 s_status, 2
        movzx eax, word ptr [USED + 2]
        PUTFIELD64 s_used, 4
        mov eax, [USED + 8]
        PUTFIELD64 s_len, 8
        mov eax, r9d
        PUTFIELD64 s_isr, 2
        mov eax, r10d
        PUTFIELD64 s_comma, 2
        mov rax, [DATA]
        PUTFIELD64 s_data, 16
        lea rsi, [rip + s_nl]
        call puts64
        EXIT_VM 0

fail:
        lea rdi, [rip + s_fail]
        call putfail64
        EXIT_VM 1

s_slot:     .asciz "virtio-pci slot="
s_bar:      .asciz " bar="
s_caps:     .asciz " caps="
s_notify:   .asciz " notify="
s_status:   .asciz " status="
s_used:     .asciz " used="
s_len:      .asciz " len="
s_isr:      .asciz " isr="
s_comma:    .asciz ","
s_data:     .asciz " data="
s_nl:       .asciz "\n"
s_fail:     .asciz "virtio-pci: "
e_conf1:    .asciz "no configuration mechanism #1"
e_bridge:   .asciz "00:00.0 is not a host bridge"
e_nodev:    .asciz "no 1af4:1042 on bus 0"
e_command:  .asciz "Memory Space is off"
e_caps:     .asciz "a virtio capability is missing"
e_reset:    .asciz "status not 0 after reset"
e_version1: .asciz "VERSION_1 not offered"
e_features: .asciz "FEATURES_OK refused"
e_queue:    .asciz "queue 0 too small"
e_timeout:  .asciz "virtio-pci: no completion"
