# mbinfo — a multiboot v1 kernel (32-bit ELF at 0x400000) that reports what
# its loader gave it, the way kvm-unit-tests' start-up reads it:
#   "multiboot eax=ok" (EAX == 0x2BADB002) or "multiboot eax=bad"
#   "mem_lower=<KiB> mem_upper=<KiB>"                  (decimal)
#   "cmdline=<the command line>"
#   "mmap <base> <length> <type>" for each memory map entry (hex)
#   "module <size in hex> <its string>" for each module
# then it exits through isa-debug-exit with v = 0 (status 1), or v = 2
# (status 5) when EAX was wrong.

        .intel_syntax noprefix
        .code32

        .set MB_HEADER_MAGIC, 0x1BADB002
        .set MB_LOADER_MAGIC, 0x2BADB002
        .set MB_FLAGS,        0x2              # bit 1: memory information required
        .set COM1_THR,        0x3F8
        .set DEBUG_EXIT,      0x501
        .set MAX_MMAP,        32               # entries printed at most: the walk is bounded
        .set MAX_MODULES,     8

        # Multiboot information fields (spec 0.6.96, 3.3).
        .set MBI_FLAGS,       0
        .set MBI_MEM_LOWER,   4
        .set MBI_MEM_UPPER,   8
        .set MBI_CMDLINE,     16
        .set MBI_MODS_COUNT,  20
        .set MBI_MODS_ADDR,   24
        .set MBI_MMAP_LENGTH, 44
        .set MBI_MMAP_ADDR,   48

        .section .multiboot, "a"
        .align 4
        .long MB_HEADER_MAGIC, MB_FLAGS, -(MB_HEADER_MAGIC + MB_FLAGS)

        .text
        .globl _start
_start:
        mov esp, offset stack_top
        mov ebp, ebx                    # the multiboot information, kept for the whole run
        cmp eax, MB_LOADER_MAGIC
        jne bad_magic
        mov esi, offset msg_magic_ok
        call puts

        test dword ptr [ebp + MBI_FLAGS], 1
        jz 1f
        mov esi, offset msg_lower
        call puts
        mov eax, [ebp + MBI_MEM_LOWER]
        call putdec
        mov esi, offset msg_upper
        call puts
        mov eax, [ebp + MBI_MEM_UPPER]
        call putdec
        call newline
1:
        test dword ptr [ebp + MBI_FLAGS], 4
        jz 1f
        mov esi, offset msg_cmdline
        call puts
        mov esi, [ebp + MBI_CMDLINE]
        call puts
        call newline
1:
        test dword ptr [ebp + MBI_FLAGS], 0x40
        jz mmap_done
        mov esi, [ebp + MBI_MMAP_ADDR]  # each entry: size, base (8), length (8), type
        mov edi, esi
        add edi, [ebp + MBI_MMAP_LENGTH]
        mov ecx, MAX_MMAP
mmap_next:
        cmp esi, edi
        jae mmap_done
        push esi
        mov esi, offset msg_mmap
        call puts
        pop esi
        mov eax, [esi + 8]              # base, high half then low
        call puthex
        mov eax, [esi + 4]
        call puthex
        call space
        mov eax, [esi + 16]             # length
        call puthex
        mov eax, [esi + 12]
        call puthex
        call space
        mov eax, [esi + 20]             # type
        call putdec
        call newline
        mov eax, [esi]                  # the size field does not count itself
        lea esi, [esi + eax + 4]
        loop mmap_next
mmap_done:
        test dword ptr [ebp + MBI_FLAGS], 8
        jz done
        mov ecx, [ebp + MBI_MODS_COUNT]
        cmp ecx, MAX_MODULES
        jbe 1f
        mov ecx, MAX_MODULES
1:      mov edi, [ebp + MBI_MODS_ADDR]  # each: mod_start, mod_end, string, reserved
        jecxz done
module_next:
        mov esi, offset msg_module
        call puts
        mov eax, [edi + 4]
        sub eax, [edi]
        call puthex
        call space
        mov esi, [edi + 8]
        call puts
        call newline
        add edi, 16
        loop module_next
done:
        mov dx, DEBUG_EXIT
        mov al, 0
        out dx, al
        jmp halt

bad_magic:
        mov esi, offset msg_magic_bad
        call puts
        mov dx, DEBUG_EXIT
        mov al, 2
        out dx, al
halt:   cli
        hlt
        jmp halt

# puts: print the NUL-terminated string at ESI (at most 4096 bytes).
puts:
        push eax
        push ecx
        push edx
        push esi
        mov dx, COM1_THR
        mov ecx, 4096
2:      lodsb
        test al, al
        jz 3f
        out dx, al
        loop 2b
3:      pop esi
        pop edx
        pop ecx
        pop eax
        ret

# putdec: print EAX in decimal.
putdec:
        push eax
        push ecx
        push edx
        push ebx
        mov ebx, 10
        xor ecx, ecx
4:      xor edx, edx
        div ebx
        push edx
        inc ecx
        test eax, eax
        jnz 4b
        mov dx, COM1_THR
5:      pop eax
        add al, '0'
        out dx, al
        loop 5b
        pop ebx
        pop edx
        pop ecx
        pop eax
        ret

# puthex: print EAX as 8 hex digits.
puthex:
        push eax
        push ecx
        push edx
        push ebx
        mov ebx, eax
        mov ecx, 8
        mov dx, COM1_THR
6:      rol ebx, 4
        mov al, bl
        and al, 0xF
        add al, '0'
        cmp al, '9'
        jbe 7f
        add al, 'a' - '0' - 10
7:      out dx, al
        loop 6b
        pop ebx
        pop edx
        pop ecx
        pop eax
        ret

space:
        push eax
        push edx
        mov dx, COM1_THR
        mov al, ' '
        out dx, al
        pop edx
        pop eax
        ret

newline:
        push eax
        push edx
        mov dx, COM1_THR
        mov al, '\n'
        out dx, al
        pop edx
        pop eax
        ret

        .section .rodata
msg_magic_ok:  .asciz "multiboot eax=ok\n"
msg_magic_bad: .asciz "multiboot eax=bad\n"
msg_lower:     .asciz "mem_lower="
msg_upper:     .asciz " mem_upper="
msg_cmdline:   .asciz "cmdline="
msg_mmap:      .asciz "mmap "
msg_module:    .asciz "module "

        .bss
        .align 16
stack:  .skip 4096
stack_top:
