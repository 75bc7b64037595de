# uart-echo — interrupt-driven serial echo (run with --irqchip): the 16550's
# received-data interrupt through the 8259 PIC, in real mode.
#
# Setup: IVT entry for IRQ 4 (vector 0x0C with the master PIC at base 0x08),
# the PIC initialised (ICW1-4) with only IRQ 4 unmasked, the UART's FIFO on
# with a trigger level of 1, IER = received data, MCR = DTR|RTS|OUT2 (on a PC,
# OUT2 gates the UART's interrupt onto the bus). Prints "ready\n", then sleeps
# in `hlt` with interrupts on. The interrupt handler drains the receiver and
# echoes each byte upper-cased; a '.' ends it: "\nbye irqs=XXXX\n", v = 0.

        .include "common.inc"
        .set PIC_COMMAND, 0x20
        .set PIC_DATA,    0x21
        .set IRQ4_VECTOR, 0x0C
        .set UART_IER,    0x3F9
        .set UART_FCR,    0x3FA
        .set UART_MCR,    0x3FC
        .code16
        .text
        .globl _start
_start:
        REAL_MODE_INIT

        xor ax, ax                      # the real-mode IVT lives at linear 0
        mov es, ax
        mov word ptr es:[IRQ4_VECTOR * 4], offset isr - _start
        mov es:[IRQ4_VECTOR * 4 + 2], cs
        push ds
        pop es

        mov al, 0x11                    # ICW1: edge triggered, cascade, ICW4 follows
        out PIC_COMMAND, al
        mov al, 0x08                    # ICW2: vectors 0x08-0x0F
        out PIC_DATA, al
        mov al, 0x04                    # ICW3: slave on IRQ 2
        out PIC_DATA, al
        mov al, 0x01                    # ICW4: 8086 mode
        out PIC_DATA, al
        mov al, 0xEF                    # OCW1: mask everything but IRQ 4
        out PIC_DATA, al

        mov dx, UART_FCR
        mov al, 0x07                    # FIFOs on and cleared, trigger level 1
        out dx, al
        mov dx, UART_MCR
        mov al, 0x0B                    # DTR | RTS | OUT2
        out dx, al
        mov dx, UART_IER
        mov al, 0x01                    # interrupt on received data
        out dx, al

        mov si, offset msg_ready - _start
        call puts16
        sti
1:      hlt                             # woken by IRQ 4
        cmp byte ptr [done - _start], 0
        je 1b
        cli

        mov si, offset msg_bye - _start
        call puts16
        mov ax, [irqs - _start]
        call puthex16
        mov si, offset newline - _start
        call puts16
        EXIT_VM 0

isr:
        push ax
        push dx
        inc word ptr [irqs - _start]
2:      mov dx, COM1_LSR
        in al, dx
        test al, 0x01                   # data ready?
        jz 4f
        mov dx, COM1_THR
        in al, dx                       # RBR
        cmp al, '.'
        jne 3f
        mov byte ptr [done - _start], 1
3:      cmp al, 'a'
        jb 5f
        cmp al, 'z'
        ja 5f
        sub al, 0x20
5:      out dx, al
        jmp 2b
4:      mov al, 0x20                    # EOI
        out PIC_COMMAND, al
        pop dx
        pop ax
        iret

        .include "serial16.inc"

msg_ready: .asciz "ready\n"
msg_bye:   .asciz "\nbye irqs="
newline:   .asciz "\n"
irqs:      .word 0
done:      .byte 0
