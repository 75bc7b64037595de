# pit-storm — PIT channel 0 at a tiny count with IRQ0 on, while the guest
# works: does a storm of timer ticks leave it any time to make progress?
#
# Real mode -> long mode (include/longmode.inc), where user_main starts in
# ring 0 to install an IRQ0 handler (vector 0x20: the IDT grows to 33 gates),
# initialise the 8259 PIC (IRQ0 only) and program channel 0 in mode 2 (rate
# generator) with `count`. Then it drops to ring 3 with interrupts on (IF = 1,
# IOPL = 3) and does the work: `work` writes of a byte to TEST_PORT (0x520,
# where nothing answers: each one is a plain VM exit). The handler, in ring 0,
# counts the tick and sends the PIC an EOI; it does no exit of its own (the
# PIC is in the kernel). Afterwards IRQ0 is masked at the PIC and the guest
# prints
#   "pit-storm done work=XXXXXXXX ticks=XXXXXXXX\n"
# (ticks = IRQ0 interrupts the guest took) and exits with v = 0. Bad
# parameters print "pit-storm: bad parameters\n" and exit with v = 2.
#
# Needs `--irqchip` (the in-kernel PIC) and, to be the test it is meant to
# be, tsvmm's own PIT (`--pit tsvmm`, the default).
#
# Parameter block at file offset 8 (the file starts with a 2-byte `jmp` over
# it), little-endian:
#   off  size  field  default     meaning
#    8   u32   magic  0x54505354  bytes "TSPT"
#   12   u32   work   10000       port writes to do
#   16   u32   count  2           channel 0 initial count (2..65535; 2 = a tick every 1.7 us)

        .include "common.inc"
        .set PIC_COMMAND,   0x20
        .set PIC_DATA,      0x21
        .set PIC2_DATA,     0xA1
        .set PIT_COUNTER0,  0x40
        .set PIT_CONTROL,   0x43
        .set IRQ0_VECTOR,   0x20

        .code16
        .text
        .globl _start
_start:
        .byte 0xEB, real_start - (_start + 2)   # jmp short real_start (fixed 2 bytes)
        .skip 6, 0

params:
p_magic:      .long 0x54505354          # "TSPT"
p_work:       .long 10000
p_count:      .long 2
params_end:
        .if (params - _start) != 8 || (params_end - params) != 12
        .error "parameter block must be at file offset 8 and 12 bytes long"
        .endif

ring0:        .long 0                   # LM_CPL_PARAM: 0 = user_main starts in ring 0
ticks:        .quad 0                   # IRQ0 interrupts taken (the handler counts)

real_start:
        REAL_MODE_INIT
        .set LM_CPL_PARAM, ring0
        .include "longmode.inc"         # ... continues at user_main, in ring 0

        .code64
user_main:
        cmp dword ptr [rip + p_magic], 0x54505354
        jne bad_params
        mov eax, [rip + p_count]
        cmp eax, 2
        jb bad_params
        cmp eax, 0xFFFF
        ja bad_params

        # Gate 0x20 -> irq0_handler (64-bit interrupt gate, DPL 0), then a
        # bigger IDT limit. longmode.inc filled gates 0..31 of the same page.
        mov rdi, IDT_ADDR + 16 * IRQ0_VECTOR
        mov eax, offset irq0_handler
        mov [rdi + 0], ax
        mov word ptr [rdi + 2], KCODE_SEL
        mov word ptr [rdi + 4], 0x8E00
        shr eax, 16
        mov [rdi + 6], ax
        mov qword ptr [rdi + 8], 0
        lidt [rip + idtr_irq]

        # 8259: ICW1 edge-triggered, cascade, ICW4 follows; ICW2 vectors 0x20..0x27;
        # ICW3 slave on IRQ 2; ICW4 8086 mode. Then only IRQ0 unmasked.
        mov al, 0x11
        out PIC_COMMAND, al
        mov al, IRQ0_VECTOR
        out PIC_DATA, al
        mov al, 0x04
        out PIC_DATA, al
        mov al, 0x01
        out PIC_DATA, al
        mov al, 0xFF
        out PIC2_DATA, al
        mov al, 0xFE
        out PIC_DATA, al

        # Channel 0, LSB then MSB, mode 2, binary: 00 11 010 0.
        mov al, 0x34
        out PIT_CONTROL, al
        mov eax, [rip + p_count]
        out PIT_COUNTER0, al
        mov al, ah
        out PIT_COUNTER0, al

        # To ring 3 with IF = 1.
        push UDATA_SEL | 3              # SS
        push USTACK_TOP                 # RSP
        push 0x3202                     # RFLAGS: IOPL = 3, IF = 1
        push UCODE_SEL | 3              # CS
        push offset work
        iretq

# ---- ring 3 ---------------------------------------------------------------------
work:
        mov ecx, [rip + p_work]
        mov dx, TEST_PORT
        mov al, 0x2A
        test ecx, ecx
        jz 2f
1:      out dx, al
        dec ecx
        jnz 1b
2:
        mov al, 0xFF                    # mask IRQ0: the report goes out undisturbed
        out PIC_DATA, al

        mov eax, [rip + p_work]
        PUTFIELD64 s_done, 8
        mov rax, [rip + ticks]
        PUTFIELD64 s_ticks, 8
        lea rsi, [rip + s_nl]
        call puts64
        EXIT_VM 0

bad_params:
        lea rsi, [rip + s_bad]
        call puts64
        EXIT_VM 2

# ---- IRQ0 (ring 0, from ring 3 or ring 0) ------------------------------------
irq0_handler:
        push rax
        inc qword ptr [rip + ticks]
        mov al, 0x20                    # non-specific EOI
        out PIC_COMMAND, al
        pop rax
        iretq

        .balign 8
idtr_irq:
        .word (IRQ0_VECTOR + 1) * 16 - 1
        .quad IDT_ADDR

s_done:  .asciz "pit-storm done work="
s_ticks: .asciz " ticks="
s_nl:    .asciz "\n"
s_bad:   .asciz "pit-storm: bad parameters\n"
