# s3-resume — a multiboot v1 kernel that suspends the machine to RAM (ACPI S3)
# and is woken by the RTC alarm, as kvm-unit-tests' s3.flat does: it finds the
# FADT through the RSDP (scanning 0xE0000-0xFFFFF) and the XSDT, copies a
# real-mode stub to 0x1000 and puts its address in the FACS waking vector,
# enables the RTC wake (PM1_EN.RTC_EN), sets the RTC alarm to "every second"
# with B.AIE, clears a marker and writes SLP_TYP = 1 | SLP_EN to PM1a_CNT;
# then it sets the marker to 1 for as long as it keeps running.
# Prints "fadt pm1a_evt=XXXX pm1a_cnt=XXXX facs=XXXXXXXX", then "sleeping".
# The stub, entered in real mode at 0100:0000 after the wake, prints
# "resumed cs=XXXX marker=XXXXXXXX pm1_sts=XXXX" and exits through
# isa-debug-exit with v = the marker (0: the vCPU stopped at the sleep,
# status 1). "no FADT" or "no FACS": v = 2 (status 5).

        .intel_syntax noprefix

        .set MB_HEADER_MAGIC, 0x1BADB002
        .set MB_FLAGS,        0x0
        .set COM1_THR,        0x3F8
        .set DEBUG_EXIT,      0x501
        .set STUB,            0x1000            # waking vector: CS:IP = 0100:0000
        .set MARKER,          0x2000            # 0 before the sleep, 1 if the CPU went on
        .set PM1_EVT,         0x2004            # the PM1a ports, kept for the stub
        .set RTC_INDEX,       0x70
        .set RTC_DATA,        0x71

        .section .multiboot, "a"
        .align 4
        .long MB_HEADER_MAGIC, MB_FLAGS, -(MB_HEADER_MAGIC + MB_FLAGS)

        .text
        .code32
        .globl _start
_start:
        mov esp, offset stack_top
        # The RSDP: "RSD PTR " on a 16-byte boundary in the BIOS area.
        mov esi, 0xE0000
1:      cmp dword ptr [esi], 0x20445352         # "RSD "
        jne 2f
        cmp dword ptr [esi + 4], 0x20525450     # "PTR "
        je 3f
2:      add esi, 16
        cmp esi, 0x100000
        jb 1b
        jmp no_fadt
3:      mov esi, [esi + 24]                     # XSDT (below 4 GiB)
        mov ecx, [esi + 4]                      # its length
        lea edi, [esi + ecx]
        add esi, 36                             # its entries, 8 bytes each
4:      cmp esi, edi
        jae no_fadt
        mov ebx, [esi]
        add esi, 8
        cmp dword ptr [ebx], 0x50434146         # "FACP"
        jne 4b

        mov ebp, [ebx + 36]                     # FIRMWARE_CTRL: the FACS
        test ebp, ebp
        jz no_facs
        mov eax, [ebx + 56]                     # PM1a_EVT_BLK
        mov [PM1_EVT], eax
        mov esi, offset msg_fadt_evt
        call puts
        mov eax, [PM1_EVT]
        call puthex16
        mov esi, offset msg_fadt_cnt
        call puts
        mov eax, [ebx + 64]                     # PM1a_CNT_BLK
        call puthex16
        mov esi, offset msg_fadt_facs
        call puts
        mov eax, ebp
        call puthex32
        mov esi, offset msg_sleeping
        call puts

        # The stub to 0x1000, its address into the FACS waking vector.
        mov esi, offset stub_start
        mov edi, STUB
        mov ecx, offset STUB_SIZE
        rep movsb
        mov dword ptr [ebp + 12], STUB

        # Wake on the RTC: PM1_EN.RTC_EN, the alarm at every second, B.AIE.
        mov edx, [PM1_EVT]
        add edx, 2
        mov ax, 0x400
        out dx, ax
        mov al, 0x01                            # seconds alarm: don't care
        out RTC_INDEX, al
        mov al, 0xC0
        out RTC_DATA, al
        mov al, 0x03                            # minutes alarm
        out RTC_INDEX, al
        mov al, 0xC0
        out RTC_DATA, al
        mov al, 0x05                            # hours alarm
        out RTC_INDEX, al
        mov al, 0xC0
        out RTC_DATA, al
        mov al, 0x0B
        out RTC_INDEX, al
        in al, RTC_DATA
        or al, 0x20                             # AIE
        mov ah, al
        mov al, 0x0B
        out RTC_INDEX, al
        mov al, ah
        out RTC_DATA, al

        mov dword ptr [MARKER], 0
        mov edx, [ebx + 64]
        mov ax, 0x2400                          # SLP_TYP = 1 (S3) | SLP_EN
        out dx, ax
5:      mov dword ptr [MARKER], 1               # only if the CPU did not stop
        jmp 5b

no_fadt:
        mov esi, offset msg_no_fadt
        jmp fail
no_facs:
        mov esi, offset msg_no_facs
fail:   call puts
        mov dx, DEBUG_EXIT
        mov al, 2
        out dx, al
6:      hlt
        jmp 6b

# puts: print the NUL-terminated string at ESI. Clobbers: EAX, DX, ESI.
puts:
        mov dx, COM1_THR
7:      lodsb
        test al, al
        jz 8f
        out dx, al
        jmp 7b
8:      ret

# puthex32 / puthex16: print EAX as 8, or AX as 4, hex digits. Clobber: ECX, DX.
puthex32:
        mov ecx, 8
        jmp 9f
puthex16:
        mov ecx, 4
        rol eax, 16
9:      push eax
        mov dx, COM1_THR
10:     rol eax, 4
        push eax
        and al, 0x0F
        add al, '0'
        cmp al, '9'
        jbe 11f
        add al, 'A' - '9' - 1
11:     out dx, al
        pop eax
        loop 10b
        pop eax
        ret

# The stub: real mode, copied to 0x1000 and entered at 0100:0000 with the
# other segments 0. Position-independent; its strings follow it.
        .code16
stub_start:
        mov dx, COM1_THR
        mov si, STUB + (stub_msg - stub_start)
        call stub_puts
        mov ax, cs
        call stub_hex16
        mov si, STUB + (stub_msg_marker - stub_start)
        call stub_puts
        mov ax, [MARKER + 2]
        call stub_hex16
        mov ax, [MARKER]
        call stub_hex16
        mov si, STUB + (stub_msg_sts - stub_start)
        call stub_puts
        push dx
        mov dx, [PM1_EVT]
        in ax, dx                               # PM1_STS
        pop dx
        call stub_hex16
        mov al, '\n'
        out dx, al
        mov ax, [MARKER]
        mov dx, DEBUG_EXIT
        out dx, al
12:     hlt
        jmp 12b
stub_puts:                                      # DS:SI (DS = 0), to port DX
        lodsb
        test al, al
        jz 13f
        out dx, al
        jmp stub_puts
13:     ret
stub_hex16:                                     # AX as 4 hex digits, to port DX
        mov cx, 4
        mov bx, ax
14:     rol bx, 4
        mov al, bl
        and al, 0x0F
        add al, '0'
        cmp al, '9'
        jbe 15f
        add al, 'A' - '9' - 1
15:     out dx, al
        loop 14b
        ret
stub_msg:        .asciz "resumed cs="
stub_msg_marker: .asciz " marker="
stub_msg_sts:    .asciz " pm1_sts="
stub_end:
        .set STUB_SIZE, stub_end - stub_start

        .code32
        .section .rodata
msg_fadt_evt:  .asciz "fadt pm1a_evt="
msg_fadt_cnt:  .asciz " pm1a_cnt="
msg_fadt_facs: .asciz " facs="
msg_sleeping:  .asciz "\nsleeping\n"
msg_no_fadt:   .asciz "no FADT\n"
msg_no_facs:   .asciz "no FACS\n"

        .bss
        .align 16
stack:  .skip 4096
stack_top:
