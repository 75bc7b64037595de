# iommu-edu — QEMU's edu device behind the VT-d unit, driven the way
# kvm-unit-tests' intel_iommu drives them, in 64-bit ring 0 (it takes
# interrupts), with `--irqchip --device edu --device intel-iommu,intremap=on`:
#   1. finds 1234:11e8 on bus 0 (configuration mechanism #1), reads BAR 0 and
#      Interrupt Line, turns on Memory Space and Bus Master, and checks the
#      identification, liveness (~value) and factorial (5! = 0x78) registers;
#   2. builds a root table, a context entry for edu (3-level tables, faults
#      reported), second-level tables mapping IOVA 0x10000 to 0x300000 (4 KiB)
#      and IOVA 0x200000 to 0x400000 (a 2 MiB page), and an interrupt
#      remapping table: IRTE 1 = vector 0x41 (edu's MSI), IRTE 2 = vector
#      0x42 (its INTx through the IOAPIC), both to APIC 0, edge;
#   3. latches them (SRTP, SIRTP), enables the invalidation queue, runs a
#      context-cache and an IOTLB invalidation and a wait descriptor that
#      writes 0x600D to a status word, then enables translation and
#      interrupt remapping, each by the GCMD/GSTS handshake;
#   4. DMAs 4 bytes from IOVA 0x10000 into edu's buffer and back to IOVA
#      0x10004, and from the buffer to IOVA 0x200010 (through the 2 MiB page);
#   5. DMAs to IOVA 0x50000, which nothing maps: the unit records a write
#      fault for edu's source-id and sends its fault event (vector 0x43);
#   6. programs IOAPIC input <Interrupt Line> in remappable format (IRTE 2)
#      and raises edu's interrupt: INTx arrives as vector 0x42; then programs
#      edu's MSI in remappable format (handle 1) and raises it again: vector
#      0x41. The handlers acknowledge edu and the local APIC.
# It prints
#   "edu slot=SS bar=XXXXXXXX line=LL id=XXXXXXXX alive=XXXXXXXX fact=XXXXXXXX\n"
#   "vtd ver=XX gsts=XXXXXXXX status=XXXXXXXX iqh=XXXXXXXX\n"
#   "dma 4k=XXXXXXXX 2m=XXXXXXXX\n"
#   "fault fsts=XXXXXXXX frcd=XXXXXXXX sid=XXXX page=XXXXXXXX events=XX\n"
#   "irq intx=XX msi=XX\n"
# and exits with v = 0. A missing piece prints "iommu-edu: <what>" and exits
# with v = 1; an interrupt that does not come in time, v = 2.

        .include "common.inc"
        .set CONFIG_ADDRESS, 0xCF8
        .set CONFIG_DATA,    0xCFC
        .set VTD,            0xFED90000
        .set IOAPIC,         0xFEC00000
        .set LAPIC,          0xFEE00000
        # VT-d registers
        .set V_VER,   0x00
        .set V_GCMD,  0x18
        .set V_GSTS,  0x1C
        .set V_RTADDR, 0x20
        .set V_FSTS,  0x34
        .set V_FECTL, 0x38
        .set V_FEDATA, 0x3C
        .set V_FEADDR, 0x40
        .set V_IQH,   0x80
        .set V_IQT,   0x88
        .set V_IQA,   0x90
        .set V_IRTA,  0xB8
        .set V_FRCD,  0x220
        .set G_TE,    0x80000000
        .set G_SRTP,  0x40000000
        .set G_QIE,   0x04000000
        .set G_IRE,   0x02000000
        .set G_SIRTP, 0x01000000
        # edu registers
        .set E_ID,     0x00
        .set E_ALIVE,  0x04
        .set E_FACT,   0x08
        .set E_ISTAT,  0x24
        .set E_RAISE,  0x60
        .set E_ACK,    0x64
        .set E_SRC,    0x80
        .set E_DST,    0x88
        .set E_CNT,    0x90
        .set E_CMD,    0x98
        .set EDU_BUF,  0x40000
        # Tables and buffers (RAM above the image and scratch area)
        .set ROOT,     0x200000
        .set CONTEXT,  0x201000
        .set SL3,      0x202000
        .set SL2,      0x203000
        .set SL1,      0x204000
        .set IRT,      0x205000
        .set QUEUE,    0x206000
        .set STATUSW,  0x207000
        .set PAGE4K,   0x300000
        .set PAGE2M,   0x400000
        # Interrupt vectors
        .set VEC_MSI,   0x41
        .set VEC_INTX,  0x42
        .set VEC_FAULT, 0x43
        .set WAIT_SPINS, 2000000

        .code16
        .text
        .globl _start
_start:
        .byte 0xEB, real_start - (_start + 2)   # jmp short real_start
        .skip 6, 0
ring0:        .long 0                   # LM_CPL_PARAM: user_main starts in ring 0

real_start:
        REAL_MODE_INIT
        .set LM_CPL_PARAM, ring0
        .include "longmode.inc"         # ... continues at user_main, in ring 0

        .code64
# cfg_select: CONFIG_ADDRESS = dword register ESI of slot R12 (bus 0,
# function 0); leaves DX at CONFIG_DATA. Clobbers EAX.
cfg_select:
        mov eax, r12d
        shl eax, 11
        or eax, esi
        or eax, 0x80000000
        mov dx, CONFIG_ADDRESS
        out dx, eax
        mov dx, CONFIG_DATA
        ret

# cfg_read: EAX = dword register ESI of slot R12. Clobbers DX.
cfg_read:
        call cfg_select
        in eax, dx
        ret

# cfg_write: dword register ESI of slot R12 = EDI. Clobbers EAX, DX.
cfg_write:
        call cfg_select
        mov eax, edi
        out dx, eax
        ret

# gcmd: sets GCMD bit EAX on top of the status, then waits for it in GSTS. R10 = the unit. Clobbers ECX, EDX.
gcmd:
        mov edx, [r10 + V_GSTS]
        or edx, eax
        mov [r10 + V_GCMD], edx
        mov ecx, WAIT_SPINS
1:      test [r10 + V_GSTS], eax
        jnz 2f
        dec ecx
        jnz 1b
        lea rsi, [rip + s_handshake]
        jmp fail
2:      ret

# edu_dma: source RAX, destination RDX, count ECX, command EDI (START added). R13 = BAR 0.
edu_dma:
        mov [r13 + E_SRC], rax
        mov [r13 + E_DST], rdx
        mov [r13 + E_CNT], rcx
        or edi, 1
        mov [r13 + E_CMD], edi
        mov ecx, WAIT_SPINS
1:      test dword ptr [r13 + E_CMD], 1
        jz 2f
        dec ecx
        jnz 1b
        lea rsi, [rip + s_dma_busy]
        jmp fail
2:      ret

# wait_count: waits until the quadword at RDI is nonzero, with interrupts on. Exits with v = 2 if it stays 0.
wait_count:
        mov ecx, WAIT_SPINS
1:      cmp qword ptr [rdi], 0
        jne 2f
        pause
        dec ecx
        jnz 1b
        lea rsi, [rip + s_timeout]
        lea rdi, [rip + s_prefix]
        call putfail64
        EXIT_VM 2
2:      ret

# gate: IDT gate EAX -> handler RDX (64-bit interrupt gate, DPL 0).
gate:
        shl eax, 4
        lea rdi, [IDT_ADDR + rax]
        mov [rdi + 0], dx
        mov word ptr [rdi + 2], KCODE_SEL
        mov word ptr [rdi + 4], 0x8E00
        shr edx, 16
        mov [rdi + 6], dx
        mov qword ptr [rdi + 8], 0
        ret

# Registers kept across the steps (the print helpers clobber RAX, RBX, RCX, RDX, RSI):
#   R9 = the IOAPIC, R10 = the VT-d unit, R11 = the local APIC,
#   R12 = edu's slot, R13 = its BAR 0, R14 = its Interrupt Line, R15 = its source-id.
user_main:
        mov r9d, IOAPIC
        mov r10d, VTD
        mov r11d, LAPIC
        # ---- interrupts: the PIC masked, the local APIC on, our gates ----------
        mov al, 0xFF
        out 0x21, al
        out 0xA1, al
        mov eax, VEC_MSI
        lea rdx, [rip + msi_handler]
        call gate
        mov eax, VEC_INTX
        lea rdx, [rip + intx_handler]
        call gate
        mov eax, VEC_FAULT
        lea rdx, [rip + fault_handler]
        call gate
        lidt [rip + idtr_irq]
        mov dword ptr [r11 + 0xF0], 0x1FF       # SVR: APIC enabled, spurious vector 0xFF
        sti

        # ---- 1. find edu --------------------------------------------------------
        xor r12d, r12d
1:      xor esi, esi
        call cfg_read
        cmp eax, 0x11E81234
        je 2f
        inc r12d
        cmp r12d, 32
        jb 1b
        lea rsi, [rip + s_no_edu]
        jmp fail
2:      mov esi, 0x10
        call cfg_read
        and eax, 0xFFFFFFF0
        mov r13d, eax                           # R13 = BAR 0
        mov esi, 0x3C
        call cfg_read
        movzx r14d, al                          # R14 = Interrupt Line
        mov esi, 0x04
        call cfg_read
        mov edi, eax
        or edi, 0x6                             # Memory Space, Bus Master
        call cfg_write
        mov [rip + bar], r13

        mov eax, r12d
        PUTFIELD64 s_edu, 2
        mov eax, r13d
        PUTFIELD64 s_bar, 8
        mov eax, r14d
        PUTFIELD64 s_line, 2
        mov eax, [r13 + E_ID]
        PUTFIELD64 s_id, 8
        mov dword ptr [r13 + E_ALIVE], 0x12345678
        mov eax, [r13 + E_ALIVE]
        PUTFIELD64 s_alive, 8
        mov dword ptr [r13 + E_FACT], 5
        mov eax, [r13 + E_FACT]
        PUTFIELD64 s_fact, 8
        lea rsi, [rip + s_nl]
        call puts64

        # ---- 2. tables ----------------------------------------------------------
        mov r15d, r12d
        shl r15d, 3                             # R15 = source-id: bus 0, devfn = slot << 3
        mov qword ptr [ROOT], CONTEXT | 1
        mov eax, r15d
        shl eax, 4
        mov qword ptr [CONTEXT + rax], SL3 | 1  # present, faults reported, TT 0
        mov qword ptr [CONTEXT + rax + 8], (1 << 8) | 1     # domain 1, AW 1 (39 bits, 3 levels)
        mov qword ptr [SL3], SL2 | 3
        mov qword ptr [SL2], SL1 | 3
        mov qword ptr [SL2 + 8], PAGE2M | 0x80 | 3          # IOVA 2 MiB: a 2 MiB page
        mov qword ptr [SL1 + 0x10 * 8], PAGE4K | 3          # IOVA 0x10000: a 4 KiB page
        # IRTE n: P, edge, fixed, physical, vector; destination APIC 0; SVT 1 (full source-id).
        mov dword ptr [IRT + 16 * 1], (VEC_MSI << 16) | 1
        mov dword ptr [IRT + 16 * 2], (VEC_INTX << 16) | 1
        mov eax, r15d
        or eax, 1 << 18
        mov [IRT + 16 * 1 + 8], eax
        mov [IRT + 16 * 2 + 8], eax
        # The queue: context-cache and IOTLB global invalidations, then a wait with a status write.
        mov qword ptr [QUEUE + 0x00], 0x11
        mov qword ptr [QUEUE + 0x10], 0x12
        mov rax, (0x600D << 32) | (1 << 5) | 5
        mov [QUEUE + 0x20], rax
        mov qword ptr [QUEUE + 0x28], STATUSW

        # ---- 3. the unit --------------------------------------------------------
        mov dword ptr [r10 + V_FEDATA], VEC_FAULT
        mov [r10 + V_FEADDR], r11d
        mov qword ptr [r10 + V_RTADDR], ROOT
        mov eax, G_SRTP
        call gcmd
        mov qword ptr [r10 + V_IQA], QUEUE      # 256 descriptors
        mov qword ptr [r10 + V_IQT], 0
        mov eax, G_QIE
        call gcmd
        mov qword ptr [r10 + V_IQT], 3 << 4
        mov qword ptr [r10 + V_IRTA], IRT | 7   # 256 entries
        mov eax, G_SIRTP
        call gcmd
        mov eax, G_TE
        call gcmd
        mov eax, G_IRE
        call gcmd
        mov eax, [r10 + V_VER]
        PUTFIELD64 s_vtd, 2
        mov eax, [r10 + V_GSTS]
        PUTFIELD64 s_gsts, 8
        mov eax, [STATUSW]
        PUTFIELD64 s_status, 8
        mov eax, [r10 + V_IQH]
        PUTFIELD64 s_iqh, 8
        lea rsi, [rip + s_nl]
        call puts64

        # ---- 4. DMA through the tables ------------------------------------------
        mov dword ptr [PAGE4K], 0xCAFEF00D
        mov eax, 0x10000                        # IOVA -> buffer
        mov edx, EDU_BUF
        mov ecx, 4
        xor edi, edi
        call edu_dma
        mov eax, EDU_BUF                        # buffer -> IOVA + 4
        mov edx, 0x10004
        mov ecx, 4
        mov edi, 2
        call edu_dma
        mov eax, EDU_BUF                        # buffer -> IOVA 2 MiB + 0x10
        mov edx, 0x200010
        mov ecx, 4
        mov edi, 2
        call edu_dma
        mov eax, [PAGE4K + 4]
        PUTFIELD64 s_dma, 8
        mov eax, [PAGE2M + 0x10]
        PUTFIELD64 s_2m, 8
        lea rsi, [rip + s_nl]
        call puts64

        # ---- 5. a DMA nothing maps ----------------------------------------------
        mov eax, EDU_BUF
        mov edx, 0x50000
        mov ecx, 4
        mov edi, 2
        call edu_dma
        lea rdi, [rip + fault_events]
        call wait_count
        mov eax, [r10 + V_FSTS]
        PUTFIELD64 s_fault, 8
        mov eax, [r10 + V_FRCD + 12]
        PUTFIELD64 s_frcd, 8
        mov eax, [r10 + V_FRCD + 8]
        PUTFIELD64 s_sid, 4
        mov eax, [r10 + V_FRCD]
        PUTFIELD64 s_page, 8
        mov rax, [rip + fault_events]
        PUTFIELD64 s_events, 2
        lea rsi, [rip + s_nl]
        call puts64
        mov dword ptr [r10 + V_FRCD + 12], 0x80000000   # clear F

        # ---- 6. INTx through the IOAPIC, then MSI, both remapped -----------------
        mov eax, r14d
        shl eax, 1
        add eax, 0x10                           # IOREDTBL[line]: registers 0x10 + 2n, 0x11 + 2n
        mov [r9], eax                           # IOREGSEL, then IOWIN at +0x10
        mov dword ptr [r9 + 0x10], VEC_INTX     # edge, unmasked, index[15] = 0
        inc eax
        mov [r9], eax
        mov dword ptr [r9 + 0x10], (1 << 16) | (2 << 17)   # bit 48: remappable; index 2 in 63:49
        mov dword ptr [r13 + E_RAISE], 1
        lea rdi, [rip + intx_count]
        call wait_count

        # MSI capability: the first one (edu has only MSI). Address: remappable, handle 1.
        mov esi, 0x34
        call cfg_read
        movzx r8d, al                           # R8 = the MSI capability
        lea esi, [r8 + 4]
        mov edi, LAPIC | (1 << 5) | (1 << 4)
        call cfg_write
        lea esi, [r8 + 8]
        xor edi, edi
        call cfg_write
        lea esi, [r8 + 12]
        xor edi, edi
        call cfg_write
        mov esi, r8d
        call cfg_read
        mov edi, eax
        or edi, 1 << 16                         # Message Control (bits 31:16 of this dword): MSI Enable
        call cfg_write
        mov dword ptr [r13 + E_RAISE], 1
        lea rdi, [rip + msi_count]
        call wait_count
        mov rax, [rip + intx_count]
        PUTFIELD64 s_irq, 2
        mov rax, [rip + msi_count]
        PUTFIELD64 s_msi, 2
        lea rsi, [rip + s_nl]
        call puts64
        EXIT_VM 0

fail:
        lea rdi, [rip + s_prefix]
        call putfail64
        EXIT_VM 1

# ---- interrupt handlers (ring 0) -------------------------------------------------
# edu's: count, acknowledge what edu has pending, then the local APIC's EOI.
msi_handler:
        push rax
        inc qword ptr [rip + msi_count]
        jmp edu_ack
intx_handler:
        push rax
        inc qword ptr [rip + intx_count]
edu_ack:
        push rbx
        mov rbx, [rip + bar]
        mov eax, [rbx + E_ISTAT]
        mov [rbx + E_ACK], eax
        mov ebx, LAPIC
        mov dword ptr [rbx + 0xB0], 0           # EOI
        pop rbx
        pop rax
        iretq
fault_handler:
        push rbx
        inc qword ptr [rip + fault_events]
        mov ebx, LAPIC
        mov dword ptr [rbx + 0xB0], 0
        pop rbx
        iretq

        .balign 8
bar:          .quad 0
msi_count:    .quad 0
intx_count:   .quad 0
fault_events: .quad 0
idtr_irq:
        .word (VEC_FAULT + 1) * 16 - 1
        .quad IDT_ADDR

s_prefix:   .asciz "iommu-edu: "
s_no_edu:   .asciz "no 1234:11e8 on bus 0"
s_dma_busy: .asciz "DMA never finished"
s_handshake: .asciz "GSTS did not follow GCMD"
s_timeout:  .asciz "an interrupt did not come"
s_edu:      .asciz "edu slot="
s_bar:      .asciz " bar="
s_line:     .asciz " line="
s_id:       .asciz " id="
s_alive:    .asciz " alive="
s_fact:     .asciz " fact="
s_vtd:      .asciz "vtd ver="
s_gsts:     .asciz " gsts="
s_status:   .asciz " status="
s_iqh:      .asciz " iqh="
s_dma:      .asciz "dma 4k="
s_2m:       .asciz " 2m="
s_fault:    .asciz "fault fsts="
s_frcd:     .asciz " frcd="
s_sid:      .asciz " sid="
s_page:     .asciz " page="
s_events:   .asciz " events="
s_irq:      .asciz "irq intx="
s_msi:      .asciz " msi="
s_nl:       .asciz "\n"
