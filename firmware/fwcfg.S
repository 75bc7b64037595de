# fwcfg — real mode: reads QEMU's fw_cfg (docs/specs/fw_cfg.rst) through its
# I/O ports, as kvm-unit-tests and firmware do: the signature, the feature
# ID, the CPU count and RAM size; then it walks the file directory for
# "opt/tsvmm/hello", reads that file through the data port (rep insb), and
# reads it once more by DMA: a FWCfgDmaAccess at 0x30000 (select + read,
# big-endian) into 0x30100, started by writing its address to 0x514/0x518.
#
# Expected with `--fw-cfg name=opt/tsvmm/hello,string=S` (S up to 63 bytes):
#   fw_cfg sig=QEMU id=<ID> cpus=<u16> ram=<u64>
#   file key=<key> size=<size> data=S
#   dma control=00000000 data=S
# then status 1; without the file: "file not found", status 3.

        .include "common.inc"
        .set FW_CFG_SELECTOR, 0x510
        .set FW_CFG_DATA,     0x511
        .set FW_CFG_DMA_HIGH, 0x514     # DMA address, big-endian: high half, then
        .set FW_CFG_DMA_LOW,  0x518     # the low half, whose write starts the request
        .set KEY_SIGNATURE,   0x00
        .set KEY_ID,          0x01
        .set KEY_RAM_SIZE,    0x03
        .set KEY_NB_CPUS,     0x05
        .set KEY_FILE_DIR,    0x19
        .set DMA_SEG,         0x3000    # the request at linear 0x30000 ...
        .set DMA_BUFFER,      0x100     # ... and its data at 0x30100
        .set DMA_SELECT_READ, 0x0A00    # control bytes 2-3 (big-endian): SELECT | READ
        .set MAX_DATA,        63
        .set MAX_ENTRIES,     16        # bound on the directory walk

        .code16
        .text
        .globl _start
_start:
        REAL_MODE_INIT

        mov ax, KEY_SIGNATURE
        mov cx, 4
        call read_item
        mov si, offset msg_sig - _start
        call puts16
        mov si, offset buf - _start
        call puts16

        mov ax, KEY_ID
        mov cx, 4
        call read_item
        mov si, offset msg_id - _start
        call puts16
        mov eax, [buf - _start]
        call puthex32

        mov ax, KEY_NB_CPUS
        mov cx, 2
        call read_item
        mov si, offset msg_cpus - _start
        call puts16
        mov ax, [buf - _start]
        call puthex16

        mov ax, KEY_RAM_SIZE
        mov cx, 8
        call read_item
        mov si, offset msg_ram - _start
        call puts16
        mov eax, [buf - _start + 4]
        call puthex32
        mov eax, [buf - _start]
        call puthex32

        # The directory: a big-endian count, then 64-byte entries
        # (be32 size, be16 select, be16 reserved, char name[56]).
        mov ax, KEY_FILE_DIR
        mov cx, 4
        call read_item
        mov eax, [buf - _start]
        bswap eax
        cmp eax, MAX_ENTRIES
        jbe 1f
        mov eax, MAX_ENTRIES
1:      mov [entries_left - _start], ax
next_entry:
        cmp word ptr [entries_left - _start], 0
        je not_found
        dec word ptr [entries_left - _start]
        mov di, offset entry - _start
        mov cx, 64
        mov dx, FW_CFG_DATA
        rep insb                        # the item's next 64 bytes (selection and offset carry on)
        mov si, offset entry - _start + 8
        mov di, offset wanted - _start
        mov cx, wanted_end - wanted     # the name with its NUL
        repe cmpsb
        jne next_entry

        mov eax, [entry - _start]
        bswap eax
        cmp eax, MAX_DATA
        jbe 1f
        mov eax, MAX_DATA
1:      mov [file_size - _start], eax
        mov ax, [entry - _start + 4]
        xchg al, ah
        mov [file_key - _start], ax

        mov si, offset msg_file - _start
        call puts16
        mov ax, [file_key - _start]
        call puthex16
        mov si, offset msg_size - _start
        call puts16
        mov eax, [file_size - _start]
        call puthex32
        mov ax, [file_key - _start]
        mov cx, [file_size - _start]
        call read_item
        mov si, offset msg_data - _start
        call puts16
        mov si, offset buf - _start
        call puts16

        # The same file by DMA. Zero the buffer first, so that a transfer
        # longer than asked would show.
        mov ax, DMA_SEG
        mov es, ax
        mov di, DMA_BUFFER
        mov cx, MAX_DATA + 1
        xor al, al
        rep stosb
        mov ax, [file_key - _start]
        xchg al, ah
        mov es:[0], ax                  # control bits 31:16: the key
        mov word ptr es:[2], DMA_SELECT_READ
        mov eax, [file_size - _start]
        bswap eax
        mov es:[4], eax                 # length
        mov dword ptr es:[8], 0         # address, high half
        mov eax, DMA_SEG * 16 + DMA_BUFFER
        bswap eax
        mov es:[12], eax                # address, low half
        mov dx, FW_CFG_DMA_HIGH
        xor eax, eax
        out dx, eax
        mov dx, FW_CFG_DMA_LOW
        mov eax, DMA_SEG * 16
        bswap eax
        out dx, eax                     # runs the request
        mov eax, es:[0]
        bswap eax
        mov [dma_control - _start], eax
        mov ax, ds
        mov es, ax

        mov si, offset msg_dma - _start
        call puts16
        mov eax, [dma_control - _start]
        call puthex32
        mov si, offset msg_data - _start
        call puts16
        push ds
        mov ax, DMA_SEG
        mov ds, ax
        mov si, DMA_BUFFER
        call puts16
        pop ds
        mov si, offset newline - _start
        call puts16
        EXIT_VM 0

not_found:
        mov si, offset msg_not_found - _start
        call puts16
        EXIT_VM 1

# read_item: select key AX, read CX bytes of it into buf and NUL-terminate.
# Clobbers: AX, CX, DX, DI.
read_item:
        mov dx, FW_CFG_SELECTOR
        out dx, ax                      # a 16-bit write selects, and rewinds to byte 0
        mov di, offset buf - _start
        add di, cx
        mov byte ptr [di], 0
        mov di, offset buf - _start
        mov dx, FW_CFG_DATA
        rep insb
        ret

        .include "serial16.inc"

msg_sig:        .asciz "fw_cfg sig="
msg_id:         .asciz " id="
msg_cpus:       .asciz " cpus="
msg_ram:        .asciz " ram="
msg_file:       .asciz "\nfile key="
msg_size:       .asciz " size="
msg_data:       .asciz " data="
msg_dma:        .asciz "\ndma control="
msg_not_found:  .asciz "\nfile not found\n"
newline:        .asciz "\n"
wanted:         .asciz "opt/tsvmm/hello"
wanted_end:
        .balign 4
dma_control:    .long 0
file_size:      .long 0
file_key:       .word 0
entries_left:   .word 0
buf:            .space 64
entry:          .space 64
