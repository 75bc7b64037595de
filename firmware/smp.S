# smp — the BSP starts the AP with INIT-SIPI-SIPI through its local APIC, as a
# BIOS or an OS does on a PC; both report over COM1. Run with --cpus 2 --irqchip
# (the in-kernel local APIC delivers the IPIs; KVM holds every vCPU but the
# first in wait-for-SIPI until then).
#
# BSP (vCPU 0, starts at 0x1000:0000):
#   1. real mode -> 32-bit protected mode with flat segments, to reach the
#      local APIC at 0xFEE00000;
#   2. checks IA32_APIC_BASE bit 8 (BSP); reads its APIC ID (LAPIC ID
#      register 0xFEE00020, bits 31:24); software-enables its LAPIC (SVR bit 8);
#   3. INIT (assert, then de-assert), then STARTUP twice, to APIC ID 1 through
#      the ICR (0xFEE00310 destination, 0xFEE00300 command). The STARTUP vector
#      is the page the AP starts in: `ap_entry`, the image's second page
#      (0x11000 -> vector 0x11, CS:IP = 0x1100:0000). KVM needs no 10 ms delays;
#      ignoring the second STARTUP once the AP runs is KVM's (and the CPU's) job;
#   4. spins on `ap_flag` until the AP sets it, bounded by a TSC deadline of
#      2^32..2^33 cycles (~1.5-3 s at 3 GHz; the AP needs a few ms even on PVM)
#      and an iteration count.
#   5. then both CPUs write to COM1 at the same time: the BSP sets `go` and
#      writes FLOOD_BYTES 'b's while the AP writes as many 'a's; the BSP waits
#      (bounded) for the AP's `ap_done` and ends the line. A VMM whose vCPU
#      threads raced in the UART would lose or double bytes: the test counts them.
# AP (vCPU 1): the same switch to protected mode on its own stack; reads its
# APIC ID from its own LAPIC (the same address, a per-CPU register) and the
# initial APIC ID from CPUID.1:EBX[31:24] (the VMM's per-vCPU CPUID); prints
# them; sets `ap_flag`; waits for `go`, writes its 'a's, sets `ap_done`;
# `cli; hlt`. The AP prints before it sets the flag and the BSP prints only
# after it sees it, so the two report lines never interleave.
#
# Expected output, status 1 (the a's and b's mixed in any order):
#   ap apic=01 cpuid=01
#   bsp apic=00 ap-seen
#   <FLOOD_BYTES a's and FLOOD_BYTES b's>
#   flood done
# Failures beyond those below: "flood ap-timeout" status 9 (the AP never finished).
# Failures: "bsp apic=00 ap-timeout" status 3 (the AP never reported);
# "smp: not the BSP" status 5 (vCPU 0 lacks the BSP flag, or an AP came here);
# "smp: ICR busy" status 7 (an IPI stayed pending).
# VM exits (BSP): 20 bytes of output + debug-exit; the LAPIC accesses are
# served in the kernel. On PVM the whole guest is emulated (rings 0 and real mode).

        .include "common.inc"

        .set LAPIC_ID,          0xFEE00020      # bits 31:24: this CPU's APIC ID
        .set LAPIC_SVR,         0xFEE000F0      # spurious-interrupt vector register
        .set LAPIC_ICR_LOW,     0xFEE00300      # writing it sends the IPI
        .set LAPIC_ICR_HIGH,    0xFEE00310      # bits 31:24: destination APIC ID
        .set SVR_APIC_ENABLED,  0x100
        .set ICR_INIT_ASSERT,   0xC500          # INIT (101b << 8), level assert (bit 14), level-triggered (bit 15)
        .set ICR_INIT_DEASSERT, 0x8500          # INIT, de-assert, level-triggered
        .set ICR_STARTUP,       0x0600          # STARTUP (110b << 8) | vector
        .set ICR_SEND_PENDING,  0x1000          # delivery status: the IPI is not yet accepted
        .set IA32_APIC_BASE,    0x1B
        .set APIC_BASE_BSP,     0x100
        .set AP_APIC_ID,        1
        .set AP_REPORTED,       0x100           # ap_flag = AP_REPORTED | the AP's APIC ID

        .set CODE32_SEL,        0x08
        .set DATA32_SEL,        0x10
        .set BSP_STACK_TOP,     LOAD_ADDR       # each CPU its own stack, below the image
        .set AP_STACK_TOP,      LOAD_ADDR - 0x1000

        .set ICR_POLLS,         0x10000
        .set STARTUP_GAP_LOOPS, 100
        .set AP_WAIT_POLLS,     0x40000000      # the count bound; the TSC deadline ends the wait sooner
        .set FLOOD_BYTES,       2000            # each CPU's share of the concurrent COM1 writes
        .set LSR_THRE,          0x20            # line status: the transmit holding register is empty
        .set LSR_POLLS,         0x100000        # bound on the wait for THRE

        .code16
        .text
        .globl _start
_start:
        REAL_MODE_INIT
        lgdt [gdtr - _start]
        mov eax, cr0
        or eax, 1                       # CR0.PE: protected mode, no paging
        mov cr0, eax
        data32 jmp CODE32_SEL:bsp32

        .code32
bsp32:
        mov ax, DATA32_SEL
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov esp, BSP_STACK_TOP

        mov ecx, IA32_APIC_BASE
        rdmsr
        test eax, APIC_BASE_BSP
        jz not_bsp

        or dword ptr [LAPIC_SVR], SVR_APIC_ENABLED
        mov eax, dword ptr [LAPIC_ID]
        shr eax, 24
        mov ebp, eax                    # EBP = the BSP's APIC ID, kept to the end
        mov dword ptr [ap_flag], 0

        # INIT, assert then de-assert (KVM and modern CPUs ignore the de-assert).
        mov dword ptr [LAPIC_ICR_HIGH], AP_APIC_ID << 24
        mov dword ptr [LAPIC_ICR_LOW], ICR_INIT_ASSERT
        call wait_icr_idle
        mov dword ptr [LAPIC_ICR_HIGH], AP_APIC_ID << 24
        mov dword ptr [LAPIC_ICR_LOW], ICR_INIT_DEASSERT
        call wait_icr_idle

        # STARTUP twice, as the MP spec's universal start-up algorithm does.
        mov ebx, offset ap_entry
        shr ebx, 12                     # the vector: the page the AP starts in
        or ebx, ICR_STARTUP
        mov edi, 2
1:      mov dword ptr [LAPIC_ICR_HIGH], AP_APIC_ID << 24
        mov dword ptr [LAPIC_ICR_LOW], ebx
        call wait_icr_idle
        mov ecx, STARTUP_GAP_LOOPS
2:      pause
        loop 2b
        dec edi
        jnz 1b

        # Wait for the AP: until ap_flag is set, the TSC passes the deadline, or the count runs out.
        rdtsc
        lea esi, [edx + 2]              # deadline: the TSC's high half 2 above now
        mov edi, AP_WAIT_POLLS
3:      cmp dword ptr [ap_flag], 0
        jne ap_seen
        pause
        rdtsc
        cmp edx, esi
        jae ap_timeout
        dec edi
        jnz 3b

ap_timeout:
        mov esi, offset msg_bsp
        call puts32
        mov eax, ebp
        call puthex8
        mov esi, offset msg_timeout
        call puts32
        EXIT_VM 1

ap_seen:
        mov esi, offset msg_bsp
        call puts32
        mov eax, ebp
        call puthex8
        mov esi, offset msg_seen
        call puts32

        # Both CPUs on COM1 at once.
        mov dword ptr [go], 1
        mov al, 'b'
        call flood32
        rdtsc
        lea esi, [edx + 2]              # the same kind of deadline as above
        mov edi, AP_WAIT_POLLS
4:      cmp dword ptr [ap_done], 0
        jne flood_done
        pause
        rdtsc
        cmp edx, esi
        jae flood_timeout
        dec edi
        jnz 4b
flood_timeout:
        mov esi, offset msg_flood_timeout
        call puts32
        EXIT_VM 4
flood_done:
        mov esi, offset msg_flood_done
        call puts32
        EXIT_VM 0

not_bsp:
        mov esi, offset msg_not_bsp
        call puts32
        EXIT_VM 2

# wait_icr_idle: bounded wait until the local APIC has accepted the last IPI.
# Clobbers: ECX.
wait_icr_idle:
        mov ecx, ICR_POLLS
1:      test dword ptr [LAPIC_ICR_LOW], ICR_SEND_PENDING
        jz 2f
        pause
        loop 1b
        mov esi, offset msg_icr_busy
        call puts32
        EXIT_VM 3
2:      ret

# flood32: write AL to COM1 FLOOD_BYTES times, each once LSR says THR is
# empty (as a driver must: a UART that takes time to send, like QEMU's,
# drops a byte written over one it has not sent). Clobbers: EAX, BL, ECX, DX, EDI.
flood32:
        mov bl, al
        mov ecx, FLOOD_BYTES
1:      mov dx, COM1_LSR
        mov edi, LSR_POLLS
2:      in al, dx
        test al, LSR_THRE
        jnz 3f
        dec edi
        jnz 2b
3:      mov dx, COM1_THR
        mov al, bl
        out dx, al
        loop 1b
        ret

# puts32: print the NUL-terminated string at ESI on COM1. Clobbers: AL, DX, ESI.
puts32:
        mov dx, COM1_THR
1:      lodsb
        test al, al
        jz 2f
        out dx, al
        jmp 1b
2:      ret

# puthex8: print AL as 2 upper-case hex digits on COM1. Clobbers: EAX, ECX, DX.
puthex8:
        mov dx, COM1_THR
        mov ecx, eax
        shr al, 4
        call 1f
        mov eax, ecx
1:      and al, 0x0F
        add al, '0'
        cmp al, '9'
        jbe 2f
        add al, 'A' - '9' - 1
2:      out dx, al
        ret

msg_bsp:      .asciz "bsp apic="
msg_seen:     .asciz " ap-seen\n"
msg_timeout:  .asciz " ap-timeout\n"
msg_not_bsp:  .asciz "smp: not the BSP\n"
msg_icr_busy: .asciz "smp: ICR busy\n"
msg_ap:       .asciz "ap apic="
msg_cpuid:    .asciz " cpuid="
msg_newline:  .asciz "\n"
msg_flood_done:    .asciz "\nflood done\n"
msg_flood_timeout: .asciz "\nflood ap-timeout\n"

        .balign 4
ap_flag:        .long 0
go:             .long 0                 # set by the BSP: start writing
ap_done:        .long 0                 # set by the AP: its writes are out

        .balign 8
gdt:    .quad 0                         # 0x00: null
        .quad 0x00CF9A000000FFFF        # 0x08: code, 32-bit, base 0, limit 4 GiB, DPL 0
        .quad 0x00CF92000000FFFF        # 0x10: data, base 0, limit 4 GiB, DPL 0
gdt_end:
gdtr:   .word gdt_end - gdt - 1
        .long gdt                       # linear address (link address = load address)

# ---- the AP's start: a STARTUP vector names a 4 KiB page below 1 MiB ------
        .balign 4096
ap_entry:
        .code16
        cli
        cld
        mov ax, LOAD_SEG                # CS = vector << 8, IP = 0; the GDT is in the
        mov ds, ax                      # image's first page, so address it from the image's start
        lgdt [gdtr - _start]
        mov eax, cr0
        or eax, 1
        mov cr0, eax
        data32 jmp CODE32_SEL:ap32

        .code32
ap32:
        mov ax, DATA32_SEL
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov esp, AP_STACK_TOP

        mov eax, dword ptr [LAPIC_ID]
        shr eax, 24
        mov ebp, eax                    # EBP = this AP's APIC ID (from its LAPIC)
        mov eax, 1
        cpuid
        shr ebx, 24
        mov edi, ebx                    # EDI = its initial APIC ID (from CPUID)

        mov esi, offset msg_ap
        call puts32
        mov eax, ebp
        call puthex8
        mov esi, offset msg_cpuid
        call puts32
        mov eax, edi
        call puthex8
        mov esi, offset msg_newline
        call puts32

        mov eax, ebp
        or eax, AP_REPORTED
        mov dword ptr [ap_flag], eax

        # Wait for the BSP's go (bounded like its own waits), then write at the same time as it.
        rdtsc
        lea esi, [edx + 2]
        mov edi, AP_WAIT_POLLS
2:      cmp dword ptr [go], 0
        jne 3f
        pause
        rdtsc
        cmp edx, esi
        jae 1f
        dec edi
        jnz 2b
        jmp 1f
3:      mov al, 'a'
        call flood32
        mov dword ptr [ap_done], 1
1:      cli
        hlt
        jmp 1b
