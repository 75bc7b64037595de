# counter — a multiboot v1 kernel (32-bit ELF at 0x400000) that counts for
# ever and keeps dirtying memory, to test and measure pause, snapshots and
# live migration under tsvmm and QEMU alike:
#
#   tsvmm run -k counter.elf -p "pages=16 every=4096"
#   qemu-system-x86_64 -kernel counter.elf -append "pages=16" -serial stdio \
#       -device isa-debug-exit,iobase=0x501,iosize=2 ...
#
# Step N (from 0) writes N into slot N mod P: the first 32-bit word of page
# N mod P of a buffer of P pages at 8 MiB (4 MiB above the kernel). Before
# writing it checks that the slot holds N - P (0 on the first pass), so a
# page that a snapshot or a migration lost or rolled back shows at once as
#   "counter BAD n=<N> slot=<S> found=<X>"  and debug-exit v = 1 (status 3).
# Every K steps it prints "count <N>" (N = steps done), or with `ticks`
# "count <N> ticks <T>", T the PIT's 100 Hz IRQ0 interrupts taken so far.
#
# Command line (after the file name, space-separated, numbers decimal or 0x):
#   pages=P   buffer pages (default 4096 = 16 MiB)
#   every=K   steps per line (default 8192: ~100 ms per line where guest
#             ring 0 is emulated at ~1 µs per instruction)
#   limit=M   stop after M steps: "counter done n=<M>", debug-exit v = 0 (status 1)
#   ticks     PIT channel 0 at 100 Hz through the 8259, interrupts on
#   poweroff  at the limit, power off through tsvmm's ACPI sleep control
#             register (port 0x600: SLP_TYP 5, SLP_EN) before the debug-exit
#   panic     at the limit, report a panic through pvpanic (port 0x505,
#             QEMU's too) before the debug-exit
#   disk      before each count line, write its N into a sector of the
#             virtio-blk disk at tsvmm's first virtio-mmio window (0xD1000000,
#             so tsvmm only): line L (from 0) fills sector L mod the disk's
#             sectors with N as 64 little-endian u64s, and waits for the write
#             to complete (polled, interrupts stay off for the disk)
# (The debug-exit still follows, for a VMM that has neither device.)
# It first prints "counter pages=P every=K limit=M ticks=0|1" (limit=0: none).
# A bad argument, or a buffer larger than RAM: one line, v = 2 (status 5).
# A CPU exception: "counter exception <vector>", v = 3 (status 7).
# No disk, or a write that fails or never completes: "counter disk: <what>",
# v = 4 (status 9).
# It polls COM1's LSR before each byte, which QEMU's UART needs.

        .intel_syntax noprefix
        .code32

        .set MB_HEADER_MAGIC, 0x1BADB002
        .set MB_LOADER_MAGIC, 0x2BADB002
        .set MB_FLAGS,        0x2               # bit 1: memory information required
        .set MBI_FLAGS,       0
        .set MBI_MEM_UPPER,   8                 # KiB above 1 MiB
        .set MBI_CMDLINE,     16
        .set MBI_HAS_MEM,     1
        .set MBI_HAS_CMDLINE, 4

        .set DEBUG_EXIT,      0x501
        .set EXIT_DONE,       0
        .set EXIT_BAD_SLOT,   1
        .set EXIT_BAD_INPUT,  2
        .set EXIT_EXCEPTION,  3
        .set EXIT_DISK,       4
        .set ACPI_SLEEP_CONTROL, 0x600
        .set ACPI_SLEEP_S5,   (5 << 2) | 0x20   # SLP_TYP = 5 (soft off), SLP_EN
        .set PVPANIC,         0x505
        .set PVPANIC_PANICKED, 1

        .set PAGE_SIZE,       4096
        .set BUFFER,          0x800000          # 8 MiB
        .set MAX_PAGES,       (0x100000000 - BUFFER) / PAGE_SIZE - 1
        .set DEFAULT_PAGES,   4096
        .set DEFAULT_EVERY,   8192

        .set CODE_SELECTOR,   0x08
        .set DATA_SELECTOR,   0x10
        .set IDT_ENTRIES,     0x30              # exceptions, then the 16 IRQs of the 8259 pair
        .set IRQ_BASE,        0x20              # the master 8259's vector base
        .set STUB_SIZE,       8

        .set PIC1_CMD,        0x20
        .set PIC1_DATA,       0x21
        .set PIC2_CMD,        0xA0
        .set PIC2_DATA,       0xA1
        .set PIC_EOI,         0x20
        .set PIT_CH0,         0x40
        .set PIT_MODE,        0x43
        .set PIT_100HZ,       11932             # 1193182 Hz / 100

        # virtio-mmio (version 2 registers) and virtio-blk, virtio 1.2 4.2.2 and 5.2.
        .set VIRTIO_MMIO,      0xD1000000       # tsvmm's first virtio-mmio window
        .set VIO_MAGIC,        0x000
        .set VIO_VERSION,      0x004
        .set VIO_DEVICE_ID,    0x008
        .set VIO_DEV_FEAT,     0x010
        .set VIO_DEV_FEAT_SEL, 0x014
        .set VIO_DRV_FEAT,     0x020
        .set VIO_DRV_FEAT_SEL, 0x024
        .set VIO_QUEUE_SEL,    0x030
        .set VIO_QUEUE_MAX,    0x034
        .set VIO_QUEUE_NUM,    0x038
        .set VIO_QUEUE_READY,  0x044
        .set VIO_NOTIFY,       0x050
        .set VIO_STATUS,       0x070
        .set VIO_DESC_LO,      0x080
        .set VIO_DESC_HI,      0x084
        .set VIO_AVAIL_LO,     0x090
        .set VIO_AVAIL_HI,     0x094
        .set VIO_USED_LO,      0x0A0
        .set VIO_USED_HI,      0x0A4
        .set VIO_CONFIG,       0x100            # virtio-blk: capacity in sectors (u64)
        .set VIRTIO_ID_BLOCK,  2
        .set BLK_T_OUT,        1
        .set DISK_QSIZE,       4                # one request at a time; a power of two
        .set DISK_WAIT,        0x80000000       # polls before a write counts as lost
        # One page holds the queue and the request (offsets in disk_page).
        .set DISK_DESC,        0x000
        .set DISK_AVAIL,       0x100
        .set DISK_USED,        0x200
        .set DISK_HEADER,      0x300
        .set DISK_STATUS,      0x320
        .set DISK_DATA,        0x400

        .section .multiboot, "a"
        .align 4
        .long MB_HEADER_MAGIC, MB_FLAGS, -(MB_HEADER_MAGIC + MB_FLAGS)

        .text
        .globl _start
_start:
        mov esp, offset stack_top
        mov ebp, ebx                            # the multiboot information
        mov ecx, eax                            # the loader's magic, checked once we can print
        # The loader's GDT may be gone: interrupts and exceptions need ours.
        lgdt [gdt_descriptor]
        ljmp CODE_SELECTOR, offset 1f
1:      mov ax, DATA_SELECTOR
        mov ds, ax
        mov es, ax
        mov fs, ax
        mov gs, ax
        mov ss, ax
        call setup_idt
        cmp ecx, MB_LOADER_MAGIC
        jne bad_magic

        test dword ptr [ebp + MBI_FLAGS], MBI_HAS_CMDLINE
        jz 2f
        mov esi, [ebp + MBI_CMDLINE]
        call parse_args
2:      call check_buffer_fits
        call print_settings
        cmp dword ptr [disk_on], 0
        je 4f
        call disk_setup
4:      call zero_slots
        cmp dword ptr [ticks_on], 0
        je 3f
        call start_ticks
3:      xor esi, esi                            # EDI:ESI = N
        xor edi, edi
        mov ebx, BUFFER                         # the slot of step N

# One chunk: min(every, limit - N) steps, then a line when it was a whole `every`.
chunk:
        mov ebp, [every]
        mov eax, [limit]
        test eax, eax
        jz 2f
        xor edx, edx                            # EDX:EAX = limit - N (never negative)
        sub eax, esi
        sbb edx, edi
        jnz 2f
        cmp eax, ebp
        jae 2f
        mov ebp, eax
        test ebp, ebp
        jz finished
2:      mov [chunk_steps], ebp

step:
        mov ecx, esi                            # what the slot must hold: N - P, or 0 on the first pass
        sub ecx, [pages]
        and ecx, [lag_mask]
        cmp [ebx], ecx
        jne bad_slot
        mov [ebx], esi
        add esi, 1
        adc edi, 0
        add ebx, PAGE_SIZE
        cmp ebx, [buffer_end]
        jae wrap
stepped:
        dec ebp
        jnz step

        mov eax, [chunk_steps]
        cmp eax, [every]
        jne chunk                               # cut short by the limit: no line
        call print_count
        jmp chunk

wrap:
        mov ebx, BUFFER
        mov dword ptr [lag_mask], -1            # from now on every slot holds N - P
        jmp stepped

finished:
        push esi
        mov esi, offset msg_done
        call puts32
        pop esi
        mov eax, esi
        mov edx, edi
        call putdec64
        mov al, '\n'
        call putc32
        mov eax, [end_with]
        test eax, eax
        jz 1f
        mov edx, eax
        shr edx, 16                             # end_with = port << 16 | value
        out dx, al
1:      mov al, EXIT_DONE
        jmp exit_vm

print_count:
        cmp dword ptr [disk_on], 0
        je 2f
        call disk_write
2:      push eax
        push edx
        push esi
        mov esi, offset msg_count
        call puts32
        pop esi
        mov eax, esi
        mov edx, edi
        call putdec64
        cmp dword ptr [ticks_on], 0
        je 1f
        push esi
        mov esi, offset msg_ticks
        call puts32
        pop esi
        mov eax, [ticks]
        call putdec32
1:      mov al, '\n'
        call putc32
        pop edx
        pop eax
        ret

bad_slot:
        cli
        mov ecx, [ebx]                          # what the slot held
        push esi
        mov esi, offset msg_bad_n
        call puts32
        pop esi
        mov eax, esi
        mov edx, edi
        call putdec64
        mov esi, offset msg_bad_slot
        call puts32
        mov eax, ebx
        sub eax, BUFFER
        shr eax, 12
        call putdec32
        mov esi, offset msg_bad_found
        call puts32
        mov eax, ecx
        call putdec32
        mov al, '\n'
        call putc32
        mov al, EXIT_BAD_SLOT
        jmp exit_vm

exit_vm:
        mov dx, DEBUG_EXIT
        out dx, al
halt:   cli
        hlt
        jmp halt

bad_magic:
        mov esi, offset msg_bad_magic
        call puts32
        mov al, EXIT_BAD_INPUT
        jmp exit_vm

# parse_args: read the settings from the command line at ESI. Tokens that are
# none of ours (the file name first) are skipped.
parse_args:
        cmp byte ptr [esi], ' '
        jne 1f
        inc esi
        jmp parse_args
1:      cmp byte ptr [esi], 0
        je 9f
        mov [token], esi
        mov edi, offset key_pages
        call match_key
        jne 2f
        call parse_number
        jc bad_argument
        test eax, eax
        jz bad_argument
        cmp eax, MAX_PAGES
        ja bad_argument
        mov [pages], eax
        jmp parse_args
2:      mov edi, offset key_every
        call match_key
        jne 3f
        call parse_number
        jc bad_argument
        test eax, eax
        jz bad_argument
        mov [every], eax
        jmp parse_args
3:      mov edi, offset key_limit
        call match_key
        jne 4f
        call parse_number
        jc bad_argument
        test eax, eax
        jz bad_argument
        mov [limit], eax
        jmp parse_args
4:      mov edi, offset key_ticks
        call match_key
        jne 6f
        call at_token_end
        jne 6f
        mov dword ptr [ticks_on], 1
        jmp parse_args
6:      mov edi, offset key_poweroff
        call match_key
        jne 7f
        call at_token_end
        jne 7f
        mov dword ptr [end_with], (ACPI_SLEEP_CONTROL << 16) | ACPI_SLEEP_S5
        jmp parse_args
7:      mov edi, offset key_panic
        call match_key
        jne 8f
        call at_token_end
        jne 8f
        mov dword ptr [end_with], (PVPANIC << 16) | PVPANIC_PANICKED
        jmp parse_args
8:      mov edi, offset key_disk
        call match_key
        jne 5f
        call at_token_end
        jne 5f
        mov dword ptr [disk_on], 1
        jmp parse_args
5:      call at_token_end                       # not ours: skip it
        je parse_args
        inc esi
        jmp 5b
9:      ret

# match_key: does the text at ESI start with the NUL-terminated key at EDI?
# Yes: ZF = 1 and ESI is past the key. No: ZF = 0, ESI unchanged.
match_key:
        push esi
        push edi
1:      mov al, [edi]
        test al, al
        jz 2f
        cmp al, [esi]
        jne 3f
        inc esi
        inc edi
        jmp 1b
2:      pop edi
        add esp, 4                              # keep the advanced ESI
        cmp al, al
        ret
3:      pop edi
        pop esi
        ret

# at_token_end: ZF = 1 when [ESI] is a space or the end of the line.
at_token_end:
        cmp byte ptr [esi], ' '
        je 1f
        cmp byte ptr [esi], 0
1:      ret

# parse_number: EAX = the unsigned 32-bit number at ESI (decimal, or hex
# after 0x) that ends the token; ESI past it. CF = 1 when it is not one.
parse_number:
        push ebx
        push ecx
        push edx
        push edi
        xor eax, eax
        xor edi, edi                            # digits seen
        mov ebx, 10
        cmp word ptr [esi], 0x7830              # "0x"
        jne 1f
        mov ebx, 16
        add esi, 2
1:      call at_token_end
        je 4f
        movzx ecx, byte ptr [esi]
        lea edx, [ecx - '0']
        cmp edx, 9
        jbe 2f
        or ecx, 0x20                            # a-f, A-F
        lea edx, [ecx - 'a' + 10]
        cmp edx, 10
        jb 5f
2:      cmp edx, ebx
        jae 5f
        mov ecx, edx
        mul ebx
        jc 5f                                   # the product overflowed 32 bits
        add eax, ecx
        jc 5f
        inc edi
        inc esi
        jmp 1b
4:      test edi, edi
        jz 5f
        clc
        jmp 6f
5:      stc
6:      pop edi
        pop edx
        pop ecx
        pop ebx
        ret

bad_argument:
        mov esi, offset msg_bad_argument
        call puts32
        mov esi, [token]
1:      call at_token_end
        je 2f
        lodsb
        call putc32
        jmp 1b
2:      mov al, '\n'
        call putc32
        mov al, EXIT_BAD_INPUT
        jmp exit_vm

# check_buffer_fits: the buffer must end within the RAM above 1 MiB that the
# loader reported (mem_upper, in KiB).
check_buffer_fits:
        mov eax, [pages]
        shl eax, 12
        add eax, BUFFER
        mov [buffer_end], eax
        test dword ptr [ebp + MBI_FLAGS], MBI_HAS_MEM
        jz 1f
        mov eax, [pages]
        shl eax, 2                              # KiB
        add eax, (BUFFER - 0x100000) / 1024
        cmp eax, [ebp + MBI_MEM_UPPER]
        ja 2f
1:      ret
2:      mov esi, offset msg_no_room
        call puts32
        mov eax, [pages]
        call putdec32
        mov esi, offset msg_no_room_ram
        call puts32
        mov eax, [ebp + MBI_MEM_UPPER]
        shr eax, 10
        add eax, 1
        call putdec32
        mov esi, offset msg_no_room_end
        call puts32
        mov al, EXIT_BAD_INPUT
        jmp exit_vm

print_settings:
        mov esi, offset msg_pages
        call puts32
        mov eax, [pages]
        call putdec32
        mov esi, offset msg_every
        call puts32
        mov eax, [every]
        call putdec32
        mov esi, offset msg_limit
        call puts32
        mov eax, [limit]
        call putdec32
        mov esi, offset msg_ticks_on
        call puts32
        mov eax, [ticks_on]
        call putdec32
        mov al, '\n'
        call putc32
        ret

# disk_setup: the driver initialisation of virtio 1.2 3.1.1 for the
# virtio-blk device at VIRTIO_MMIO (no feature but VERSION_1), queue 0 of
# DISK_QSIZE entries, and the request's three descriptors, which never change:
# the header, the sector's data, the status byte the device writes.
disk_setup:
        mov edi, VIRTIO_MMIO
        mov esi, offset msg_disk_none
        cmp dword ptr [edi + VIO_MAGIC], 0x74726976     # "virt"
        jne disk_failed
        cmp dword ptr [edi + VIO_VERSION], 2
        jne disk_failed
        cmp dword ptr [edi + VIO_DEVICE_ID], VIRTIO_ID_BLOCK
        jne disk_failed
        mov esi, offset msg_disk_refused
        mov dword ptr [edi + VIO_STATUS], 0             # reset
        mov dword ptr [edi + VIO_STATUS], 1             # ACKNOWLEDGE
        mov dword ptr [edi + VIO_STATUS], 3             # + DRIVER
        mov dword ptr [edi + VIO_DEV_FEAT_SEL], 1       # feature bits 32..63
        test dword ptr [edi + VIO_DEV_FEAT], 1          # VERSION_1 (bit 32) offered?
        jz disk_failed
        mov dword ptr [edi + VIO_DRV_FEAT_SEL], 1
        mov dword ptr [edi + VIO_DRV_FEAT], 1           # accept VERSION_1 only
        mov dword ptr [edi + VIO_DRV_FEAT_SEL], 0
        mov dword ptr [edi + VIO_DRV_FEAT], 0
        mov dword ptr [edi + VIO_STATUS], 11            # + FEATURES_OK
        test dword ptr [edi + VIO_STATUS], 8            # still set: accepted
        jz disk_failed
        mov dword ptr [edi + VIO_QUEUE_SEL], 0
        cmp dword ptr [edi + VIO_QUEUE_MAX], DISK_QSIZE
        jb disk_failed
        mov dword ptr [edi + VIO_QUEUE_NUM], DISK_QSIZE
        mov dword ptr [edi + VIO_DESC_LO], offset disk_page + DISK_DESC
        mov dword ptr [edi + VIO_DESC_HI], 0
        mov dword ptr [edi + VIO_AVAIL_LO], offset disk_page + DISK_AVAIL
        mov dword ptr [edi + VIO_AVAIL_HI], 0
        mov dword ptr [edi + VIO_USED_LO], offset disk_page + DISK_USED
        mov dword ptr [edi + VIO_USED_HI], 0
        mov dword ptr [edi + VIO_QUEUE_READY], 1
        mov dword ptr [edi + VIO_STATUS], 15            # + DRIVER_OK
        mov eax, [edi + VIO_CONFIG]                     # capacity, low half
        cmp dword ptr [edi + VIO_CONFIG + 4], 0
        je 1f
        mov eax, 0xFFFFFFFF                             # a disk of 2 TiB or more: the first 2^32 - 1 sectors
1:      mov esi, offset msg_disk_empty
        test eax, eax
        jz disk_failed
        mov [disk_sectors], eax
        # Descriptors {addr u64, len u32, flags u16 (1 NEXT, 2 WRITE), next u16}.
        mov ebx, offset disk_page
        mov dword ptr [ebx + DISK_DESC + 0], offset disk_page + DISK_HEADER
        mov dword ptr [ebx + DISK_DESC + 4], 0
        mov dword ptr [ebx + DISK_DESC + 8], 16
        mov dword ptr [ebx + DISK_DESC + 12], 1 | (1 << 16)     # NEXT, next = 1
        mov dword ptr [ebx + DISK_DESC + 16], offset disk_page + DISK_DATA
        mov dword ptr [ebx + DISK_DESC + 20], 0
        mov dword ptr [ebx + DISK_DESC + 24], 512
        mov dword ptr [ebx + DISK_DESC + 28], 1 | (2 << 16)     # NEXT, next = 2 (the device reads it)
        mov dword ptr [ebx + DISK_DESC + 32], offset disk_page + DISK_STATUS
        mov dword ptr [ebx + DISK_DESC + 36], 0
        mov dword ptr [ebx + DISK_DESC + 40], 1
        mov dword ptr [ebx + DISK_DESC + 44], 2                 # WRITE
        ret

# disk_write: write N (EDI:ESI) into sector (line mod sectors) and wait for
# the device to complete it. Keeps every register.
disk_write:
        pushad
        mov eax, [disk_line]
        xor edx, edx
        div dword ptr [disk_sectors]                    # EDX = the sector
        inc dword ptr [disk_line]
        mov ebx, offset disk_page
        mov dword ptr [ebx + DISK_HEADER + 0], BLK_T_OUT
        mov dword ptr [ebx + DISK_HEADER + 4], 0
        mov [ebx + DISK_HEADER + 8], edx
        mov dword ptr [ebx + DISK_HEADER + 12], 0
        lea edx, [ebx + DISK_DATA]
        mov ecx, 512 / 8
1:      mov [edx], esi
        mov [edx + 4], edi
        add edx, 8
        loop 1b
        mov byte ptr [ebx + DISK_STATUS], 0xFF          # the device overwrites it
        # avail.ring[idx mod size] = head 0, then avail.idx + 1 (x86 keeps the order), then notify.
        movzx eax, word ptr [ebx + DISK_AVAIL + 2]
        mov ecx, eax
        and ecx, DISK_QSIZE - 1
        mov word ptr [ebx + DISK_AVAIL + 4 + ecx * 2], 0
        inc eax
        mov [ebx + DISK_AVAIL + 2], ax
        mov dword ptr [VIRTIO_MMIO + VIO_NOTIFY], 0
        mov esi, offset msg_disk_lost
        mov ecx, DISK_WAIT
2:      cmp [ebx + DISK_USED + 2], ax
        je 3f
        pause
        dec ecx
        jnz 2b
        jmp disk_failed
3:      mov esi, offset msg_disk_error
        cmp byte ptr [ebx + DISK_STATUS], 0
        jne disk_failed
        popad
        ret

# disk_failed: "counter disk: <ESI>", v = 4.
disk_failed:
        cli
        push esi
        mov esi, offset msg_disk
        call puts32
        pop esi
        call puts32
        mov al, '\n'
        call putc32
        mov al, EXIT_DISK
        jmp exit_vm

# zero_slots: RAM need not be zero (a BIOS ran before us under QEMU): clear
# the word that each step checks.
zero_slots:
        mov eax, BUFFER
1:      mov dword ptr [eax], 0
        add eax, PAGE_SIZE
        cmp eax, [buffer_end]
        jb 1b
        ret

# start_ticks: the 8259 pair at vectors 0x20/0x28 with only IRQ0 unmasked,
# PIT channel 0 in mode 2 at 100 Hz, interrupts on.
start_ticks:
        mov al, 0x11                            # ICW1: edge, cascade, ICW4 follows
        out PIC1_CMD, al
        out PIC2_CMD, al
        mov al, IRQ_BASE                        # ICW2: vector bases
        out PIC1_DATA, al
        mov al, IRQ_BASE + 8
        out PIC2_DATA, al
        mov al, 0x04                            # ICW3: the slave on IRQ2
        out PIC1_DATA, al
        mov al, 0x02
        out PIC2_DATA, al
        mov al, 0x01                            # ICW4: 8086 mode
        out PIC1_DATA, al
        out PIC2_DATA, al
        mov al, 0xFE                            # OCW1: IRQ0 only
        out PIC1_DATA, al
        mov al, 0xFF
        out PIC2_DATA, al
        mov al, 0x34                            # channel 0, lobyte/hibyte, mode 2
        out PIT_MODE, al
        mov al, PIT_100HZ & 0xFF
        out PIT_CH0, al
        mov al, PIT_100HZ >> 8
        out PIT_CH0, al
        sti
        ret

# setup_idt: vectors 0-31 to their exception stubs, IRQ0 to the tick
# counter, the other IRQs (masked; only a spurious one can come) to an iret.
setup_idt:
        push eax
        push ecx
        push edx
        push edi
        mov edi, offset idt
        xor ecx, ecx
1:      mov eax, ecx
        shl eax, 3                              # STUB_SIZE
        add eax, offset exception_stubs
        cmp ecx, IRQ_BASE
        jb 2f
        mov eax, offset ignore_irq
        jne 2f
        mov eax, offset timer_irq
2:      mov edx, eax                            # a 32-bit interrupt gate, DPL 0
        and eax, 0xFFFF
        or eax, CODE_SELECTOR << 16
        mov [edi], eax
        and edx, 0xFFFF0000
        or edx, 0x8E00
        mov [edi + 4], edx
        add edi, 8
        inc ecx
        cmp ecx, IDT_ENTRIES
        jb 1b
        lidt [idt_descriptor]
        pop edi
        pop edx
        pop ecx
        pop eax
        ret

# The interrupt handlers return without `iret`: KVM's instruction emulator,
# which runs all guest ring-0 code on a PVM host, emulates `iret` in real mode
# only. Same privilege level, so the frame is EIP, CS, EFLAGS: turn it into
# EFLAGS, EIP and leave through `popfd; ret` (an IRQ taken between the two
# nests on the stack and returns to the `ret`).
timer_irq:
        push eax
        inc dword ptr [ticks]
        mov al, PIC_EOI
        out PIC1_CMD, al
        pop eax
ignore_irq:
        push eax
        mov eax, [esp + 4]                      # EIP
        xchg eax, [esp + 12]                    # EFLAGS' slot <- EIP; EAX = EFLAGS
        mov [esp + 8], eax                      # CS' slot <- EFLAGS
        pop eax
        add esp, 4
        popfd
        ret

        .balign STUB_SIZE
exception_stubs:
        .set vector, 0
        .rept IRQ_BASE
        .balign STUB_SIZE
        push vector
        jmp exception
        .set vector, vector + 1
        .endr

exception:
        cli
        mov esi, offset msg_exception
        call puts32
        pop eax
        call putdec32
        mov al, '\n'
        call putc32
        mov al, EXIT_EXCEPTION
        jmp exit_vm

        .include "serial32.inc"

        .data
        .align 4
pages:       .long DEFAULT_PAGES
every:       .long DEFAULT_EVERY
limit:       .long 0                            # 0: none
ticks_on:    .long 0
end_with:    .long 0                            # at the limit: port << 16 | value to write first (0: none)
lag_mask:    .long 0                            # all ones once the first pass is over
ticks:       .long 0
buffer_end:  .long 0
chunk_steps: .long 0
token:       .long 0
disk_on:     .long 0
disk_sectors: .long 0
disk_line:   .long 0                            # count lines written to the disk so far

        .align 8
gdt:    .quad 0
        .quad 0x00CF9A000000FFFF                # 0x08: flat 32-bit code
        .quad 0x00CF92000000FFFF                # 0x10: flat data
gdt_end:
gdt_descriptor:
        .word gdt_end - gdt - 1
        .long gdt
idt_descriptor:
        .word IDT_ENTRIES * 8 - 1
        .long idt

        .section .rodata
key_pages:        .asciz "pages="
key_every:        .asciz "every="
key_limit:        .asciz "limit="
key_ticks:        .asciz "ticks"
key_poweroff:     .asciz "poweroff"
key_panic:        .asciz "panic"
key_disk:         .asciz "disk"
msg_pages:        .asciz "counter pages="
msg_every:        .asciz " every="
msg_limit:        .asciz " limit="
msg_ticks_on:     .asciz " ticks="
msg_count:        .asciz "count "
msg_ticks:        .asciz " ticks "
msg_done:         .asciz "counter done n="
msg_bad_n:        .asciz "counter BAD n="
msg_bad_slot:     .asciz " slot="
msg_bad_found:    .asciz " found="
msg_bad_magic:    .asciz "counter: not started by a multiboot loader (EAX is not 0x2BADB002)\n"
msg_bad_argument: .asciz "counter: bad argument "
msg_no_room:      .asciz "counter: pages="
msg_no_room_ram:  .asciz " does not fit in the guest's RAM ("
msg_no_room_end:  .asciz " MiB; the buffer starts at 8 MiB)\n"
msg_exception:    .asciz "counter exception "
msg_disk:         .asciz "counter disk: "
msg_disk_none:    .asciz "no virtio-blk device at 0xD1000000"
msg_disk_refused: .asciz "the device refused the driver's setup"
msg_disk_empty:   .asciz "the disk has no sectors"
msg_disk_lost:    .asciz "a write never completed"
msg_disk_error:   .asciz "a write failed"

        .bss
        .align 4096
disk_page: .skip 4096                           # the disk's queue and request (DISK_* offsets)
        .align 16
idt:    .skip IDT_ENTRIES * 8
stack:  .skip 4096
stack_top:
